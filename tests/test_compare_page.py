"""The "Model comparison" page (Streamlit AppTest, no browser): the model picker and its preselection, a
table row per card (seed families folded), one chart per section, the per-dataset section, robustness
when cards have it, and partial or missing cards."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from fer_core import EMOTIONS
from fer_core.app import compare
from fer_core.models.cards import REPO_WEIGHTS, default_name, read_cards, set_default, write_card
from helpers_cards import v2_card, with_metrics
from test_compare import full_card, split

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ["Summary", "Accuracy vs CPU latency", "Per-class F1", "Per dataset", "Robustness", "Training curves",
            "Calibration"]  # Robustness: shipped cards hold `python -m fer_core robustness` figures
ACC = "fer2013 val acc"


def open_compare():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    return at


def charts(at) -> list:
    """Every plotly chart on the page as its figure dict."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_dashboard_preselects_default_best_single_and_best_ensemble_and_folds_seed_families():
    cards = {p.stem: json.loads(p.read_text()) for p in sorted(REPO_WEIGHTS.glob("*.json"))}
    at = open_compare()
    assert [t.value for t in at.title] == ["Model comparison"]
    assert [s.value for s in at.subheader] == SECTIONS
    picker = at.multiselect(key="compare_models")
    assert picker.value == compare.default_selection(read_cards(), default_name())
    assert picker.value[0] == default_name() and len(picker.value) == 3 and len(picker.options) == len(cards)
    figs = charts(at)
    assert len(figs) == 9  # scatter, F1, recall, share, two confusion matrices, robustness, curves, reliability
    table = at.dataframe[0].value
    assert "vgg13_gpu*" in list(table["model"]) and "vgg13_gpu0" not in list(table["model"])
    for name, card in cards.items():
        if name.startswith("vgg13_gpu"):
            continue
        row = table[table["model"] == name].iloc[0]
        assert row[ACC] == card["metrics"]["fer2013"]["val"]["accuracy"]
        assert row["CPU ms/face"] == card["cpu_ms_per_face"]["batch1"]["median"]
        int8 = card.get("int8")
        assert row["int8 ms/face"] == (int8["cpu_ms_per_face"]["batch1"]["median"] if int8 else None) or \
            (int8 is None and pd.isna(row["int8 ms/face"]))
    cpu = cards[default_name()]["cpu_ms_per_face"]["cpu"]
    assert any(c.value.startswith("ms/face: batch 1, median") and cpu in c.value for c in at.caption)
    scatter, f1 = figs[0], figs[1]
    assert at.selectbox(key="compare_speed_dataset").value == "wild_photos"  # opens on the real photos
    assert at.radio(key="compare_speed_build").value == "int8"
    assert sorted(t["name"] for t in scatter["data"]) == sorted(set(cards) - {"resnet18"})  # its int8: none
    assert sorted(t["name"] for t in f1["data"]) == sorted(picker.value)
    calibration = at.dataframe[-1].value
    assert sorted(calibration["model"]) == sorted(picker.value)
    assert list(calibration["ece_before"]) == [cards[n]["metrics"]["fer2013"]["val"]["ece"]
                                               for n in calibration["model"]]
    temperatures = [None if pd.isna(t) else t for t in calibration["temperature"]]
    assert temperatures == [cards[n].get("temperature") for n in calibration["model"]]
    captions = [c.value for c in at.caption]  # the default is a fine-tune beside the real photos
    assert any(c.startswith("Per epoch. Dashed: train, solid: FER2013 val, dotted: wild_photos val") for c in captions)
    assert any(c.startswith("Fine-tuned from another") and f"{default_name()}: " in c for c in captions)


