"""The model-comparison dashboard's numbers and figures, built only from model cards (weights/*.json).

Cards may be partial or malformed (an older card without history, a hand-edited one with a wrong
type): every reader here returns None or leaves the model out of a figure instead of raising.

Card fields read (see fer_core/cards.py): name, default, params, size_bytes, history[{epoch,
train_loss, val_loss, train_acc, val_acc}], cpu_ms_per_face.batch1.median, metrics.val{accuracy,
macro_f1, ece, labels, per_class.<emotion>.f1, confusion_matrix, reliability}, metrics.val_tta.accuracy,
and for temperature scaling (fer_core/calibrate.py) `temperature` (top level, as EmotionRecognizer reads
it) and `calibration` {temperature, ece_before, ece_after, nll_before, nll_after, reliability_after}.
"""
from numbers import Real

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .cards import read_cards
from .emotions import EMOTIONS

COLUMNS = ("model", "default", "val accuracy", "val accuracy (TTA)", "val macro-F1", "params", "size (MB)",
           "CPU ms/face")
PALETTE = qualitative.Plotly
CURVES = (("loss", "train_loss", "val_loss"), ("accuracy", "train_acc", "val_acc"))


def field(card, *keys):
    """card[k1][k2]... or None when any level is missing or not a dict."""
    value = card
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def number(value):
    """`value` as a float when it is a finite real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def model_name(card) -> str:
    """The card's name as text (cards are matched and labelled by it)."""
    return str(card.get("name", "?"))


def not_shipped(cards) -> list:
    """(name, why) of the cards whose weights are not in the repository: compared here, not loadable."""
    return [(model_name(c), str(c["not_shipped"])) for c in cards if c.get("not_shipped")]


def table_rows(cards) -> list:
    """One dict per card with the COLUMNS keys; missing or malformed fields are None."""
    rows = []
    for card in cards:
        size = number(card.get("size_bytes"))
        params = number(card.get("params"))
        rows.append({
            "model": model_name(card),
            "default": bool(card.get("default")),
            "val accuracy": number(field(card, "metrics", "val", "accuracy")),
            "val accuracy (TTA)": number(field(card, "metrics", "val_tta", "accuracy")),
            "val macro-F1": number(field(card, "metrics", "val", "macro_f1")),
            "params": int(params) if params is not None else None,
            "size (MB)": round(size / 1e6, 3) if size is not None else None,
            "CPU ms/face": number(field(card, "cpu_ms_per_face", "batch1", "median")),
        })
    return rows


def table_frame(cards) -> pd.DataFrame:
    """table_rows as a DataFrame in COLUMNS order, numeric columns as floats (NaN where missing)."""
    frame = pd.DataFrame(table_rows(cards), columns=list(COLUMNS))
    numeric = [c for c in COLUMNS if c not in ("model", "default")]
    frame[numeric] = frame[numeric].astype("float64")
    frame["default"] = frame["default"].astype(bool)
    return frame


def colors(cards) -> dict:
    """{model name: colour}, the same in every figure of the dashboard."""
    return {model_name(c): PALETTE[i % len(PALETTE)] for i, c in enumerate(cards)}


def _empty_note(fig, text):
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def accuracy_latency_figure(cards) -> go.Figure:
    """Val accuracy against CPU ms/face (batch 1), one labelled point per model that has both."""
    fig = go.Figure()
    palette = colors(cards)
    for row in table_rows(cards):
        if row["val accuracy"] is None or row["CPU ms/face"] is None:
            continue
        fig.add_trace(go.Scatter(
            x=[row["CPU ms/face"]], y=[row["val accuracy"]], name=row["model"], mode="markers+text",
            text=[row["model"]], textposition="top center", marker={"size": 14, "color": palette[row["model"]]},
            hovertemplate="%{text}<br>%{x:.2f} ms/face<br>%{y:.2%}<extra></extra>"))
    fig.update_layout(xaxis_title="CPU ms per face (batch 1, median)", yaxis_title="val accuracy",
                      yaxis_tickformat=".0%", showlegend=False)
    return fig if fig.data else _empty_note(fig, "no card has both val accuracy and CPU latency")


def per_class_f1(card) -> list:
    """F1 per emotion in EMOTIONS order (None where the card has none)."""
    return [number(field(card, "metrics", "val", "per_class", e, "f1")) for e in EMOTIONS]


def per_class_f1_figure(cards) -> go.Figure:
    """Grouped bars: val F1 per emotion, one bar group per model with any per-class F1."""
    fig = go.Figure()
    palette = colors(cards)
    for card in cards:
        f1 = per_class_f1(card)
        if any(v is not None for v in f1):
            fig.add_trace(go.Bar(x=list(EMOTIONS), y=f1, name=model_name(card),
                                 marker_color=palette[model_name(card)]))
    fig.update_layout(barmode="group", yaxis_title="val F1", yaxis_range=[0, 1], xaxis_title="true class")
    return fig if fig.data else _empty_note(fig, "no card has per-class F1")


