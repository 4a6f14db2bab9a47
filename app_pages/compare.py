"""Model comparison: every shipped model side by side, with numbers read only from weights/*.json."""
import streamlit as st

from fer_core.app import compare, report
from fer_core.models.cards import default_name

st.title("Model comparison")
st.caption("Every number here comes from the model cards in `weights/` (one card per model, written by "
           "training); a new card shows up here on the next run. FER2013 figures are on its PublicTest split "
           "(val); other datasets are the photo sets the cards were measured on.")

cards = compare.load_cards()
if not cards:
    st.info("No model cards found in `weights/`: train a model (`python -m fer_core train ...`) or restore "
            "the shipped weights.")
    st.stop()
default = default_name()
names = [c["name"] for c in cards]
picked = st.multiselect("Models in the figures", names, default=compare.default_selection(cards, default),
                        key="compare_models", help="Preselected: the default model, the best single model and "
                                                   "the best ensemble by FER2013 val accuracy.")
selected = compare.select(cards, picked)

st.subheader("Summary")
fold = st.toggle("One row per seed family (mean; sd = standard deviation across seeds)", value=True,
                 key="compare_fold")
percent = st.column_config.NumberColumn(format="percent")
summary = compare.table_frame(cards, default, fold)
st.dataframe(summary, hide_index=True, column_config={
    **{col: percent for col in summary.columns if " acc" in col},
    report.TTA: st.column_config.NumberColumn(format="percent", help="mean of the face and its mirror"),
    report.F1: st.column_config.NumberColumn(format="%.3f"),
    report.SPREAD: st.column_config.NumberColumn(format="percent", help="standard deviation across seeds"),
    "params": st.column_config.NumberColumn(format="localized"),
    "size (MB)": st.column_config.NumberColumn(format="%.2f", help="the fp16 weights file"),
    "CPU ms/face": st.column_config.NumberColumn(format="%.2f", help="fp32 PyTorch, batch 1, median"),
    report.INT8_ACC: st.column_config.NumberColumn(format="percent", help="the int8 build the app runs: FER2013 val"),
    report.INT8_MS: st.column_config.NumberColumn(format="%.2f", help="the int8 build the app runs: batch 1, median"),
    "epochs": st.column_config.NumberColumn(format="%.0f"),
})
if note := report.machines_note(cards):
    st.caption(note)
for name, why in compare.not_shipped(cards):
    st.caption(f"**{name}** is compared from its card only (the app cannot load it): {why}.")

st.subheader("Accuracy vs CPU latency")
datasets = report.datasets(cards)
accuracy_on, build_of = st.columns(2)
speed_dataset = accuracy_on.selectbox(
    "Accuracy on", datasets, index=datasets.index(compare.default_dataset(cards)), key="compare_speed_dataset",
    help="Opens on the real photos when the cards were measured on some: the faces people bring.")
build = build_of.radio("Latency and accuracy of", list(compare.BUILDS), format_func=compare.BUILDS.get,
                       horizontal=True, key="compare_speed_build",
                       help="The app runs each model's int8 file (ONNX Runtime); Grad-CAM and training use fp32.")
st.caption("Coloured: the models picked above; grey: the others (hover for their names).")
st.plotly_chart(compare.accuracy_latency_figure(cards, picked, speed_dataset, build))
if note := compare.speed_left_out(cards, speed_dataset, build):
    st.caption(note)

st.subheader("Per-class F1")
st.plotly_chart(compare.per_class_f1_figure(selected))

st.subheader("Per dataset")
dataset = st.selectbox("Dataset", datasets, index=datasets.index(compare.default_dataset(cards)),
                       key="compare_dataset", help="Opens on the real photos when the cards were measured on some.")
st.dataframe(compare.dataset_rows(selected, dataset), hide_index=True, column_config={
    "val acc": percent, "val acc (TTA)": percent, "val macro-F1": st.column_config.NumberColumn(format="%.3f"),
    "no face": st.column_config.NumberColumn(help="photos where the detector found no face (not scored)")})
if note := compare.left_out(selected, "dataset", dataset):
    st.caption(note)
left, right = st.columns(2)
left.plotly_chart(compare.recall_figure(selected, dataset), key="compare_recall")
right.plotly_chart(compare.predicted_share_figure(selected, dataset), key="compare_share")
normalize = st.toggle("Row-normalised (share of each true class)", key="compare_normalize")
for i, col in enumerate(st.columns(2)):
    options = picked or names
    name = col.selectbox(f"Model {i + 1}", options, index=min(i, len(options) - 1), key=f"compare_cm_{i}")
    col.plotly_chart(compare.confusion_figure(cards[names.index(name)], normalize, dataset),
                     key=f"compare_cm_chart_{i}")

if compare.robustness_rows(cards):
    st.subheader("Robustness")
    st.caption("FER2013 val faces through capture corruptions (blur, low resolution, JPEG, noise, dark light, "
               "rotation, tighter and looser crops, occlusion), three severities each: `python -m fer_core "
               "robustness`.")
    st.plotly_chart(compare.robustness_figure(selected))
    st.dataframe(compare.robustness_rows(selected), hide_index=True,
                 column_config={k: percent for row in compare.robustness_rows(cards) for k in row if k != "model"})
    if note := compare.left_out(selected, "robustness"):
        st.caption(note)

st.subheader("Training curves")
st.caption(compare.curves_caption(selected))
st.plotly_chart(compare.training_curves_figure(selected))
for note in (compare.fine_tune_note(selected, cards), compare.left_out(selected, "history")):
    if note:
        st.caption(note)

st.subheader("Calibration")
st.plotly_chart(compare.reliability_figure(selected))
st.caption("Solid: the model's raw probabilities; dotted: after temperature scaling (probabilities / T), "
           f"when the card has it. Marker size grows with the faces in the bin; bins of fewer than "
           f"{compare.MIN_BIN_FACES} faces are not drawn.")
st.dataframe(compare.calibration_rows(selected), hide_index=True, column_config={
    "temperature": st.column_config.NumberColumn(format="%.3f", help="softmax temperature in the card (1 if none)"),
    "ece_before": st.column_config.NumberColumn("ECE", format="%.4f",
                                                help="expected calibration error, 15 bins, before scaling"),
    "ece_after": st.column_config.NumberColumn("ECE after scaling", format="%.4f"),
    "nll_before": st.column_config.NumberColumn("NLL", format="%.4f", help="val negative log-likelihood"),
    "nll_after": st.column_config.NumberColumn("NLL after scaling", format="%.4f"),
})
