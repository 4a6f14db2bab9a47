"""Model comparison: every shipped model side by side, with numbers read only from weights/*.json."""
import streamlit as st

from fer_core import compare

st.title("Model comparison")
st.caption("Every number here comes from the model cards in `weights/` (one card per model, written by "
           "training); a new card shows up here on the next run. Metrics are on FER2013 PublicTest (val).")

cards = compare.load_cards()
if not cards:
    st.info("No model cards found in `weights/`: train a model (`python -m fer_core train ...`) or restore "
            "the shipped weights.")
    st.stop()

st.subheader("Summary")
st.dataframe(compare.table_frame(cards), hide_index=True, column_config={
    "val accuracy": st.column_config.NumberColumn(format="percent"),
    "val accuracy (TTA)": st.column_config.NumberColumn(format="percent", help="mean of the face and its mirror"),
    "val macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "params": st.column_config.NumberColumn(format="localized"),
    "size (MB)": st.column_config.NumberColumn(format="%.2f", help="the fp16 weights file"),
    "CPU ms/face": st.column_config.NumberColumn(format="%.2f", help="batch 1, median"),
})
for name, why in compare.not_shipped(cards):
    st.caption(f"**{name}** is compared from its card only (the app cannot load it): {why}.")

st.subheader("Accuracy vs CPU latency")
st.plotly_chart(compare.accuracy_latency_figure(cards))

st.subheader("Per-class F1")
st.plotly_chart(compare.per_class_f1_figure(cards))

st.subheader("Confusion matrices")
names = [compare.model_name(c) for c in cards]
by_name = dict(zip(names, cards))
normalize = st.toggle("Row-normalised (share of each true class)", key="compare_normalize")
for i, col in enumerate(st.columns(2)):
    name = col.selectbox(f"Model {i + 1}", names, index=min(i, len(names) - 1), key=f"compare_cm_{i}")
    col.plotly_chart(compare.confusion_figure(by_name[name], normalize), key=f"compare_cm_chart_{i}")

st.subheader("Training curves")
st.caption("Dashed: train, solid: val, per epoch.")
st.plotly_chart(compare.training_curves_figure(cards))

st.subheader("Calibration")
st.plotly_chart(compare.reliability_figure(cards))
st.caption("Solid: the model's raw probabilities; dotted: after temperature scaling (probabilities / T), "
           "when the card has it. Marker size grows with the faces in the bin.")
st.dataframe(compare.calibration_rows(cards), hide_index=True, column_config={
    "temperature": st.column_config.NumberColumn(format="%.3f", help="softmax temperature in the card (1 if none)"),
    "ece_before": st.column_config.NumberColumn("ECE", format="%.4f",
                                                help="expected calibration error, 15 bins, before scaling"),
    "ece_after": st.column_config.NumberColumn("ECE after scaling", format="%.4f"),
    "nll_before": st.column_config.NumberColumn("NLL", format="%.4f", help="val negative log-likelihood"),
    "nll_after": st.column_config.NumberColumn("NLL after scaling", format="%.4f"),
})
