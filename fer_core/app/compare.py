"""The model-comparison dashboard's numbers and figures, built only from model cards (weights/*.json).

Cards come through `cards.read_cards`, so they follow the schema (card_schema.py, version 2): every
card has `metrics[dataset][split]` with an accuracy, and `datasets`. What the schema leaves optional
(a split's per-class figures and confusion matrix, `predicted_share`, history, latency, calibration,
`robustness`) may be missing: a figure then leaves that model out, or says that no card has it.

The summary table is report.results_rows (the README's and `python -m fer_core models`' table), with
seed families folded into one row (report.family_rows). Figures are drawn for the models picked on the
page; `default_selection` picks the default model, the best single model and the best ensemble.
"""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..data.emotions import EMOTIONS
from ..models.card_schema import PRIMARY, split_metrics
from ..models.cards import default_name, read_cards, val_accuracy
from . import report

PALETTE = qualitative.Plotly
CURVES = (("loss", "loss"), ("accuracy", "acc"))  # (panel title, history key suffix): train_acc, val_acc, ...
CURVE_DASH = {"train": "dash", "val": "solid"}  # another val set (a real-photo one, `{name}_val_acc`): dotted
MIN_BIN_FACES = 10  # a calibration bin with fewer faces is not drawn: its accuracy says little
FEW_EPOCHS = 12  # curves of at most this many epochs (a short fine-tune) also mark each epoch, with these:
CURVE_MARKER = {"dash": "circle-open", "solid": "circle", "dot": "diamond"}  # tell them apart when packed tight
PERCENT = (report.ACC, report.TTA, report.ROBUST, report.SPREAD)
BOTTOM_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0}


def model_name(card) -> str:
    return card["name"]


def not_shipped(cards) -> list:
    """(name, why) of the cards whose weights are not in the repository: compared here, not loadable."""
    return [(c["name"], str(c["not_shipped"])) for c in cards if c.get("not_shipped")]


def load_cards(directory=None) -> list:
    """Every valid card (fer_core.models.cards.read_cards), the default model first, then by name."""
    default = default_name(directory)
    return sorted(read_cards(directory), key=lambda c: (c["name"] != default, c["name"]))


def is_ensemble(card) -> bool:
    return card["arch"] == "ensemble"


def default_selection(cards, default=None) -> list:
    """Names preselected on the page: the default model, the best single model and the best ensemble by
    FER2013 val accuracy (fewer when they coincide or are missing), in that order."""
    picked = [default] if default in {c["name"] for c in cards} else []
    for group in ([c for c in cards if not is_ensemble(c)], [c for c in cards if is_ensemble(c)]):
        scored = [c for c in group if val_accuracy(c) > 0]
        if scored:
            picked.append(max(scored, key=val_accuracy)["name"])
    return list(dict.fromkeys(picked))


def select(cards, names) -> list:
    """The cards called `names`, in `cards`' order."""
    wanted = set(names)
    return [c for c in cards if c["name"] in wanted]


def left_out(cards, section, dataset=PRIMARY):
    """The note under a section that names the picked models it leaves out for want of figures in their
    cards, and what would add them; None when it leaves none out. `section`: "dataset" (no metrics on
    `dataset`), "robustness" or "history" (training curves)."""
    if section == "dataset":
        lacking = [c for c in cards if split_metrics(c, dataset) is None]
        why = f"not measured on {dataset}: `python -m fer_core evaluate --model NAME --data PATH --write-card` adds it"
    elif section == "robustness":
        lacking = [c for c in cards if not c.get("robustness")]
        why = "not measured: `python -m fer_core robustness --model NAME` adds them"
    elif section == "history":
        lacking = [c for c in cards if not history(c)]
        why = ("ensembles are averaged from trained members, not trained" if all(map(is_ensemble, lacking))
               else "their cards hold no training history")
    else:
        raise ValueError(f"unknown section {section!r}: dataset, robustness or history")
    return _left_out_note(lacking, why)


