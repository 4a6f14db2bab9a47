"""fer_core.compare: the comparison dashboard's table and figures, built from model cards only.

Checked against the shipped cards (every number must be the card's own) and against synthetic cards
in a private weights folder: partial, malformed and calibrated ones."""
import json
import math

import numpy as np
import pytest

from fer_core import EMOTIONS, compare
from fer_core.cards import REPO_WEIGHTS, read_cards, write_card


def shipped_cards():
    return [json.loads(p.read_text()) for p in sorted(REPO_WEIGHTS.glob("*.json"))]


def full_card(name, accuracy=0.5, ms=2.0, default=False, **extra):
    """A complete, consistent card: 100 val faces, `accuracy` of them right (all on the diagonal)."""
    k = len(EMOTIONS)
    right = int(round(accuracy * 100))
    cm = np.zeros((k, k), int)
    cm[0, 0], cm[1, 1], cm[1, 2] = right - 10, 10, 100 - right
    return {"name": name, "arch": "cnn", "default": default, "params": 1234, "size_bytes": 2_500_000,
            "history": [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_acc": 0.2 * e,
                         "val_acc": 0.15 * e} for e in (1, 2, 3)],
            "cpu_ms_per_face": {"batch1": {"median": ms, "p95": ms * 2}},
            "metrics": {"val": {"n": 100, "accuracy": accuracy, "macro_f1": accuracy / 2, "ece": 0.05,
                                "labels": list(EMOTIONS), "confusion_matrix": cm.tolist(),
                                "per_class": {e: {"f1": round(0.1 * (i + 1), 2)} for i, e in enumerate(EMOTIONS)},
                                "reliability": [[0.3, 0.25, 40], [0.7, 0.75, 60]]},
                        "val_tta": {"accuracy": accuracy + 0.01}},
            **extra}


def traces(fig, name=None):
    return [t for t in fig.data if name is None or t.name == name]


def test_shipped_table_has_every_card_with_its_own_numbers():
    raw = shipped_cards()
    frame = compare.table_frame(read_cards())
    assert len(raw) >= 1 and list(frame.columns) == list(compare.COLUMNS)
    assert sorted(frame["model"]) == sorted(c["name"] for c in raw)
    for card in raw:
        row = frame[frame["model"] == card["name"]].iloc[0]
        assert row["val accuracy"] == card["metrics"]["val"]["accuracy"]
        assert row["val accuracy (TTA)"] == card["metrics"]["val_tta"]["accuracy"]
        assert row["val macro-F1"] == card["metrics"]["val"]["macro_f1"]
        assert row["params"] == card["params"]
        assert row["size (MB)"] == pytest.approx(card["size_bytes"] / 1e6, abs=5e-4)
        assert row["CPU ms/face"] == card["cpu_ms_per_face"]["batch1"]["median"]
        assert bool(row["default"]) == bool(card.get("default"))
    assert frame["default"].sum() == 1


def test_shipped_default_model_comes_first():
    cards = compare.load_cards()
    assert cards[0]["default"] is True
    assert [c["name"] for c in cards[1:]] == sorted(c["name"] for c in cards[1:])


def test_shipped_scatter_has_one_point_per_model_at_its_latency_and_accuracy():
    cards = read_cards()
    fig = compare.accuracy_latency_figure(cards)
    assert len(fig.data) == len(cards)
    for card in cards:
        (t,) = traces(fig, card["name"])
        assert t.x == (card["cpu_ms_per_face"]["batch1"]["median"],)
        assert t.y == (card["metrics"]["val"]["accuracy"],)


def test_shipped_per_class_f1_bars_match_the_cards():
    cards = read_cards()
    fig = compare.per_class_f1_figure(cards)
    assert len(fig.data) == len(cards) and fig.layout.barmode == "group"
    for card in cards:
        (t,) = traces(fig, card["name"])
        assert t.x == EMOTIONS
        assert list(t.y) == [card["metrics"]["val"]["per_class"][e]["f1"] for e in EMOTIONS]


