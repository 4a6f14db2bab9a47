"""fer_core.app.compare: the comparison dashboard's table and figures, built from model cards only.

Checked against the shipped cards (every number must be the card's own) and against synthetic
schema-v2 cards in a private weights folder: partial ones, real-photo metrics, robustness figures,
seed families and calibrated ones."""
import json
import statistics

import numpy as np
import pytest

from fer_core import EMOTIONS
from fer_core.app import compare, report
from fer_core.models.cards import REPO_WEIGHTS, default_name, read_cards, set_default, write_card
from helpers_cards import v2_card, with_metrics

ACC = "fer2013 val acc"


def shipped_cards():
    return [json.loads(p.read_text()) for p in sorted(REPO_WEIGHTS.glob("*.json"))]


def val(card, dataset="fer2013", split="val"):
    return card["metrics"][dataset][split]


def split(accuracy, n=100, share=None, no_face=None):
    """Consistent split metrics: n faces, `accuracy` of them right (angry and disgust right, the rest of
    disgust's row called fear)."""
    k = len(EMOTIONS)
    right = int(round(accuracy * n))
    cm = np.zeros((k, k), int)
    cm[0, 0], cm[1, 1], cm[1, 2] = right - 10, 10, n - right
    support = cm.sum(1)
    m = {"n": n, "accuracy": accuracy, "macro_f1": accuracy / 2, "ece": 0.05, "labels": list(EMOTIONS),
         "confusion_matrix": cm.tolist(),
         "per_class": {e: {"f1": round(0.1 * (i + 1), 2), "support": int(support[i]),
                           "recall": round(cm[i, i] / support[i], 4) if support[i] else 0}
                       for i, e in enumerate(EMOTIONS)},
         "reliability": [[0.3, 0.25, 40], [0.7, 0.75, n - 40]]}
    if share is not None:
        m["predicted_share"] = dict(zip(EMOTIONS, share))
    if no_face is not None:
        m["no_face"] = no_face
    return m


def full_card(name, accuracy=0.5, ms=2.0, **extra):
    """A complete schema-v2 card measured on FER2013's val split (100 faces)."""
    card = v2_card(name, "cnn", params=1234, size_bytes=2_500_000,
                   history=[{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_acc": 0.2 * e,
                             "val_acc": 0.15 * e} for e in (1, 2, 3)],
                   cpu_ms_per_face={"batch1": {"median": ms, "p95": ms * 2}})
    card = with_metrics(with_metrics(card, "fer2013", "val", split(accuracy)), "fer2013", "val_tta",
                        {"accuracy": round(accuracy + 0.01, 4)})
    return {**card, **extra}


def traces(fig, name=None):
    return [t for t in fig.data if name is None or t.name == name]


# ----------------------------------------------------------------------------------- shipped cards

def test_shipped_table_has_every_card_with_its_own_numbers():
    raw = shipped_cards()
    frame = compare.table_frame(read_cards(), default_name(), fold_families=False)
    assert list(frame.columns) == report.columns(read_cards())
    assert sorted(frame["model"]) == sorted(c["name"] for c in raw)
    for card in raw:
        row = frame[frame["model"] == card["name"]].iloc[0]
        assert row[ACC] == val(card)["accuracy"]
        assert row["fer2013 val acc (TTA)"] == val(card, split="val_tta")["accuracy"]
        assert row["fer2013 val macro-F1"] == val(card)["macro_f1"]
        assert row["params"] == card["params"]
        assert row["size (MB)"] == pytest.approx(card["size_bytes"] / 1e6, abs=5e-4)
        assert row["CPU ms/face"] == card["cpu_ms_per_face"]["batch1"]["median"]
        assert bool(row["default"]) == (card["name"] == default_name())
        assert bool(row["shipped"]) == (not card.get("not_shipped"))
    assert frame["default"].sum() == 1


def test_shipped_seed_family_is_one_row_with_mean_and_spread():
    cards = read_cards()
    seeds = [c for c in cards if c["name"].startswith("vgg13_gpu")]
    assert len(seeds) == 6
    frame = compare.table_frame(cards, default_name()).set_index("model")
    assert not any(name.startswith("vgg13_gpu") and name != "vgg13_gpu*" for name in frame.index)
    row = frame.loc["vgg13_gpu*"]
    accs = [val(c)["accuracy"] for c in seeds]
    assert row["seeds"] == 6 and row["arch"] == "vgg13"
    assert row[ACC] == pytest.approx(statistics.fmean(accs), abs=1e-6)
    assert row[report.SPREAD] == pytest.approx(statistics.stdev(accs), abs=1e-6)
    latencies = [c["cpu_ms_per_face"]["batch1"]["median"] for c in seeds]
    assert row["CPU ms/face"] == pytest.approx(statistics.fmean(latencies))
    assert frame.loc["vgg13_kd", "seeds"] == 1 and frame.loc["vgg13_kd", report.SPREAD] == 0
    assert "vgg13_s_seed1" in frame.index  # a lone numbered model is not a family
    assert len(frame) == len(cards) - 5