def speed_left_out(cards, dataset=PRIMARY, build="int8"):
    """The note under the accuracy-vs-latency scatter naming the models it cannot place (speed_point), and
    what would add them; None when it places them all. Models whose weights are not shipped are named apart:
    no command here can measure them."""
    lacking = [c for c in cards if speed_point(c, dataset, build) is None]
    unshipped = [c for c in lacking if c.get("not_shipped")]
    if build == "int8":
        why = (f"no int8 build with {dataset} val accuracy and latency: `python -m fer_core quantize --model NAME` "
               "and `python -m fer_core benchmark --model NAME --write-card` add them")
    else:
        why = (f"no fp32 {dataset} val accuracy or latency: `python -m fer_core evaluate --write-card` and "
               "`python -m fer_core benchmark --backend torch --write-card` add them")
    notes = (_left_out_note([c for c in lacking if c not in unshipped], why),
             _left_out_note(unshipped, f"weights not shipped, and no {build} figures on {dataset} in the card"))
    return " ".join(n for n in notes if n) or None


def _left_out_note(lacking, why):
    return f"Left out: {', '.join(c['name'] for c in lacking)} ({why})." if lacking else None


# ------------------------------------------------------------------------------------- summary table

def table_frame(cards, default=None, fold_families=True) -> pd.DataFrame:
    """report.results_rows as a DataFrame (numbers as floats, NaN where missing), seed families folded
    into one row unless `fold_families` is False."""
    rows = report.results_rows(cards, default)
    if fold_families:
        rows = report.family_rows(rows, cards)
    cols = report.columns(cards) + ([report.SPREAD] if fold_families else [])
    frame = pd.DataFrame(rows, columns=cols)
    numeric = [c for c in cols if c not in ("model", "arch", "default", "shipped")]
    frame[numeric] = frame[numeric].astype("float64")
    frame[["default", "shipped"]] = frame[["default", "shipped"]].astype(bool)
    return frame


def colors(cards) -> dict:
    """{model name: colour} by position in `cards`: every figure drawn for the same (selected) cards gives a
    model the same colour; beyond PALETTE's 10 colours, a 24-colour palette, so that no two models share one."""
    palette = PALETTE if len(cards) <= len(PALETTE) else qualitative.Dark24
    return {c["name"]: palette[i % len(palette)] for i, c in enumerate(cards)}


HALF_WIDTH = 460  # a chart in one of two page columns at a 1400-px window (SCATTER_WIDTH: the whole column)