@pytest.mark.parametrize("card", shipped_cards(), ids=lambda c: c["name"])
def test_shipped_confusion_matrix_agrees_with_the_cards_accuracy(card):
    val = card["metrics"]["val"]
    cm = compare.confusion_matrix(card)
    assert cm.sum() == val["n"]
    assert np.trace(cm) / cm.sum() == pytest.approx(val["accuracy"], abs=5e-5)
    assert [int(v) for v in cm.sum(1)] == [val["per_class"][e]["support"] for e in EMOTIONS]
    norm = compare.confusion_matrix(card, normalize=True)
    assert np.allclose(norm.sum(1), 1.0)
    assert np.allclose(np.diag(norm), [val["per_class"][e]["recall"] for e in EMOTIONS], atol=5e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_figure_is_a_labelled_heatmap(normalize):
    card = shipped_cards()[0]
    fig = compare.confusion_figure(card, normalize)
    (heat,) = fig.data
    assert heat.type == "heatmap" and heat.x == EMOTIONS and heat.y == EMOTIONS
    assert np.allclose(np.asarray(heat.z), compare.confusion_matrix(card, normalize))
    assert fig.layout.title.text == card["name"]


def test_shipped_training_curves_have_one_point_per_epoch():
    cards = read_cards()
    fig = compare.training_curves_figure(cards)
    trained = [c for c in cards if c.get("history")]  # an ensemble card has no training history
    assert len(fig.data) == 4 * len(trained)  # train/val x loss/accuracy
    for card in trained:
        epochs = tuple(h["epoch"] for h in card["history"])
        mine = [t for t in fig.data if t.legendgroup == card["name"]]
        assert {t.name for t in mine} == {f"{card['name']} train", f"{card['name']} val"}
        assert all(t.x == epochs for t in mine)
        val_loss = [t for t in mine if t.xaxis == "x" and t.line.dash == "solid"][0]
        assert list(val_loss.y) == [h["val_loss"] for h in card["history"]]


@pytest.mark.parametrize("card", shipped_cards(), ids=lambda c: c["name"])
def test_shipped_reliability_bins_cover_every_val_face(card):
    bins = compare.reliability_bins(card)
    assert sum(count for _, _, count in bins) == card["metrics"]["val"]["n"]
    assert all(0 < conf <= 1 and 0 <= acc <= 1 for conf, acc, _ in bins)
    fig = compare.reliability_figure([card])
    assert [t.name for t in fig.data][:2] == ["perfect calibration", card["name"]]
    assert fig.data[1].customdata == tuple(count for _, _, count in bins)


@pytest.mark.parametrize("card", [c for c in shipped_cards() if "calibration" in c], ids=lambda c: c["name"])
def test_shipped_temperature_scaling_is_drawn_and_tabled(card):
    calibration = card["calibration"]
    scaled = compare.reliability_bins(card, "calibration", "reliability_after")
    assert sum(count for _, _, count in scaled) == calibration["n"] == card["metrics"]["val"]["n"]
    fig = compare.reliability_figure([card])
    assert [t.name for t in fig.data] == ["perfect calibration", card["name"],
                                          f"{card['name']} (T={card['temperature']:g})"]
    assert fig.data[2].x == tuple(conf for conf, _, _ in scaled) and fig.data[2].line.dash == "dot"
    (row,) = compare.calibration_rows([card])
    assert row == {"model": card["name"], "temperature": card["temperature"],
                   "ece_before": calibration["ece_before"], "ece_after": calibration["ece_after"],
                   "nll_before": calibration["nll_before"], "nll_after": calibration["nll_after"]}
    assert row["ece_before"] == card["metrics"]["val"]["ece"]  # the card's metrics are before scaling


def test_a_new_card_appears_without_code_changes(weights_dir):
    write_card(full_card("alpha", 0.6, 3.0, default=True), weights_dir)
    write_card(full_card("beta", 0.4, 1.0), weights_dir)
    assert list(compare.table_frame(compare.load_cards())["model"]) == ["alpha", "beta"]
    write_card(full_card("gamma", 0.7, 5.0), weights_dir)
    frame = compare.table_frame(compare.load_cards())
    assert list(frame["model"]) == ["alpha", "beta", "gamma"]
    assert list(frame["val accuracy"]) == [0.6, 0.4, 0.7]
    assert list(frame["val accuracy (TTA)"]) == pytest.approx([0.61, 0.41, 0.71])
    assert list(frame["size (MB)"]) == [2.5, 2.5, 2.5]
    fig = compare.accuracy_latency_figure(compare.load_cards())
    assert [(t.name, t.x[0], t.y[0]) for t in fig.data] == [("alpha", 3.0, 0.6), ("beta", 1.0, 0.4),
                                                             ("gamma", 5.0, 0.7)]


def test_a_card_with_only_name_and_arch_gives_empty_cells_and_empty_figures(weights_dir):
    write_card({"name": "bare", "arch": "cnn"}, weights_dir)
    cards = compare.load_cards()
    (row,) = compare.table_rows(cards)
    assert row == {"model": "bare", "default": False, "val accuracy": None, "val accuracy (TTA)": None,
                   "val macro-F1": None, "params": None, "size (MB)": None, "CPU ms/face": None}
    frame = compare.table_frame(cards)
    assert frame.drop(columns=["model", "default"]).isna().all().all()
    for build in (compare.accuracy_latency_figure, compare.per_class_f1_figure, compare.training_curves_figure):
        fig = build(cards)
        assert len(fig.data) == 0
        assert [a.text for a in fig.layout.annotations if a.text.startswith("no card")]
    reliability = compare.reliability_figure(cards)
    assert [t.name for t in reliability.data] == ["perfect calibration"]
    assert "no card has reliability bins" in reliability.layout.annotations[0].text
    assert compare.confusion_matrix(cards[0]) is None
    assert "no confusion matrix" in compare.confusion_figure(cards[0]).layout.annotations[0].text
    assert compare.calibration_rows(cards) == [{"model": "bare", "temperature": None, "ece_before": None,
                                                 "ece_after": None, "nll_before": None, "nll_after": None}]


def test_a_card_missing_history_and_latency_is_left_out_of_those_figures_only(weights_dir):
    partial = full_card("partial", 0.55)
    del partial["history"], partial["cpu_ms_per_face"]
    write_card(partial, weights_dir)
    write_card(full_card("complete", 0.65, 2.0), weights_dir)
    cards = compare.load_cards()
    frame = compare.table_frame(cards)
    assert math.isnan(frame.set_index("model").loc["partial", "CPU ms/face"])
    assert frame.set_index("model").loc["partial", "val accuracy"] == 0.55
    assert [t.name for t in compare.accuracy_latency_figure(cards).data] == ["complete"]
    assert {t.legendgroup for t in compare.training_curves_figure(cards).data} == {"complete"}
    assert {t.name for t in compare.per_class_f1_figure(cards).data} == {"complete", "partial"}


def test_malformed_fields_are_ignored_not_raised(weights_dir):
    bad = {"name": "messy", "arch": "cnn", "params": "many", "size_bytes": True, "default": 0,
           "cpu_ms_per_face": {"batch1": 3.0},
           "history": [1, None, {"epoch": 1, "val_acc": "high", "train_loss": 1.5}, {"train_loss": 1.2}],
           "metrics": {"val": {"accuracy": float("nan"), "confusion_matrix": [[1, 2], [3]],
                               "per_class": {"happy": {"f1": 0.9}, "sad": "x"},
                               "reliability": [[0.5, 0.5], "row", [0.9, 0.8, 10], [0.2, None, 3]]},
                       "val_tta": "n/a"}}
    write_card(bad, weights_dir)
    (card,) = compare.load_cards()
    (row,) = compare.table_rows([card])
    assert all(row[k] is None for k in compare.COLUMNS if k not in ("model", "default"))
    assert compare.history(card) == {"train_loss": ([1, 4], [1.5, 1.2])}
    assert compare.per_class_f1(card) == [None, None, None, 0.9, None, None, None]
    assert compare.reliability_bins(card) == [(0.9, 0.8, 10)]
    assert compare.confusion_matrix(card) is None
    for fig in (compare.training_curves_figure([card]), compare.per_class_f1_figure([card]),
                compare.reliability_figure([card]), compare.confusion_figure(card, True)):
        assert fig.to_dict()  # serialisable, as st.plotly_chart needs


def test_an_ensemble_card_is_compared_like_any_model(weights_dir):
    write_card(full_card("a", 0.5, 1.0, default=True), weights_dir)
    ensemble = full_card("duo", 0.62, 4.0, arch="ensemble", members=[{"name": "a", "arch": "cnn", "sha256": "0"}])
    del ensemble["history"]  # an ensemble is measured, not trained
    write_card(ensemble, weights_dir)
    cards = compare.load_cards()
    frame = compare.table_frame(cards).set_index("model")
    assert frame.loc["duo", "val accuracy"] == 0.62 and frame.loc["duo", "CPU ms/face"] == 4.0
    assert [t.name for t in compare.accuracy_latency_figure(cards).data] == ["a", "duo"]
    assert {t.legendgroup for t in compare.training_curves_figure(cards).data} == {"a"}


def test_unreadable_card_files_are_skipped(weights_dir):
    write_card(full_card("good", 0.5), weights_dir)
    (weights_dir / "broken.json").write_text("{not json")
    (weights_dir / "nameless.json").write_text(json.dumps({"arch": "cnn"}))
    assert [c["name"] for c in compare.load_cards()] == ["good"]


def test_temperature_and_ece_before_after_are_shown(weights_dir):
    card = full_card("calibrated", 0.6, temperature=1.5,
                     calibration={"temperature": 1.5, "ece_before": 0.08, "ece_after": 0.02, "nll_before": 1.2,
                                  "nll_after": 1.1, "reliability_after": [[0.4, 0.38, 50], [0.8, 0.79, 50]]})
    write_card(card, weights_dir)
    write_card(full_card("plain", 0.5), weights_dir)
    write_card({**full_card("only_in_calibration", 0.5), "calibration": {"temperature": 0.9}}, weights_dir)
    cards = compare.load_cards()
    assert compare.calibration_rows(cards) == [
        {"model": "calibrated", "temperature": 1.5, "ece_before": 0.08, "ece_after": 0.02, "nll_before": 1.2,
         "nll_after": 1.1},
        {"model": "only_in_calibration", "temperature": 0.9, "ece_before": 0.05, "ece_after": None,
         "nll_before": None, "nll_after": None},
        {"model": "plain", "temperature": None, "ece_before": 0.05, "ece_after": None, "nll_before": None,
         "nll_after": None}]
    fig = compare.reliability_figure(cards)
    assert [t.name for t in fig.data] == ["perfect calibration", "calibrated", "calibrated (T=1.5)",
                                          "only_in_calibration", "plain"]
    scaled = fig.data[2]
    assert scaled.x == (0.4, 0.8) and scaled.y == (0.38, 0.79) and scaled.line.dash == "dot"


def test_colours_are_the_same_model_to_model_across_figures(weights_dir):
    for name in ("a", "b"):
        write_card(full_card(name), weights_dir)
    cards = compare.load_cards()
    palette = compare.colors(cards)
    assert palette["a"] != palette["b"]
    assert {t.name: t.marker.color for t in compare.per_class_f1_figure(cards).data} == palette
    assert {t.legendgroup: t.line.color for t in compare.training_curves_figure(cards).data} == palette