def test_picking_models_changes_the_figures_and_unfolding_shows_every_seed():
    at = open_compare()
    at.multiselect(key="compare_models").set_value(["cnn", "vgg13_gpu0"]).run()
    assert not at.exception
    figs = charts(at)
    assert sorted(t["name"] for t in figs[1]["data"]) == ["cnn", "vgg13_gpu0"]
    assert sorted(a["text"] for a in figs[0]["layout"]["annotations"]) == ["cnn", "vgg13_gpu0"]
    assert {t["legendgroup"] for t in figs[-2]["data"]} == {"cnn", "vgg13_gpu0"}
    at.toggle(key="compare_fold").set_value(False).run()
    models = list(at.dataframe[0].value["model"])
    assert "vgg13_gpu*" not in models and {f"vgg13_gpu{i}" for i in range(6)} <= set(models)


def test_the_scatter_switches_dataset_and_build_and_names_what_it_leaves_out():
    cards = {p.stem: json.loads(p.read_text()) for p in REPO_WEIGHTS.glob("*.json")}
    at = open_compare()
    notes = [c.value for c in at.caption if c.value.startswith("Left out: resnet18")]
    assert notes == ["Left out: resnet18 (weights not shipped, and no int8 figures on wild_photos in the card)."]
    scatter = charts(at)[0]
    point = {t["name"]: (t["x"][0], t["y"][0]) for t in scatter["data"]}
    int8 = cards[default_name()]["int8"]
    assert point[default_name()] == (int8["cpu_ms_per_face"]["batch1"]["median"],
                                     int8["metrics"]["wild_photos"]["val"]["accuracy"])
    at.selectbox(key="compare_speed_dataset").set_value("fer2013").run()
    at.radio(key="compare_speed_build").set_value("fp32").run()
    assert not at.exception
    scatter = charts(at)[0]
    assert sorted(t["name"] for t in scatter["data"]) == sorted(cards)  # fp32 on FER2013: every card
    point = {t["name"]: (t["x"][0], t["y"][0]) for t in scatter["data"]}
    for name in ("resnet18", default_name()):
        assert point[name] == (cards[name]["cpu_ms_per_face"]["batch1"]["median"],
                               cards[name]["metrics"]["fer2013"]["val"]["accuracy"])
    assert scatter["layout"]["xaxis"]["title"]["text"].startswith("CPU ms per face, fp32 PyTorch")
    assert scatter["layout"]["yaxis"]["title"]["text"] == "fer2013 val accuracy (fp32)"
    assert not [c.value for c in at.caption if c.value.startswith("Left out: resnet18")]


def test_confusion_matrices_switch_model_and_normalise():
    cards = {p.stem: json.loads(p.read_text()) for p in REPO_WEIGHTS.glob("*.json")}
    at = open_compare()
    left, right = at.selectbox(key="compare_cm_0"), at.selectbox(key="compare_cm_1")
    assert left.value != right.value
    assert at.selectbox(key="compare_dataset").value == "wild_photos"  # the faces people bring, first
    counts = charts(at)[4]["data"][0]
    assert np.array_equal(counts["z"], cards[left.value]["metrics"]["wild_photos"]["val"]["confusion_matrix"])
    right.set_value(left.value)
    at.selectbox(key="compare_dataset").set_value("fer2013")
    at.toggle(key="compare_normalize").set_value(True).run()
    assert not at.exception
    figs = charts(at)
    assert len(figs) == 9  # with the robustness chart after the two confusion matrices
    for fig in figs[4:6]:
        z = np.asarray(fig["data"][0]["z"])
        assert fig["layout"]["title"]["text"] == left.value
        assert np.allclose(z.sum(1), 1.0)
        recall = [cards[left.value]["metrics"]["fer2013"]["val"]["per_class"][e]["recall"] for e in EMOTIONS]
        assert np.allclose(np.diag(z), recall, atol=5e-5)