def legend_rows(labels, width) -> int:
    """Rows a horizontal legend of `labels` takes in a chart `width` px wide (an entry: its swatch, about 45
    px, and its text at up to 7 px a character; plotly lines entries up in columns of the widest)."""
    if not labels:
        return 0
    entry = 45 + 7 * max(len(str(t)) for t in labels)
    return -(-len(labels) // max(1, int((width - 20) // entry)))


def bottom_legend(fig, width, plot_height=320, below=70):
    """Puts `fig`'s legend under its plot, `below` px under the plot area (room for tick labels and the x
    axis title), and makes the figure tall enough for the plot area to keep `plot_height` px however many
    rows the legend takes: it never covers the axis or runs off the chart."""
    labels = [t.name for t in fig.data if t.showlegend is not False and t.name]
    rows = legend_rows(labels, width)
    top = 50 + (30 if fig.layout.title.text else 0)
    bottom = below + 22 * rows + 10
    fig.update_layout(height=top + plot_height + bottom, margin={"t": top, "b": bottom},
                      legend={**BOTTOM_LEGEND, "y": -below / plot_height})
    return fig


def _empty_note(fig, text):
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


# ---------------------------------------------------------------------------- accuracy vs latency

# The scatter's two builds of a model: the int8 file the app runs (the card's `int8` block, with its own
# accuracy and latency) and the fp32 PyTorch weights (the card itself).
BUILDS = {"int8": "int8, as the app runs it", "fp32": "fp32 PyTorch"}


def _build(card, build):
    if build not in BUILDS:
        raise ValueError(f"unknown build {build!r}: {' or '.join(BUILDS)}")
    return (card.get("int8") or {}) if build == "int8" else card


def speed_point(card, dataset=PRIMARY, build="int8"):
    """(CPU ms per face at batch 1, median; val accuracy on `dataset`) of the card's `build`, or None when
    the card lacks either."""
    figures = _build(card, build)
    ms = ((figures.get("cpu_ms_per_face") or {}).get("batch1") or {}).get("median")
    acc = (split_metrics(figures, dataset) or {}).get("accuracy")
    return None if ms is None or acc is None else (ms, acc)


def default_dataset(cards) -> str:
    """The dataset the scatter and the per-dataset section open on: the first real-photo set the cards were
    measured on (the faces people bring), else FER2013."""
    return next(iter(report.datasets(cards)[1:]), PRIMARY)


# The scatter's geometry in pixels, for placing its labels: the chart fills the page's main column (about
# 940 px at a 1400-px window with the sidebar open), less these margins; label text is 12 px, whose
# characters are at most about 7 px wide in the sans-serif fonts a browser falls back to.
SCATTER_WIDTH, SCATTER_MARGIN = 940, {"l": 70, "r": 30, "t": 20, "b": 60}
LABEL_FONT, CHAR_PX, LINE_PX, MARKER_PX = 12, 7.0, 18.0, 13


def label_size(text) -> tuple:
    """(width, height) in px that a label of `text` takes at most, with a little room around it."""
    return len(text) * CHAR_PX + 6, LINE_PX


def _boxes_meet(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates(w, h, r, rings=8, step=14):
    """Label-centre offsets (dx, dy; y down) around a marker of radius `r`, nearest first: the eight places
    touching it (ring 0), then rings `step` px farther out, 16 directions each."""
    yield from ((0, -(r + h / 2)), (r + w / 2, 0), (0, r + h / 2), (-(r + w / 2), 0),
                (r + w / 2, -(r + h / 2)), (-(r + w / 2), -(r + h / 2)), (r + w / 2, r + h / 2),
                (-(r + w / 2), r + h / 2))
    for ring in range(1, rings + 1):
        d = r + ring * step
        for k in range(16):
            a = -np.pi / 2 + k * np.pi / 8  # from straight up, clockwise
            yield float(np.cos(a) * (d + w / 2)), float(np.sin(a) * (d + h / 2))


def place_labels(points, texts, area, others=(), marker=MARKER_PX, gap=3) -> list:
    """A label-centre offset (dx, dy) in px per point, or None where no place is free: no two labels'
    boxes meet, no label covers a marker (of `points` or of `others`, all (x, y) in px, y down) and every
    label lies inside `area` (x0, y0, x1, y1). The most crowded points choose first; each takes the first
    free place of `_candidates` (touching its marker if it can, else farther out, for a leader line)."""
    r = marker / 2 + gap
    markers = [(x - marker / 2, y - marker / 2, x + marker / 2, y + marker / 2) for x, y in list(points) + list(others)]
    crowd = [sum(np.hypot(x - a, y - b) < 120 for a, b in points) for x, y in points]
    order = sorted(range(len(points)), key=lambda i: (-crowd[i], points[i][0], points[i][1]))
    placed, offsets = [], [None] * len(points)
    for i in order:
        (x, y), (w, h) = points[i], label_size(texts[i])
        for dx, dy in _candidates(w, h, r):
            box = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
            inside = area[0] <= box[0] and area[1] <= box[1] and box[2] <= area[2] and box[3] <= area[3]
            if inside and not any(_boxes_meet(box, b) for b in placed + markers):
                placed.append(box)
                offsets[i] = (round(dx, 1), round(dy, 1))
                break
    return offsets


def _padded(lo, hi, share=0.08, least=0.02):
    pad = max((hi - lo) * share, least)
    return [lo - pad, hi + pad]


def log_ticks(lo, hi) -> list:
    """Tick values from 10**lo to 10**hi for a log axis: 1-2-5 (…, 0.1, 0.2, 0.5, 1, 2, …), or every digit when a
    narrow range holds fewer than two of those; [] (plotly's own ticks) when it holds fewer than two digits. Plotly
    labels its minor log ticks by their first digit only, so 0.2 ms read "2" beside "1" for 1 ms."""
    decades = range(int(np.floor(lo)), int(np.ceil(hi)) + 1)
    for mantissas in ((1, 2, 5), range(1, 10)):
        values = [round(m * 10.0 ** d, 10) for d in decades for m in mantissas]
        inside = [v for v in values if lo <= np.log10(v) <= hi]
        if len(inside) >= 2:
            return inside
    return []


def accuracy_latency_figure(cards, selected=None, dataset=PRIMARY, build="int8", width=SCATTER_WIDTH) -> go.Figure:
    """Val accuracy on `dataset` against CPU ms/face (batch 1) of each model's `build` (BUILDS), one point per
    model that has both (speed_point). The selected models (all when `selected` is None) are coloured and named
    by a label placed (place_labels, for a chart `width` px wide) where it meets no other label or point, with a
    leader line when it sits away from its point; the others are small grey points, named on hover only."""
    selected = {c["name"] for c in cards} if selected is None else set(selected)
    palette = colors([c for c in cards if c["name"] in selected])  # as in the figures drawn for `select(cards, ...)`
    points = [(c["name"], *p) for c in cards if (p := speed_point(c, dataset, build))]
    fig = go.Figure()
    if not points:
        return _empty_note(fig, f"no card has both {dataset} val accuracy and CPU latency for its {build} build")
    shown = [p for p in points if p[0] in selected]
    for name, x, y in sorted(points, key=lambda p: p[0] in selected):  # the coloured points on top
        pick = name in selected
        fig.add_trace(go.Scatter(x=[x], y=[y], name=name, mode="markers", text=[name], showlegend=False,
                                 marker={"size": MARKER_PX if pick else 8,
                                         "color": palette[name] if pick else "lightgrey"},
                                 hovertemplate=f"%{{text}} ({build})<br>%{{x:.2f}} ms/face<br>%{{y:.2%}}"
                                               "<extra></extra>"))
    logs, accs = [np.log10(x) for _, x, _ in points], [y for _, _, y in points]
    xrange, yrange = _padded(min(logs), max(logs)), _padded(min(accs), max(accs), least=0.01)
    height = 450 if len(shown) <= 8 else 600
    m = SCATTER_MARGIN
    area = (0, 0, width - m["l"] - m["r"], height - m["t"] - m["b"])

    def px(x, y):  # data to px inside the plot area, y down
        return ((np.log10(x) - xrange[0]) / (xrange[1] - xrange[0]) * area[2],
                (yrange[1] - y) / (yrange[1] - yrange[0]) * area[3])

    others = [px(x, y) for name, x, y in points if name not in selected]
    offsets = place_labels([px(x, y) for _, x, y in shown], [n for n, _, _ in shown], area, others)
    for (name, x, y), off in zip(shown, offsets):
        dx, dy = off if off is not None else (0, -(MARKER_PX / 2 + 3 + LINE_PX / 2))  # crowded out: above it
        touching = abs(dx) <= label_size(name)[0] / 2 + MARKER_PX and abs(dy) <= LINE_PX / 2 + MARKER_PX
        common = {"x": np.log10(x), "y": y, "text": name, "xanchor": "center", "yanchor": "middle",
                  "font": {"size": LABEL_FONT}}
        if touching:
            fig.add_annotation(**common, showarrow=False, xshift=dx, yshift=-dy)
        else:
            fig.add_annotation(**common, showarrow=True, ax=dx, ay=dy, arrowhead=0, arrowwidth=1,
                               arrowcolor=palette[name], standoff=MARKER_PX / 2)
    ticks = log_ticks(*xrange)
    fig.update_layout(xaxis_title=f"CPU ms per face, {BUILDS[build]} (batch 1, median; log scale)",
                      xaxis_type="log", xaxis_range=xrange, yaxis_range=yrange,
                      xaxis_tickvals=ticks or None, xaxis_ticktext=[f"{v:g}" for v in ticks] or None,
                      yaxis_title=f"{dataset} val accuracy ({build})",
                      yaxis_tickformat=".0%", showlegend=False, height=height, margin=m)
    return fig


# -------------------------------------------------------------------------------- per-class figures

def per_class(card, key, dataset=PRIMARY, split="val") -> list:
    """per_class[emotion][key] (f1, recall, precision) in EMOTIONS order, None where the card has none."""
    pc = (split_metrics(card, dataset, split) or {}).get("per_class") or {}
    return [(pc.get(e) or {}).get(key) for e in EMOTIONS]


def per_class_f1(card, dataset=PRIMARY) -> list:
    return per_class(card, "f1", dataset)


def _per_class_bars(cards, values, title, empty, y_title, width=None):
    fig = go.Figure()
    palette = colors(cards)
    for card in cards:
        ys = values(card)
        if ys is not None and any(v is not None for v in ys):
            fig.add_trace(go.Bar(x=list(EMOTIONS), y=ys, name=card["name"], marker_color=palette[card["name"]]))
    fig.update_layout(barmode="group", yaxis_title=y_title, yaxis_range=[0, 1], xaxis_title="class", title=title)
    return bottom_legend(fig, width or SCATTER_WIDTH) if fig.data else _empty_note(fig, empty)


def per_class_f1_figure(cards, dataset=PRIMARY) -> go.Figure:
    """Grouped bars: val F1 per emotion on `dataset`, one bar group per (selected) model that has it."""
    return _per_class_bars(cards, lambda c: per_class(c, "f1", dataset), None, "no card has per-class F1",
                           f"{dataset} val F1")


def recall_figure(cards, dataset=PRIMARY, width=HALF_WIDTH) -> go.Figure:
    """Grouped bars: recall per true emotion on `dataset` (the share of its faces called right)."""
    return _per_class_bars(cards, lambda c: per_class(c, "recall", dataset), f"Recall per class on {dataset} val",
                           f"no selected card has per-class recall on {dataset}", "recall", width)


def predicted_share(card, dataset=PRIMARY, split="val"):
    """The share of faces the model calls each emotion (EMOTIONS order): the card's `predicted_share`, else
    the column sums of its confusion matrix; None when it has neither."""
    m = split_metrics(card, dataset, split) or {}
    if isinstance(m.get("predicted_share"), dict):
        return [m["predicted_share"].get(e) for e in EMOTIONS]
    cm = confusion_matrix(card, dataset=dataset, split=split)
    return None if cm is None or cm.sum() == 0 else (cm.sum(0) / cm.sum()).round(4).tolist()


def true_share(cards, dataset=PRIMARY, split="val"):
    """The share of each true emotion in `dataset`'s split, from the first card whose confusion matrix or
    per-class support says it; None when none does."""
    for card in cards:
        cm = confusion_matrix(card, dataset=dataset, split=split)
        if cm is not None and cm.sum() > 0:
            return (cm.sum(1) / cm.sum()).round(4).tolist()
        support = per_class(card, "support", dataset, split)
        if all(isinstance(s, (int, float)) for s in support) and sum(support) > 0:
            return [round(s / sum(support), 4) for s in support]
    return None


def predicted_share_figure(cards, dataset=PRIMARY, width=HALF_WIDTH) -> go.Figure:
    """Grouped bars: the share of faces each (selected) model calls each emotion on `dataset`, beside the
    true share of each emotion there (grey): a model that over-calls an emotion stands out."""
    fig = _per_class_bars(cards, lambda c: predicted_share(c, dataset), f"Faces called each emotion on {dataset} val",
                          f"no selected card has predictions on {dataset}", "share of faces", width)
    truth = true_share(cards, dataset)
    if fig.data and truth is not None:
        fig.add_trace(go.Bar(x=list(EMOTIONS), y=truth, name="true share", marker_color="lightgrey"))
        bottom_legend(fig, width)
    if fig.data:
        top = max(max(v for v in t.y if v is not None) for t in fig.data)
        fig.update_layout(yaxis_range=[0, min(1.0, top * 1.15)], yaxis_tickformat=".0%")
    return fig


def confusion_matrix(card, normalize=False, dataset=PRIMARY, split="val"):
    """The card's confusion matrix on `dataset`'s split (rows = true) as a float array, or None if absent.

    With `normalize` each row is divided by its sum (rows with no samples stay 0)."""
    raw = (split_metrics(card, dataset, split) or {}).get("confusion_matrix")
    if raw is None:
        return None
    cm = np.asarray(raw, dtype=float)
    if cm.shape != (len(EMOTIONS), len(EMOTIONS)):
        return None
    if normalize:
        sums = cm.sum(1, keepdims=True)
        cm = np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)
    return cm


def confusion_figure(card, normalize=False, dataset=PRIMARY) -> go.Figure:
    """Heatmap of one card's confusion matrix on `dataset`, counts or row-normalised, each cell labelled."""
    cm = confusion_matrix(card, normalize, dataset)
    fig = go.Figure()
    if cm is None:
        return _empty_note(fig, f"{card['name']}: no confusion matrix on {dataset} in its card")
    text = [[f"{v:.0%}" if normalize else f"{v:.0f}" for v in row] for row in cm]
    fig.add_trace(go.Heatmap(z=cm.tolist(), x=list(EMOTIONS), y=list(EMOTIONS), text=text, texttemplate="%{text}",
                             colorscale="Blues", zmin=0, zmax=1 if normalize else None,
                             hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(title=card["name"], xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed")
    return fig


def dataset_rows(cards, dataset) -> list:
    """Per model measured on `dataset`: accuracy (plain and flip TTA), macro-F1, faces, and photos with no face
    (a column only where some card counts them)."""
    rows = []
    for c in cards:
        m = split_metrics(c, dataset)
        if m is None:
            continue
        tta = split_metrics(c, dataset, "val_tta") or {}
        rows.append({"model": c["name"], "val acc": m["accuracy"], "val acc (TTA)": tta.get("accuracy"),
                     "val macro-F1": m.get("macro_f1"), "faces": m.get("n"), "no face": m.get("no_face")})
    if all(r["no face"] is None for r in rows):  # pre-cropped faces (FER2013): no detector, nothing to count
        for r in rows:
            del r["no face"]
    return rows


# ---------------------------------------------------------------------------------- training curves

def history(card) -> dict:
    """{metric key: ([epoch...], [value...])} from the card's history, for every train_*, val_* and
    {dataset}_val_* loss and accuracy in it (entries lacking a key are skipped)."""
    out = {}
    for i, entry in enumerate(card.get("history") or [], 1):
        for key, value in entry.items():
            if value is not None and key.endswith(("_loss", "_acc")) and key.split("_")[-2] in CURVE_DASH:
                xs, ys = out.setdefault(key, ([], []))
                xs.append(int(entry.get("epoch", i)))
                ys.append(value)
    return out


def curve_keys(curves, suffix) -> list:
    """(history key, line dash) for one panel: train, FER2013 val, then any other val set (dotted)."""
    keys = [f"{split}_{suffix}" for split in CURVE_DASH] + sorted(
        k for k in curves if k.endswith(f"_val_{suffix}") and k != f"val_{suffix}")
    return [(k, CURVE_DASH.get(k.rsplit("_", 1)[0], "dot")) for k in keys if k in curves]


def training_curves_figure(cards) -> go.Figure:
    """Loss and accuracy per epoch, train (dashed), val (solid) and any other val set the model was trained
    beside (dotted: the real photos), one colour per model; one legend entry per model (clicking it hides all
    its lines), below the plots. A short curve (a fine-tune) marks each epoch, by a symbol for each of its lines,
    so it is not lost at the left."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[title for title, _ in CURVES])
    palette = colors(cards)
    for card in cards:
        name, curves = card["name"], history(card)
        first = True
        for col, (_, suffix) in enumerate(CURVES, 1):
            for key, dash in curve_keys(curves, suffix):
                xs, ys = curves[key]
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) <= FEW_EPOCHS else "lines",
                                         name=name, legendgroup=name, showlegend=first,
                                         hovertemplate=f"{name} {key}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>",
                                         line={"color": palette[name], "dash": dash},
                                         marker={"size": 6, "symbol": CURVE_MARKER[dash]}),
                              row=1, col=col)
                first = False
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    if not fig.data:
        return _empty_note(fig, "no selected card has a training history")
    return bottom_legend(fig, SCATTER_WIDTH)


def curves_caption(cards) -> str:
    """What the training curves' lines and symbols mean, naming the other val sets the picked models' histories
    have."""
    others = " and ".join(sorted({k[:-len("_val_acc")] for c in cards for k in history(c)
                                  if k.endswith("_val_acc") and k != "val_acc"}))
    dotted = f", dotted: {others} val (trained beside FER2013)" if others else ""
    text = f"Per epoch. Dashed: train, solid: FER2013 val{dotted}."
    if any(0 < len(c.get("history") or []) <= FEW_EPOCHS for c in cards):
        text += (f" Runs of up to {FEW_EPOCHS} epochs (fine-tunes) mark each one: ○ train, ● FER2013 val"
                 + (f", ◆ {others} val." if others else "."))
    return text


def lineage(card, cards) -> list:
    """The models `card` was fine-tuned from, nearest first (each card's `initialized_from`), as far as
    `cards` know them; a name repeated (a loop) ends it."""
    by_name, chain = {c["name"]: c for c in cards}, []
    parent = (card.get("initialized_from") or {}).get("name")
    while parent and parent not in chain and parent != card["name"]:
        chain.append(parent)
        parent = (by_name.get(parent, {}).get("initialized_from") or {}).get("name")
    return chain


def fine_tune_note(selected, cards):
    """The note under the training curves naming each picked fine-tune, how many epochs it ran and what it
    started from; None when no picked model is one."""
    lines = []
    for card in selected:
        chain = lineage(card, cards)
        if chain and card.get("history"):
            earlier = f" (itself from {' ← '.join(chain[1:])})" if chain[1:] else ""
            lines.append(f"{card['name']}: {len(card['history'])} epochs from {chain[0]}{earlier}")
    if not lines:
        return None
    return ("Fine-tuned from another model's weights, so their epochs count from the start of the fine-tune: "
            + "; ".join(lines) + ".")


# ------------------------------------------------------------------------------------- calibration

def reliability_bins(card, *keys) -> list:
    """[(mean confidence, accuracy, count)] from a card's reliability rows at `keys` (default: FER2013 val's
    `reliability`), empty when the card has none."""
    if keys:
        rows = card
        for key in keys:
            rows = (rows or {}).get(key)
    else:
        rows = (split_metrics(card) or {}).get("reliability")
    return [(float(conf), float(acc), int(count)) for conf, acc, count in rows or []]


def calibration(card) -> dict:
    """{temperature, ece_before, ece_after, nll_before, nll_after}: temperature from the card (top level,
    else calibration), ECE before scaling from calibration.ece_before else FER2013 val's ece; None where
    unknown."""
    cal = card.get("calibration") or {}
    temperature = card.get("temperature", cal.get("temperature"))
    before = cal.get("ece_before", (split_metrics(card) or {}).get("ece"))
    return {"temperature": temperature, "ece_before": before, "ece_after": cal.get("ece_after"),
            "nll_before": cal.get("nll_before"), "nll_after": cal.get("nll_after")}


def calibration_rows(cards) -> list:
    """One row per card: model, temperature, ECE and NLL before and after temperature scaling."""
    return [{"model": c["name"], **calibration(c)} for c in cards]


def _reliability_trace(bins, name, color, dash):
    conf, acc, count = zip(*bins)
    size = 6 + 18 * np.sqrt(np.asarray(count) / max(count))
    return go.Scatter(x=conf, y=acc, customdata=count, mode="lines+markers", name=name,
                      line={"color": color, "dash": dash}, marker={"size": size},
                      hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} faces<extra></extra>")


def reliability_figure(cards) -> go.Figure:
    """Accuracy against confidence per bin (marker size ~ faces in the bin), with the ideal diagonal;
    a dotted line per model whose card has reliability bins after temperature scaling. Bins of fewer than
    MIN_BIN_FACES faces are left out: one face at 20% confidence drew a spike to 100% or 0%."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                               line={"color": "grey", "dash": "dot"}))
    palette = colors(cards)
    for card in cards:
        name = card["name"]
        bins = [b for b in reliability_bins(card) if b[2] >= MIN_BIN_FACES]
        if bins:
            fig.add_trace(_reliability_trace(bins, name, palette[name], "solid"))
        scaled = [b for b in reliability_bins(card, "calibration", "reliability_after") if b[2] >= MIN_BIN_FACES]
        if scaled:
            t = calibration(card)["temperature"]
            label = f"{name} (T={t:g})" if t is not None else f"{name} (temperature-scaled)"
            fig.add_trace(_reliability_trace(scaled, label, palette[name], "dot"))
    fig.update_layout(xaxis_title="confidence (top-class probability)", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1])
    return bottom_legend(fig, SCATTER_WIDTH) if len(fig.data) > 1 else _empty_note(fig, "no card has reliability bins")


# -------------------------------------------------------------------------------------- robustness

def robustness_rows(cards) -> list:
    """Per card with a `robustness` entry (fer_core/models/robustness.py): model, clean accuracy, the mean over the
    corruptions, then each corruption's accuracy averaged over its severities."""
    rows = []
    for c in cards:
        r = c.get("robustness")
        if not r:
            continue
        row = {"model": c["name"], "clean": r.get("clean"), "mean": r.get("mean")}
        row.update({kind: float(np.mean(accs)) for kind, accs in (r.get("corruptions") or {}).items() if accs})
        rows.append(row)
    return rows


def robustness_figure(cards) -> go.Figure:
    """Grouped bars: accuracy per corruption (mean of its severities; hover lists each), with clean and the
    mean over corruptions first, one bar group per model whose card has robustness figures."""
    fig = go.Figure()
    palette = colors(cards)
    for c in cards:
        r = c.get("robustness")
        if not r:
            continue
        corruptions = r.get("corruptions") or {}
        kinds = ["clean", "mean", *corruptions]
        ys = [r.get("clean"), r.get("mean"), *(float(np.mean(a)) if a else None for a in corruptions.values())]
        detail = ["", "", *("severities: " + " / ".join(f"{a:.1%}" for a in accs) for accs in corruptions.values())]
        fig.add_trace(go.Bar(x=kinds, y=ys, name=c["name"], marker_color=palette[c["name"]], customdata=detail,
                             hovertemplate=f"{c['name']}<br>%{{x}}: %{{y:.1%}}<br>%{{customdata}}<extra></extra>"))
    fig.update_layout(barmode="group", yaxis_title=f"{PRIMARY} val accuracy", yaxis_tickformat=".0%",
                      xaxis_title="corruption (mean over its severities)")
    if not fig.data:
        return _empty_note(fig, "no selected card has robustness figures")
    return bottom_legend(fig, SCATTER_WIDTH)