def confusion_matrix(card, normalize=False):
    """The card's val confusion matrix (rows = true) as a float array, or None if absent or not k x k.

    With `normalize` each row is divided by its sum (rows with no samples stay 0)."""
    raw = field(card, "metrics", "val", "confusion_matrix")
    try:
        cm = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        return None
    if cm.shape != (len(EMOTIONS), len(EMOTIONS)) or not np.isfinite(cm).all():
        return None
    if normalize:
        sums = cm.sum(1, keepdims=True)
        cm = np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)
    return cm


def confusion_figure(card, normalize=False) -> go.Figure:
    """Heatmap of one card's confusion matrix, counts or row-normalised, each cell labelled."""
    cm = confusion_matrix(card, normalize)
    fig = go.Figure()
    if cm is None:
        return _empty_note(fig, f"{model_name(card)}: no confusion matrix in its card")
    text = [[f"{v:.0%}" if normalize else f"{v:.0f}" for v in row] for row in cm]
    fig.add_trace(go.Heatmap(z=cm.tolist(), x=list(EMOTIONS), y=list(EMOTIONS), text=text, texttemplate="%{text}",
                             colorscale="Blues", zmin=0, zmax=1 if normalize else None,
                             hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(title=model_name(card), xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed")
    return fig


def history(card) -> dict:
    """{metric key: ([epoch...], [value...])} from the card's history, skipping malformed entries."""
    entries = card.get("history")
    out = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else [], 1):
        if not isinstance(entry, dict):
            continue
        epoch = number(entry.get("epoch"))
        epoch = i if epoch is None else epoch
        for _, train_key, val_key in CURVES:
            for key in (train_key, val_key):
                value = number(entry.get(key))
                if value is not None:
                    xs, ys = out.setdefault(key, ([], []))
                    xs.append(int(epoch))
                    ys.append(value)
    return out


def training_curves_figure(cards) -> go.Figure:
    """Loss and accuracy per epoch, train (dashed) and val (solid), one colour per model."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[title for title, _, _ in CURVES])
    palette = colors(cards)
    for card in cards:
        name, curves = model_name(card), history(card)
        for col, (_, train_key, val_key) in enumerate(CURVES, 1):
            for key, dash in ((train_key, "dash"), (val_key, "solid")):
                if key in curves:
                    xs, ys = curves[key]
                    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} {key.split('_')[0]}",
                                             legendgroup=name, showlegend=col == 1,
                                             line={"color": palette[name], "dash": dash}), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    return fig if fig.data else _empty_note(fig, "no card has a training history")


def reliability_bins(card, *keys) -> list:
    """[(mean confidence, accuracy, count)] from a card's reliability rows at `keys` (default
    metrics.val.reliability); malformed rows are skipped."""
    rows = field(card, *(keys or ("metrics", "val", "reliability")))
    out = []
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, (list, tuple)) and len(row) == 3:
            conf, acc, count = (number(v) for v in row)
            if None not in (conf, acc, count):
                out.append((conf, acc, int(count)))
    return out


def calibration(card) -> dict:
    """{temperature, ece_before, ece_after, nll_before, nll_after}: temperature from the card (top level,
    else calibration), ECE before scaling from calibration.ece_before else metrics.val.ece; None where
    unknown."""
    temperature = number(card.get("temperature"))
    if temperature is None:
        temperature = number(field(card, "calibration", "temperature"))
    before = number(field(card, "calibration", "ece_before"))
    return {"temperature": temperature,
            "ece_before": before if before is not None else number(field(card, "metrics", "val", "ece")),
            "ece_after": number(field(card, "calibration", "ece_after")),
            "nll_before": number(field(card, "calibration", "nll_before")),
            "nll_after": number(field(card, "calibration", "nll_after"))}


def calibration_rows(cards) -> list:
    """One row per card: model, temperature, ECE and NLL before and after temperature scaling."""
    return [{"model": model_name(c), **calibration(c)} for c in cards]


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
        name = model_name(card)
        bins = reliability_bins(card)
        if bins:
            fig.add_trace(_reliability_trace(bins, name, palette[name], "solid"))
        scaled = reliability_bins(card, "calibration", "reliability_after")
        if scaled:
            t = calibration(card)["temperature"]
            label = f"{name} (T={t:g})" if t is not None else f"{name} (temperature-scaled)"
            fig.add_trace(_reliability_trace(scaled, label, palette[name], "dot"))
    fig.update_layout(xaxis_title="confidence (top-class probability)", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1])
    return fig if len(fig.data) > 1 else _empty_note(fig, "no card has reliability bins")


def load_cards(directory=None) -> list:
    """The cards to compare: every readable card (fer_core.cards.read_cards), default first."""
    return sorted(read_cards(directory), key=lambda c: not c.get("default"))