def test_a_photo_dataset_and_robustness_figures_get_their_sections(weights_dir):
    share = [0.1, 0.0, 0.3, 0.2, 0.3, 0.05, 0.05]
    robust = {"dataset": "fer2013", "split": "val", "fingerprint": "fp-fer2013", "clean": 0.6,
              "corruptions": {"blur": [0.58, 0.55, 0.5]}, "mean": 0.5433, "command": "python -m fer_core robustness"}
    write_card(with_metrics(full_card("a", 0.6, robustness=robust), "wild_photos", "val",
                            split(0.4, n=50, share=share, no_face=3)), weights_dir)
    write_card(full_card("b", 0.55), weights_dir)
    set_default("a")
    at = open_compare()
    assert [s.value for s in at.subheader] == SECTIONS
    assert at.multiselect(key="compare_models").value == ["a"]  # the default is also the best single model
    assert at.dataframe[0].value.set_index("model").loc["a", "wild_photos val acc"] == 0.4
    assert at.selectbox(key="compare_dataset").options == ["fer2013", "wild_photos"]
    assert at.selectbox(key="compare_dataset").value == "wild_photos"  # opens on the photos, as the scatter does
    figs = charts(at)
    recall, shares = figs[2], figs[3]
    expected = split(0.4, n=50)["per_class"]
    assert recall["data"][0]["y"] == [expected[e]["recall"] for e in EMOTIONS]
    assert [t["name"] for t in shares["data"]] == ["a", "true share"] and shares["data"][0]["y"] == share
    assert at.dataframe[1].value.to_dict("records")[0]["no face"] == 3
    at.multiselect(key="compare_models").set_value(["a", "b"]).run()
    notes = [c.value for c in at.caption if c.value.startswith("Left out:")]
    assert notes == ["Left out: a, b (no int8 build with wild_photos val accuracy and latency: `python -m "
                     "fer_core quantize --model NAME` and `python -m fer_core benchmark --model NAME --write-card` "
                     "add them).",
                     "Left out: b (not measured on wild_photos: `python -m fer_core evaluate --model NAME "
                     "--data PATH --write-card` adds it).",
                     "Left out: b (not measured: `python -m fer_core robustness --model NAME` adds them)."]
    figs = charts(at)
    assert np.array_equal(figs[4]["data"][0]["z"], split(0.4, n=50)["confusion_matrix"])
    robustness = figs[6]
    assert robustness["data"][0]["x"] == ["clean", "mean", "blur"]


def test_partial_and_broken_cards_render_with_empty_cells(weights_dir):
    write_card(full_card("complete", 0.6, 2.0), weights_dir)
    write_card(v2_card("bare"), weights_dir)
    (weights_dir / "broken.json").write_text("{")
    set_default("complete")
    at = open_compare()
    table = at.dataframe[0].value
    assert list(table["model"]) == ["complete", "bare"]
    assert table.set_index("model").loc["bare", [ACC, "CPU ms/face"]].isna().all()
    at.multiselect(key="compare_models").set_value(["complete", "bare"]).run()
    assert len(charts(at)) == 8
    at.selectbox(key="compare_cm_0").set_value("bare").run()
    assert not at.exception
    assert "no confusion matrix" in charts(at)[4]["layout"]["annotations"][0]["text"]


def test_no_cards_explains_instead_of_failing(weights_dir):
    at = open_compare()
    assert "No model cards found" in at.info[0].value
    assert len(at.get("plotly_chart")) == 0


def test_a_card_whose_weights_are_not_shipped_is_compared_but_not_offered(weights_dir):
    from fer_core.models.cards import save_weights
    from fer_core.models.registry import create_model
    save_weights(create_model("cnn"), full_card("small", 0.6, 2.0), weights_dir)
    set_default("small")
    write_card({**full_card("huge", 0.7, 9.0), "weights_file": None, "kept_at": "huge/huge.pt",
                "not_shipped": "its fp16 weights are 22.3 MiB, over the 16 MiB limit on files in weights/"},
               weights_dir)
    at = open_compare()
    assert list(at.dataframe[0].value["model"]) == ["small", "huge"]
    notes = [c.value for c in at.caption if c.value.startswith("**huge**")]
    assert notes == ["**huge** is compared from its card only (the app cannot load it): its fp16 weights are "
                     "22.3 MiB, over the 16 MiB limit on files in weights/."]
    assert at.sidebar.selectbox(key="model").options == ["small (default)"]
    assert not at.sidebar.warning  # expected, not a broken install
