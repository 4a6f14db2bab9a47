"""The "Model comparison" page (Streamlit AppTest, no browser): one chart per section, a table row per
card, the confusion-matrix controls, and partial or missing cards."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from fer_core import EMOTIONS
from fer_core.cards import REPO_WEIGHTS, write_card
from test_compare import full_card

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ["Summary", "Accuracy vs CPU latency", "Per-class F1", "Confusion matrices", "Training curves",
            "Calibration"]


def open_compare():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    return at


def charts(at) -> list:
    """Every plotly chart on the page as its figure dict."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_dashboard_shows_every_shipped_card_and_one_chart_per_section():
    cards = [json.loads(p.read_text()) for p in sorted(REPO_WEIGHTS.glob("*.json"))]
    at = open_compare()
    assert [t.value for t in at.title] == ["Model comparison"]
    assert [s.value for s in at.subheader] == SECTIONS
    figs = charts(at)
    assert len(figs) == 6  # scatter, F1 bars, two confusion matrices, curves, reliability
    table = at.dataframe[0].value
    assert len(table) == len(cards)
    assert sorted(table["model"]) == sorted(c["name"] for c in cards)
    for card in cards:
        row = table[table["model"] == card["name"]].iloc[0]
        assert row["val accuracy"] == card["metrics"]["val"]["accuracy"]
        assert row["CPU ms/face"] == card["cpu_ms_per_face"]["batch1"]["median"]
    scatter, f1 = figs[0], figs[1]
    assert sorted(t["name"] for t in scatter["data"]) == sorted(c["name"] for c in cards)
    assert sorted(t["name"] for t in f1["data"]) == sorted(c["name"] for c in cards)
    calibration = at.dataframe[1].value
    assert list(calibration["model"]) == list(table["model"])
    by_name = {c["name"]: c for c in cards}
    assert list(calibration["ece_before"]) == [by_name[n]["metrics"]["val"]["ece"] for n in table["model"]]
    temperatures = [None if pd.isna(t) else t for t in calibration["temperature"]]
    assert temperatures == [by_name[n].get("temperature") for n in table["model"]]


def test_confusion_matrices_switch_model_and_normalise():
    cards = {p.stem: json.loads(p.read_text()) for p in REPO_WEIGHTS.glob("*.json")}
    at = open_compare()
    left, right = at.selectbox(key="compare_cm_0"), at.selectbox(key="compare_cm_1")
    assert left.value != right.value or len(cards) == 1
    counts = charts(at)[2]["data"][0]
    assert np.array_equal(counts["z"], cards[left.value]["metrics"]["val"]["confusion_matrix"])
    right.set_value(left.value)
    at.toggle(key="compare_normalize").set_value(True).run()
    assert not at.exception
    figs = charts(at)
    assert len(figs) == 6
    for fig in figs[2:4]:
        z = np.asarray(fig["data"][0]["z"])
        assert fig["layout"]["title"]["text"] == left.value
        assert np.allclose(z.sum(1), 1.0)
        recall = [cards[left.value]["metrics"]["val"]["per_class"][e]["recall"] for e in EMOTIONS]
        assert np.allclose(np.diag(z), recall, atol=5e-5)


def test_partial_and_broken_cards_render_with_empty_cells(weights_dir):
    write_card(full_card("complete", 0.6, 2.0, default=True), weights_dir)
    write_card({"name": "bare", "arch": "cnn"}, weights_dir)
    (weights_dir / "broken.json").write_text("{")
    at = open_compare()
    table = at.dataframe[0].value
    assert list(table["model"]) == ["complete", "bare"]
    assert table.set_index("model").loc["bare"].drop("default").isna().all()
    assert len(charts(at)) == 6
    at.selectbox(key="compare_cm_0").set_value("bare").run()
    assert not at.exception
    assert "no confusion matrix" in charts(at)[2]["layout"]["annotations"][0]["text"]


def test_no_cards_explains_instead_of_failing(weights_dir):
    at = open_compare()
    assert "No model cards found" in at.info[0].value
    assert len(at.get("plotly_chart")) == 0


def test_a_card_whose_weights_are_not_shipped_is_compared_but_not_offered(weights_dir):
    from fer_core.cards import save_weights
    from fer_core.models import create_model
    save_weights(create_model("cnn"), {**full_card("small", 0.6, 2.0, default=True), "arch": "cnn"}, weights_dir)
    write_card({**full_card("huge", 0.7, 9.0), "weights_file": None, "kept_at": "runs/huge/huge.pt",
                "not_shipped": "its fp16 weights are 22.3 MiB, over the 16 MiB limit on files in weights/"},
               weights_dir)
    at = open_compare()
    assert list(at.dataframe[0].value["model"]) == ["small", "huge"]
    notes = [c.value for c in at.caption if "huge" in c.value]
    assert notes == ["**huge** is compared from its card only (the app cannot load it): its fp16 weights are "
                     "22.3 MiB, over the 16 MiB limit on files in weights/."]
    assert at.sidebar.selectbox(key="model").options == ["small (default)"]
    assert not at.sidebar.warning  # expected, not a broken install