def test_shipped_default_model_comes_first():
    cards = compare.load_cards()
    assert cards[0]["name"] == default_name()
    assert [c["name"] for c in cards[1:]] == sorted(c["name"] for c in cards[1:])


def test_shipped_default_selection_is_the_default_the_best_single_model_and_the_best_ensemble():
    cards = read_cards()
    singles = [c for c in cards if c["arch"] != "ensemble"]
    ensembles = [c for c in cards if c["arch"] == "ensemble"]
    best_single = max(singles, key=lambda c: val(c)["accuracy"])["name"]
    best_ensemble = max(ensembles, key=lambda c: val(c)["accuracy"])["name"]
    assert compare.default_selection(cards, default_name()) == [default_name(), best_single, best_ensemble]


def labels(fig) -> dict:
    return {a.text: a for a in fig.layout.annotations}


def measured(card, dataset, build):
    """(ms, accuracy) the card holds for `build`, read straight from its JSON; None where it lacks either."""
    figures = card if build == "fp32" else card.get("int8", {})
    try:
        return figures["cpu_ms_per_face"]["batch1"]["median"], figures["metrics"][dataset]["val"]["accuracy"]
    except KeyError:
        return None


def test_log_ticks_are_the_1_2_5_values_inside_the_range_or_every_digit_in_a_narrow_one():
    assert compare.log_ticks(np.log10(0.09), np.log10(11)) == [0.1, 0.2, 0.5, 1, 2, 5, 10]
    assert compare.log_ticks(np.log10(1.5), np.log10(45.5)) == [2, 5, 10, 20]
    assert compare.log_ticks(np.log10(0.25), np.log10(0.75)) == [0.3, 0.4, 0.5, 0.6, 0.7]  # one 1-2-5 value only
    assert compare.log_ticks(np.log10(3.1), np.log10(3.9)) == []  # no digit: plotly's own ticks


def test_a_scatter_of_one_model_keeps_plotlys_ticks():
    card = next(c for c in read_cards() if c["name"] == default_name())
    fig = compare.accuracy_latency_figure([card], None, "fer2013", "int8")
    assert len(fig.data) == 1 and fig.layout.xaxis.tickvals is None and fig.layout.xaxis.ticktext is None


@pytest.mark.parametrize("dataset", ["fer2013", "wild_photos"])
@pytest.mark.parametrize("build", ["int8", "fp32"])
def test_shipped_scatter_has_one_point_per_model_at_its_latency_and_accuracy(dataset, build):
    cards = read_cards()
    picked = compare.default_selection(cards, default_name())
    fig = compare.accuracy_latency_figure(cards, picked, dataset, build)
    placed = [c for c in cards if measured(c, dataset, build)]
    assert len(fig.data) == len(placed) >= len(cards) - 1  # resnet18: no int8 build, not run on photos
    for card in placed:
        ms, acc = measured(card, dataset, build)
        (t,) = traces(fig, card["name"])
        assert (t.x, t.y) == ((ms,), (acc,))
        labelled = card["name"] in picked
        assert (card["name"] in labels(fig)) == labelled and (t.marker.color == "lightgrey") != labelled
    assert fig.layout.xaxis.type == "log"
    ticks, lo, hi = fig.layout.xaxis.tickvals, *fig.layout.xaxis.range  # 1-2-5 ms ticks, each labelled in full
    assert list(fig.layout.xaxis.ticktext) == [f"{v:g}" for v in ticks] and len(ticks) >= 3
    assert all(lo <= np.log10(v) <= hi for v in ticks)
    assert ticks[0] <= 10 * min(t.x[0] for t in fig.data) and ticks[-1] >= max(t.x[0] for t in fig.data) / 10
    assert build in fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == f"{dataset} val accuracy ({build})"
    for name, a in labels(fig).items():  # a label sits at its point (log x axis: annotations take log10)
        ms, acc = measured(next(c for c in cards if c["name"] == name), dataset, build)
        assert a.x == pytest.approx(np.log10(ms)) and a.y == acc
    lacking = sorted(c["name"] for c in cards if c not in placed)
    note = compare.speed_left_out(cards, dataset, build)
    assert (note is None) == (not lacking)
    if lacking:
        assert note.startswith(f"Left out: {', '.join(lacking)} (") and build in note


