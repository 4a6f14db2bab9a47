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

from . import report
from .card_schema import PRIMARY, split_metrics
from .cards import default_name, read_cards, val_accuracy
from .emotions import EMOTIONS

PALETTE = qualitative.Plotly
CURVES = (("loss", "train_loss", "val_loss"), ("accuracy", "train_acc", "val_acc"))
PERCENT = (report.ACC, report.TTA, report.ROBUST, report.SPREAD)
BOTTOM_LEGEND = {"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0}


def model_name(card) -> str:
    return card["name"]


def not_shipped(cards) -> list:
    """(name, why) of the cards whose weights are not in the repository: compared here, not loadable."""
    return [(c["name"], str(c["not_shipped"])) for c in cards if c.get("not_shipped")]


def load_cards(directory=None) -> list:
    """Every valid card (fer_core.cards.read_cards), the default model first, then by name."""
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
    model the same colour."""
    return {c["name"]: PALETTE[i % len(PALETTE)] for i, c in enumerate(cards)}


def _empty_note(fig, text):
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


# ---------------------------------------------------------------------------- accuracy vs latency

def _latency(card):
    return ((card.get("cpu_ms_per_face") or {}).get("batch1") or {}).get("median")


def label_positions(points, clearance=0.12) -> list:
    """A text position per (x, y) point so that labels of neighbouring points do not overlap: points are
    taken left to right, and each label goes above its point, else below, right or left: the first side at
    least `clearance` (in axis-normalised units) from every label placed so far, else the clearest side."""
    if not points:
        return []
    xs, ys = np.asarray(points, dtype=float).T
    xspan, yspan = np.ptp(xs) or 1.0, np.ptp(ys) or 1.0
    offsets = {"top center": (0, 0.05), "bottom center": (0, -0.05), "middle right": (0.08, 0),
               "middle left": (-0.08, 0)}
    placed, positions = [], [None] * len(points)
    for i in np.argsort(xs, kind="stable"):
        x, y = (xs[i] - xs.min()) / xspan, (ys[i] - ys.min()) / yspan
        room = {p: min([np.hypot(x + dx - a, y + dy - b) for a, b in placed] + [np.inf])
                for p, (dx, dy) in offsets.items()}
        best = next((p for p in offsets if room[p] >= clearance), max(offsets, key=room.get))
        positions[i] = best
        placed.append((x + offsets[best][0], y + offsets[best][1]))
    return positions


def accuracy_latency_figure(cards, selected=None) -> go.Figure:
    """FER2013 val accuracy against CPU ms/face (batch 1), one point per model that has both. The selected
    models (all when `selected` is None) are coloured and labelled, placed so labels do not overlap; the
    others are small grey points, named on hover only."""
    selected = {c["name"] for c in cards} if selected is None else set(selected)
    palette = colors([c for c in cards if c["name"] in selected])  # as in the figures drawn for `select(cards, ...)`
    points = [(c["name"], _latency(c), val_accuracy(c)) for c in cards
              if _latency(c) is not None and split_metrics(c) is not None]
    fig = go.Figure()
    shown = [p for p in points if p[0] in selected]
    for (name, x, y), pos in zip(shown, label_positions([(np.log10(x), y) for _, x, y in shown])):  # log x axis
        fig.add_trace(go.Scatter(x=[x], y=[y], name=name, mode="markers+text", text=[name], textposition=pos,
                                 marker={"size": 13, "color": palette[name]}, cliponaxis=False,
                                 hovertemplate="%{text}<br>%{x:.2f} ms/face<br>%{y:.2%}<extra></extra>"))
    for name, x, y in points:
        if name not in selected:
            fig.add_trace(go.Scatter(x=[x], y=[y], name=name, mode="markers", text=[name], showlegend=False,
                                     marker={"size": 8, "color": "lightgrey"},
                                     hovertemplate="%{text}<br>%{x:.2f} ms/face<br>%{y:.2%}<extra></extra>"))
    fig.update_layout(xaxis_title="CPU ms per face (batch 1, median; log scale)", xaxis_type="log",
                      yaxis_title=f"{PRIMARY} val accuracy", yaxis_tickformat=".0%", showlegend=False,
                      margin={"l": 60, "r": 90, "t": 30, "b": 50})
    return fig if fig.data else _empty_note(fig, "no card has both val accuracy and CPU latency")


# -------------------------------------------------------------------------------- per-class figures

def per_class(card, key, dataset=PRIMARY, split="val") -> list:
    """per_class[emotion][key] (f1, recall, precision) in EMOTIONS order, None where the card has none."""
    pc = (split_metrics(card, dataset, split) or {}).get("per_class") or {}
    return [(pc.get(e) or {}).get(key) for e in EMOTIONS]


def per_class_f1(card, dataset=PRIMARY) -> list:
    return per_class(card, "f1", dataset)


def _per_class_bars(cards, values, title, empty, y_title):
    fig = go.Figure()
    palette = colors(cards)
    for card in cards:
        ys = values(card)
        if ys is not None and any(v is not None for v in ys):
            fig.add_trace(go.Bar(x=list(EMOTIONS), y=ys, name=card["name"], marker_color=palette[card["name"]]))
    fig.update_layout(barmode="group", yaxis_title=y_title, yaxis_range=[0, 1], xaxis_title="class", title=title,
                      legend=BOTTOM_LEGEND, margin={"b": 110})
    return fig if fig.data else _empty_note(fig, empty)


def per_class_f1_figure(cards, dataset=PRIMARY) -> go.Figure:
    """Grouped bars: val F1 per emotion on `dataset`, one bar group per (selected) model that has it."""
    return _per_class_bars(cards, lambda c: per_class(c, "f1", dataset), None, "no card has per-class F1",
                           f"{dataset} val F1")


def recall_figure(cards, dataset=PRIMARY) -> go.Figure:
    """Grouped bars: recall per true emotion on `dataset` (the share of its faces called right)."""
    return _per_class_bars(cards, lambda c: per_class(c, "recall", dataset), f"Recall per class on {dataset} val",
                           f"no selected card has per-class recall on {dataset}", "recall")


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


def predicted_share_figure(cards, dataset=PRIMARY) -> go.Figure:
    """Grouped bars: the share of faces each (selected) model calls each emotion on `dataset`, beside the
    true share of each emotion there (grey): a model that over-calls an emotion stands out."""
    fig = _per_class_bars(cards, lambda c: predicted_share(c, dataset), f"Faces called each emotion on {dataset} val",
                          f"no selected card has predictions on {dataset}", "share of faces")
    truth = true_share(cards, dataset)
    if fig.data and truth is not None:
        fig.add_trace(go.Bar(x=list(EMOTIONS), y=truth, name="true share", marker_color="lightgrey"))
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
    """Per model measured on `dataset`: accuracy (plain and flip TTA), macro-F1, faces, photos with no face."""
    rows = []
    for c in cards:
        m = split_metrics(c, dataset)
        if m is None:
            continue
        tta = split_metrics(c, dataset, "val_tta") or {}
        rows.append({"model": c["name"], "val acc": m["accuracy"], "val acc (TTA)": tta.get("accuracy"),
                     "val macro-F1": m.get("macro_f1"), "faces": m.get("n"), "no face": m.get("no_face")})
    return rows


# ---------------------------------------------------------------------------------- training curves

def history(card) -> dict:
    """{metric key: ([epoch...], [value...])} from the card's history (entries lacking a key are skipped)."""
    out = {}
    for i, entry in enumerate(card.get("history") or [], 1):
        for _, train_key, val_key in CURVES:
            for key in (train_key, val_key):
                if entry.get(key) is not None:
                    xs, ys = out.setdefault(key, ([], []))
                    xs.append(int(entry.get("epoch", i)))
                    ys.append(entry[key])
    return out


def training_curves_figure(cards) -> go.Figure:
    """Loss and accuracy per epoch, train (dashed) and val (solid), one colour per model; one legend entry
    per model (clicking it hides all four of its lines), below the plots."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[title for title, _, _ in CURVES])
    palette = colors(cards)
    for card in cards:
        name, curves = card["name"], history(card)
        first = True
        for col, (_, train_key, val_key) in enumerate(CURVES, 1):
            for key, dash in ((train_key, "dash"), (val_key, "solid")):
                if key in curves:
                    xs, ys = curves[key]
                    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name,
                                             showlegend=first, hovertemplate=f"{name} {key}<br>epoch %{{x}}: %{{y:.3f}}"
                                             "<extra></extra>", line={"color": palette[name], "dash": dash}),
                                  row=1, col=col)
                    first = False
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(legend=BOTTOM_LEGEND, margin={"b": 120})
    return fig if fig.data else _empty_note(fig, "no selected card has a training history")


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
    a dotted line per model whose card has reliability bins after temperature scaling."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                               line={"color": "grey", "dash": "dot"}))
    palette = colors(cards)
    for card in cards:
        name = card["name"]
        bins = reliability_bins(card)
        if bins:
            fig.add_trace(_reliability_trace(bins, name, palette[name], "solid"))
        scaled = reliability_bins(card, "calibration", "reliability_after")
        if scaled:
            t = calibration(card)["temperature"]
            label = f"{name} (T={t:g})" if t is not None else f"{name} (temperature-scaled)"
            fig.add_trace(_reliability_trace(scaled, label, palette[name], "dot"))
    fig.update_layout(xaxis_title="confidence (top-class probability)", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], legend=BOTTOM_LEGEND, margin={"b": 120})
    return fig if len(fig.data) > 1 else _empty_note(fig, "no card has reliability bins")


# -------------------------------------------------------------------------------------- robustness

def robustness_rows(cards) -> list:
    """Per card with a `robustness` entry (fer_core/robustness.py): model, clean accuracy, the mean over the
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
                      xaxis_title="corruption (mean over its severities)", legend=BOTTOM_LEGEND, margin={"b": 120})
    return fig if fig.data else _empty_note(fig, "no selected card has robustness figures")