def test_the_int8_scatter_shows_what_the_app_runs_faster_than_fp32_and_opens_on_real_photos():
    cards = {c["name"]: c for c in read_cards()}
    assert compare.default_dataset(list(cards.values())) == "wild_photos"
    int8 = {t.name: (t.x[0], t.y[0]) for t in compare.accuracy_latency_figure(list(cards.values())).data}
    fp32 = {t.name: (t.x[0], t.y[0]) for t in compare.accuracy_latency_figure(list(cards.values()), build="fp32").data}
    assert "resnet18" in fp32 and "resnet18" not in int8
    assert all(int8[n][0] < fp32[n][0] for n in int8)  # every int8 build is timed faster than its fp32 model
    assert all(abs(int8[n][1] - fp32[n][1]) <= 0.003 for n in int8)  # and within issue 21's 0.3 points on FER2013
    assert compare.speed_left_out(list(cards.values()), "fer2013", "int8") == (
        "Left out: resnet18 (weights not shipped, and no int8 figures on fer2013 in the card).")
    with pytest.raises(ValueError, match="unknown build 'fp16'"):
        compare.speed_point(cards["cnn"], build="fp16")


def label_box(point, offset, text):
    w, h = compare.label_size(text)
    x, y = point[0] + offset[0], point[1] + offset[1]
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def meet(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_crowded_points_meet_neither_each_other_nor_a_point_and_stay_inside():
    # six seeds within 30 px of each other, one point alone, and a grey point beside the crowd (px, y down)
    points = [(400 + 6 * i, 200 + 5 * (i % 3)) for i in range(6)] + [(100, 300)]
    texts = [f"vgg13_gpu{i}" for i in range(6)] + ["cnn"]
    area, grey = (0, 0, 800, 400), [(380, 215)]
    offsets = compare.place_labels(points, texts, area, others=grey)
    assert None not in offsets
    boxes = [label_box(p, o, t) for p, o, t in zip(points, offsets, texts)]
    for i, a in enumerate(boxes):
        assert area[0] <= a[0] and area[1] <= a[1] and a[2] <= area[2] and a[3] <= area[3]
        assert not any(meet(a, b) for b in boxes[i + 1:])
        assert not any(meet(a, (x - 6.5, y - 6.5, x + 6.5, y + 6.5)) for x, y in points + grey)
    # alone, a label goes right above its point, touching the marker's room (radius 6.5 + 3 px gap)
    assert offsets[6] == (0, -(6.5 + 3 + compare.LINE_PX / 2))


def test_a_label_with_no_free_place_is_none_and_nothing_else_moves():
    # an area just big enough for one label above the first point: the second cannot be placed
    w, h = compare.label_size("ab")
    area = (0, 40, w + 4, 64)
    offsets = compare.place_labels([(w / 2 + 2, 60), (w / 2 + 2, 62)], ["ab", "ab"], area, marker=2, gap=0)
    assert offsets == [(0, -(1 + h / 2)), None]
    assert compare.place_labels([], [], area) == []


@pytest.mark.parametrize("dataset", ["fer2013", "wild_photos"])
def test_every_picked_model_is_labelled_once_on_the_shipped_scatter_with_no_two_labels_meeting(dataset):
    cards = read_cards()
    fig = compare.accuracy_latency_figure(cards, dataset=dataset)  # every model picked
    assert sorted(labels(fig)) == sorted(c["name"] for c in cards if measured(c, dataset, "int8"))
    assert fig.layout.height == 600  # more than 8 labels: a taller chart
    xr, yr = fig.layout.xaxis.range, fig.layout.yaxis.range
    m = compare.SCATTER_MARGIN
    w, h = compare.SCATTER_WIDTH - m["l"] - m["r"], fig.layout.height - m["t"] - m["b"]
    boxes = []
    for a in fig.layout.annotations:
        x, y = (a.x - xr[0]) / (xr[1] - xr[0]) * w, (yr[1] - a.y) / (yr[1] - yr[0]) * h
        offset = (a.ax, a.ay) if a.showarrow else (a.xshift, -a.yshift)
        boxes.append(label_box((x, y), offset, a.text))
    assert not [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if meet(boxes[i], boxes[j])]


def test_shipped_per_class_f1_bars_match_the_cards_and_only_the_selected_models():
    cards = read_cards()
    picked = compare.select(cards, compare.default_selection(cards, default_name()))
    fig = compare.per_class_f1_figure(picked)
    assert [t.name for t in fig.data] == [c["name"] for c in picked] and fig.layout.barmode == "group"
    for card in picked:
        (t,) = traces(fig, card["name"])
        assert t.x == EMOTIONS
        assert list(t.y) == [val(card)["per_class"][e]["f1"] for e in EMOTIONS]


@pytest.mark.parametrize("card", shipped_cards(), ids=lambda c: c["name"])
def test_shipped_confusion_matrix_agrees_with_the_cards_accuracy(card):
    m = val(card)
    cm = compare.confusion_matrix(card)
    assert cm.sum() == m["n"]
    assert np.trace(cm) / cm.sum() == pytest.approx(m["accuracy"], abs=5e-5)
    assert [int(v) for v in cm.sum(1)] == [m["per_class"][e]["support"] for e in EMOTIONS]
    norm = compare.confusion_matrix(card, normalize=True)
    assert np.allclose(norm.sum(1), 1.0)
    assert np.allclose(np.diag(norm), [m["per_class"][e]["recall"] for e in EMOTIONS], atol=5e-5)
    share = compare.predicted_share(card)  # from the matrix where the card has no predicted_share
    assert share == pytest.approx(list(cm.sum(0) / cm.sum()), abs=1e-4)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_figure_is_a_labelled_heatmap(normalize):
    card = shipped_cards()[0]
    fig = compare.confusion_figure(card, normalize)
    (heat,) = fig.data
    assert heat.type == "heatmap" and heat.x == EMOTIONS and heat.y == EMOTIONS
    assert np.allclose(np.asarray(heat.z), compare.confusion_matrix(card, normalize))
    assert fig.layout.title.text == card["name"]


def test_shipped_training_curves_have_one_point_per_epoch_and_one_legend_entry_per_model():
    cards = read_cards()
    fig = compare.training_curves_figure(cards)
    trained = [c for c in cards if c.get("history")]  # an ensemble card has no training history
    assert [t.name for t in fig.data if t.showlegend] == [c["name"] for c in trained]
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0  # below the plots, not beside
    for card in trained:
        epochs = tuple(h["epoch"] for h in card["history"])
        photos = "wild_photos_val_acc" in card["history"][0]  # fine-tuned beside the real photos
        mine = [t for t in fig.data if t.legendgroup == card["name"]]
        assert len(mine) == (6 if photos else 4) and all(t.x == epochs for t in mine)  # loss and accuracy each
        assert [t.line.dash for t in mine] == (["dash", "solid", "dot"] if photos else ["dash", "solid"]) * 2
        assert all((t.mode == "lines+markers") == (len(epochs) <= compare.FEW_EPOCHS) for t in mine)
        assert [t.marker.symbol for t in mine[:len(mine) // 2]] == ["circle-open", "circle", "diamond"][:len(mine) // 2]
        val_loss = [t for t in mine if t.xaxis == "x" and t.line.dash == "solid"][0]
        assert list(val_loss.y) == [h["val_loss"] for h in card["history"]]
        if photos:
            photo_acc = [t for t in mine if t.xaxis == "x2" and t.line.dash == "dot"][0]
            assert list(photo_acc.y) == [h["wild_photos_val_acc"] for h in card["history"]]
    assert sum("wild_photos_val_acc" in c["history"][0] for c in trained) >= 6  # the default and its line


def test_shipped_default_is_named_as_a_fine_tune_with_its_whole_lineage():
    cards = read_cards()
    default = next(c for c in cards if c["name"] == "vgg13_s_wild4")
    assert compare.lineage(default, cards) == ["vgg13_s_wild3", "vgg13_s_wild2", "vgg13_s_wild", "vgg13_s_real",
                                               "vgg13_s_kd_long"]
    note = compare.fine_tune_note([default, next(c for c in cards if c["name"] == "vgg13_kd")], cards)
    assert note.endswith("vgg13_s_wild4: 8 epochs from vgg13_s_wild3 (itself from vgg13_s_wild2 ← vgg13_s_wild ← "
                         "vgg13_s_real ← vgg13_s_kd_long).") and "vgg13_kd" not in note  # trained from scratch
    assert compare.curves_caption([default]) == (
        "Per epoch. Dashed: train, solid: FER2013 val, dotted: wild_photos val (trained beside FER2013). "
        "Runs of up to 12 epochs (fine-tunes) mark each one: ○ train, ● FER2013 val, ◆ wild_photos val.")


def test_lineage_stops_at_an_unknown_model_and_at_a_loop():
    def tuned(name, parent):
        return {**full_card(name), "initialized_from": {"name": parent, "sha256": "0" * 64}}
    a, b, c = tuned("a", "b"), tuned("b", "c"), tuned("c", "a")  # a loop: c from a
    assert compare.lineage(a, [a, b, c]) == ["b", "c"]
    assert compare.lineage(a, [a]) == ["b"]  # b's card is not here: its own parent is unknown
    assert compare.lineage(full_card("scratch"), [a]) == []
    assert compare.fine_tune_note([a], [a]) == ("Fine-tuned from another model's weights, so their epochs count "
                                                "from the start of the fine-tune: a: 3 epochs from b.")
    assert compare.fine_tune_note([full_card("scratch")], [a]) is None
    assert compare.curves_caption([full_card("scratch")]) == ("Per epoch. Dashed: train, solid: FER2013 val. Runs of "
                                                              "up to 12 epochs (fine-tunes) mark each one: ○ train, "
                                                              "● FER2013 val.")  # its 3 epochs
    long_run = {**full_card("long"), "history": full_card("x")["history"] * 5}
    assert compare.curves_caption([long_run]) == "Per epoch. Dashed: train, solid: FER2013 val."


@pytest.mark.parametrize("card", shipped_cards(), ids=lambda c: c["name"])
def test_shipped_reliability_bins_cover_every_val_face(card):
    bins = compare.reliability_bins(card)
    assert sum(count for _, _, count in bins) == val(card)["n"]
    assert all(0 < conf <= 1 and 0 <= acc <= 1 for conf, acc, _ in bins)
    fig = compare.reliability_figure([card])
    assert [t.name for t in fig.data][:2] == ["perfect calibration", card["name"]]
    drawn = [b for b in bins if b[2] >= compare.MIN_BIN_FACES]  # a bin of a few faces is left out
    assert fig.data[1].customdata == tuple(count for _, _, count in drawn)
    assert fig.data[1].x == tuple(conf for conf, _, _ in drawn) and fig.data[1].y == tuple(acc for _, acc, _ in drawn)
    assert sum(count for _, _, count in drawn) >= 0.99 * val(card)["n"]


def test_shipped_reliability_figure_leaves_out_the_one_face_bin_that_drew_a_spike():
    kd = next(c for c in read_cards() if c["name"] == "vgg13_kd")
    assert (0.1972, 1.0, 1) in compare.reliability_bins(kd)  # one face at 20% confidence, read right
    line = compare.reliability_figure([kd]).data[1]
    assert min(line.x) > 0.2 and 1 not in line.customdata


@pytest.mark.parametrize("card", [c for c in shipped_cards() if "calibration" in c], ids=lambda c: c["name"])
def test_shipped_temperature_scaling_is_drawn_and_tabled(card):
    calibration = card["calibration"]
    scaled = compare.reliability_bins(card, "calibration", "reliability_after")
    assert sum(count for _, _, count in scaled) == calibration["n"] == val(card)["n"]
    fig = compare.reliability_figure([card])
    assert [t.name for t in fig.data] == ["perfect calibration", card["name"],
                                          f"{card['name']} (T={card['temperature']:g})"]
    assert fig.data[2].x == tuple(conf for conf, _, n in scaled if n >= compare.MIN_BIN_FACES)
    assert fig.data[2].line.dash == "dot"
    (row,) = compare.calibration_rows([card])
    assert row == {"model": card["name"], "temperature": card["temperature"],
                   "ece_before": calibration["ece_before"], "ece_after": calibration["ece_after"],
                   "nll_before": calibration["nll_before"], "nll_after": calibration["nll_after"]}
    assert row["ece_before"] == val(card)["ece"]  # the card's metrics are before scaling


def test_one_builder_gives_the_readme_the_cli_and_the_dashboard_the_same_numbers():
    cards = read_cards()
    rows = report.results_rows(cards, default_name())
    frame = compare.table_frame(cards, default_name(), fold_families=False)
    assert frame[ACC].tolist() == [r[ACC] for r in rows]
    readme = {line.split(" | ")[0][2:].rstrip(" †"): line for line in report.results_markdown().splitlines()[2:]
              if line.startswith("| ")}
    for r in rows:
        assert f" | {r[ACC]:.2%} | " in readme[r["model"]]


# ------------------------------------------------------------------------------- synthetic cards

def test_a_new_card_appears_without_code_changes(weights_dir):
    write_card(full_card("alpha", 0.6, 3.0), weights_dir)
    write_card(full_card("beta", 0.4, 1.0), weights_dir)
    set_default("alpha")
    assert list(compare.table_frame(compare.load_cards())["model"]) == ["alpha", "beta"]
    write_card(full_card("gamma", 0.7, 5.0), weights_dir)
    cards = compare.load_cards()
    frame = compare.table_frame(cards, default_name())
    assert list(frame["model"]) == ["alpha", "beta", "gamma"] and list(frame["default"]) == [True, False, False]
    assert list(frame[ACC]) == [0.6, 0.4, 0.7]
    assert list(frame["fer2013 val acc (TTA)"]) == pytest.approx([0.61, 0.41, 0.71])
    assert list(frame["size (MB)"]) == [2.5, 2.5, 2.5]
    fig = compare.accuracy_latency_figure(cards, build="fp32")
    assert [(t.name, t.x[0], t.y[0]) for t in fig.data] == [("alpha", 3.0, 0.6), ("beta", 1.0, 0.4),
                                                             ("gamma", 5.0, 0.7)]
    assert compare.default_selection(cards, "alpha") == ["alpha", "gamma"]  # no ensemble among them
    assert compare.default_dataset(cards) == "fer2013"  # no photo set measured: the scatter opens on FER2013


def test_a_card_with_no_metrics_gives_empty_cells_and_empty_figures(weights_dir):
    write_card(v2_card("bare"), weights_dir)
    cards = compare.load_cards()
    (row,) = report.results_rows(cards)
    assert row["model"] == "bare" and row["default"] is False and row["seeds"] == 1
    assert all(row[k] is None for k in (ACC, "fer2013 val acc (TTA)", "fer2013 val macro-F1", "CPU ms/face", "epochs"))
    frame = compare.table_frame(cards)
    assert frame[[ACC, "CPU ms/face"]].isna().all().all()
    for build in (compare.accuracy_latency_figure, compare.per_class_f1_figure, compare.training_curves_figure,
                  compare.robustness_figure, compare.recall_figure, compare.predicted_share_figure):
        fig = build(cards)
        assert len(fig.data) == 0
        assert [a.text for a in fig.layout.annotations if a.text.startswith("no ")]
    reliability = compare.reliability_figure(cards)
    assert [t.name for t in reliability.data] == ["perfect calibration"]
    assert "no card has reliability bins" in reliability.layout.annotations[0].text
    assert compare.confusion_matrix(cards[0]) is None and compare.predicted_share(cards[0]) is None
    assert "no confusion matrix on fer2013" in compare.confusion_figure(cards[0]).layout.annotations[0].text
    assert compare.calibration_rows(cards) == [{"model": "bare", "temperature": None, "ece_before": None,
                                                 "ece_after": None, "nll_before": None, "nll_after": None}]
    assert compare.default_selection(cards) == [] and compare.dataset_rows(cards, "fer2013") == []


def test_a_card_missing_history_and_latency_is_left_out_of_those_figures_only(weights_dir):
    partial = full_card("partial", 0.55)
    del partial["history"], partial["cpu_ms_per_face"]
    write_card(partial, weights_dir)
    write_card(full_card("complete", 0.65, 2.0), weights_dir)
    cards = compare.load_cards()
    frame = compare.table_frame(cards).set_index("model")
    assert np.isnan(frame.loc["partial", "CPU ms/face"]) and frame.loc["partial", ACC] == 0.55
    assert [t.name for t in compare.accuracy_latency_figure(cards, build="fp32").data] == ["complete"]
    assert compare.speed_left_out(cards, build="fp32").startswith("Left out: partial (no fp32 fer2013")
    assert {t.legendgroup for t in compare.training_curves_figure(cards).data} == {"complete"}
    assert {t.name for t in compare.per_class_f1_figure(cards).data} == {"complete", "partial"}
    assert compare.left_out(cards, "history") == "Left out: partial (their cards hold no training history)."


def test_the_scatter_note_tells_a_measurable_model_from_one_whose_weights_are_not_shipped(weights_dir):
    write_card(full_card("here", 0.6, 2.0), weights_dir)
    write_card({**full_card("elsewhere", 0.7, 9.0), "not_shipped": "too big"}, weights_dir)
    cards = compare.load_cards()
    assert compare.speed_left_out(cards, build="fp32") is None  # both have fp32 figures on FER2013
    assert compare.speed_left_out(cards) == (
        "Left out: here (no int8 build with fer2013 val accuracy and latency: `python -m fer_core quantize --model "
        "NAME` and `python -m fer_core benchmark --model NAME --write-card` add them). Left out: elsewhere "
        "(weights not shipped, and no int8 figures on fer2013 in the card).")
    assert "no card has both fer2013 val accuracy and CPU latency for its int8 build" in \
        compare.accuracy_latency_figure(cards).layout.annotations[0].text


def test_a_split_with_accuracy_only_is_in_the_table_and_out_of_the_per_class_figures(weights_dir):
    write_card(v2_card("thin", accuracy=0.5, tta=0.52), weights_dir)
    (card,) = compare.load_cards()
    assert report.results_rows([card])[0][ACC] == 0.5
    assert compare.per_class_f1(card) == [None] * 7 and compare.reliability_bins(card) == []
    assert compare.confusion_matrix(card) is None
    for fig in (compare.training_curves_figure([card]), compare.per_class_f1_figure([card]),
                compare.reliability_figure([card]), compare.confusion_figure(card, True)):
        assert fig.to_dict()  # serialisable, as st.plotly_chart needs


def test_an_ensemble_card_is_compared_like_any_model_and_preselected_when_best(weights_dir):
    write_card(full_card("a", 0.5, 1.0), weights_dir)
    write_card(full_card("b", 0.55, 1.5), weights_dir)
    ensemble = full_card("duo", 0.62, 4.0, arch="ensemble", members=[{"name": "a", "arch": "cnn", "sha256": "0"}])
    del ensemble["history"]  # an ensemble is measured, not trained
    write_card(ensemble, weights_dir)
    write_card(full_card("trio", 0.6, 6.0, arch="ensemble", members=[]), weights_dir)
    cards = compare.load_cards()
    frame = compare.table_frame(cards).set_index("model")
    assert frame.loc["duo", ACC] == 0.62 and frame.loc["duo", "CPU ms/face"] == 4.0
    assert [t.name for t in compare.accuracy_latency_figure(cards, build="fp32").data] == ["a", "b", "duo", "trio"]
    assert compare.default_selection(cards, "a") == ["a", "b", "duo"]
    assert compare.default_selection(cards, "gone") == ["b", "duo"]
    assert compare.left_out(cards, "history") == (
        "Left out: duo (ensembles are averaged from trained members, not trained).")


def test_seed_families_fold_into_one_row_with_the_mean_and_the_standard_deviation(weights_dir):
    for name, acc, ms in (("net_s1", 0.60, 1.0), ("net_s2", 0.62, 2.0), ("net_s3", 0.64, 3.0), ("other7", 0.5, 1.0)):
        write_card(full_card(name, acc, ms), weights_dir)
    write_card(full_card("ens1", 0.7, 9.0, arch="ensemble", members=[]), weights_dir)
    write_card(full_card("ens2", 0.71, 9.0, arch="ensemble", members=[]), weights_dir)  # ensembles: never folded
    for name, init in (("tuned2", "tuned"), ("tuned3", "tuned2")):  # fine-tunes of each other: steps, not seeds
        write_card({**full_card(name, 0.65, 1.0), "initialized_from": {"name": init}}, weights_dir)
    set_default("net_s2")
    cards = compare.load_cards()
    assert report.families(cards) == {"net_s*": ["net_s1", "net_s2", "net_s3"]}
    frame = compare.table_frame(cards, default_name()).set_index("model")
    assert list(frame.index) == ["net_s*", "ens1", "ens2", "other7", "tuned2", "tuned3"]
    row = frame.loc["net_s*"]
    assert row[ACC] == pytest.approx(0.62) and row[report.SPREAD] == pytest.approx(0.02)
    assert row["CPU ms/face"] == pytest.approx(2.0) and row["seeds"] == 3 and bool(row["default"])
    unfolded = compare.table_frame(cards, default_name(), fold_families=False)
    assert len(unfolded) == 8 and report.SPREAD not in unfolded.columns


def test_real_photo_metrics_get_a_column_and_their_own_figures(weights_dir):
    share = [0.1, 0.0, 0.3, 0.2, 0.3, 0.05, 0.05]
    a = with_metrics(full_card("a", 0.6), "wild_photos", "val", split(0.4, n=50, share=share, no_face=3))
    b = full_card("b", 0.65)  # never measured on the photos
    for card in (a, b):
        write_card(card, weights_dir)
    cards = compare.load_cards()
    assert report.datasets(cards) == ["fer2013", "wild_photos"]
    frame = compare.table_frame(cards).set_index("model")
    assert frame.loc["a", "wild_photos val acc"] == 0.4 and np.isnan(frame.loc["b", "wild_photos val acc"])
    assert frame.loc["a", ACC] == 0.6
    assert "| wild_photos val acc |" in report.results_markdown(cards).splitlines()[0]
    assert report.results_markdown(cards).splitlines()[2].startswith(
        "| b | cnn | 0.00M | 65.00% | 66.00% | 0.325 | - |")

    assert compare.dataset_rows(cards, "wild_photos") == [
        {"model": "a", "val acc": 0.4, "val acc (TTA)": None, "val macro-F1": 0.2, "faces": 50, "no face": 3}]
    assert "no face" not in compare.dataset_rows(cards, "fer2013")[0]  # pre-cropped faces: nothing to count
    assert compare.left_out(cards, "dataset", "wild_photos") == (
        "Left out: b (not measured on wild_photos: `python -m fer_core evaluate --model NAME --data PATH "
        "--write-card` adds it).")
    assert compare.left_out(cards, "dataset", "fer2013") is None
    recall = compare.recall_figure(cards, "wild_photos")
    (t,) = recall.data
    assert t.name == "a" and list(t.y) == [val(a, "wild_photos")["per_class"][e]["recall"] for e in EMOTIONS]
    shares = compare.predicted_share_figure(cards, "wild_photos")
    assert [t.name for t in shares.data] == ["a", "true share"]
    assert list(shares.data[0].y) == share  # the card's own predicted_share
    cm = np.asarray(val(a, "wild_photos")["confusion_matrix"])
    assert list(shares.data[1].y) == pytest.approx(list(cm.sum(1) / cm.sum()))
    heat = compare.confusion_figure(a, dataset="wild_photos").data[0]
    assert np.array_equal(heat.z, cm)
    empty = compare.confusion_figure(b, dataset="wild_photos")
    assert "no confusion matrix on wild_photos" in empty.layout.annotations[0].text


def test_robustness_figures_come_from_the_cards_that_have_them(weights_dir):
    robust = {"dataset": "fer2013", "split": "val", "fingerprint": "fp-fer2013", "clean": 0.6,
              "corruptions": {"blur": [0.58, 0.55, 0.5], "jpeg": [0.59, 0.57, 0.52]}, "mean": 0.5517,
              "command": "python -m fer_core robustness --model NAME"}
    write_card(full_card("tough", 0.6, robustness=robust), weights_dir)
    write_card(full_card("plain", 0.5), weights_dir)
    cards = compare.load_cards()
    assert compare.robustness_rows(cards) == [
        {"model": "tough", "clean": 0.6, "mean": 0.5517, "blur": pytest.approx(0.5433, abs=1e-4),
         "jpeg": pytest.approx(0.56)}]
    (bars,) = compare.robustness_figure(cards).data
    assert bars.name == "tough" and bars.x == ("clean", "mean", "blur", "jpeg")
    assert list(bars.y) == pytest.approx([0.6, 0.5517, 0.5433, 0.56], abs=1e-4)
    assert bars.customdata[2] == "severities: 58.0% / 55.0% / 50.0%"
    frame = compare.table_frame(cards).set_index("model")
    assert frame.loc["tough", report.ROBUST] == 0.5517 and np.isnan(frame.loc["plain", report.ROBUST])
    assert report.ROBUST not in compare.table_frame(compare.select(cards, ["plain"])).columns  # none has it: no column
    assert compare.left_out(cards, "robustness") == (
        "Left out: plain (not measured: `python -m fer_core robustness --model NAME` adds them).")
    assert compare.left_out(compare.select(cards, ["tough"]), "robustness") is None
    with pytest.raises(ValueError, match="unknown section 'speed'"):
        compare.left_out(cards, "speed")


def test_unreadable_or_invalid_card_files_are_skipped(weights_dir):
    write_card(full_card("good", 0.5), weights_dir)
    (weights_dir / "broken.json").write_text("{not json")
    (weights_dir / "nameless.json").write_text(json.dumps({"arch": "cnn"}))
    (weights_dir / "flat.json").write_text(json.dumps({**v2_card("flat"), "metrics": {"val": {"accuracy": 0.5}}}))
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


def test_legend_rows_line_entries_up_in_columns_of_the_widest():
    # entry: 45 px + 7 px a character; 10 characters = 115 px, so a 480-px chart holds 4 a row
    assert compare.legend_rows(["a" * 10] * 9, 480) == 3
    assert compare.legend_rows(["a" * 10, "b"], 480) == 1
    assert compare.legend_rows([], 480) == 0
    assert compare.legend_rows(["a" * 100], 100) == 1  # too wide for the chart: still one a row


def test_a_long_legend_makes_the_chart_taller_and_keeps_the_plot_area(weights_dir):
    few = [full_card(f"m{i}") for i in range(2)]
    many = [full_card(f"model_{i:02d}") for i in range(23)]
    short, tall = compare.per_class_f1_figure(few), compare.per_class_f1_figure(many)
    for fig, n in ((short, 2), (tall, 23)):
        rows = compare.legend_rows([f"model_{i:02d}" if n == 23 else f"m{i}" for i in range(n)], compare.SCATTER_WIDTH)
        m = fig.layout.margin
        assert fig.layout.height - m.t - m.b == 320  # the plot area keeps its height
        assert m.b == 70 + 22 * rows + 10 and fig.layout.legend.y == -70 / 320
    assert tall.layout.height - short.layout.height == 22 * (compare.legend_rows(["model_00"] * 23, 940) - 1)
    # beyond 10 models a 24-colour palette: every model its own colour
    assert len({t.marker.color for t in tall.data}) == 23


def test_predicted_share_figure_counts_the_true_share_in_its_legend_once(weights_dir):
    fig = compare.predicted_share_figure([full_card("a"), full_card("b")])
    assert [t.name for t in fig.data] == ["a", "b", "true share"]
    assert fig.layout.margin.t == 80  # a title: 30 px above the usual 50, added once
