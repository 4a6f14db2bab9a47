"""Predictions over a split and the metrics every card and report uses."""
import numpy as np
import torch
import torch.nn.functional as F

from ..data.emotions import EMOTIONS
from ..data.preprocess import faces_to_tensor

ECE_BINS = 15
TTA = ("none", "flip", "tencrop")  # what `predict_logits(tta=...)` and `evaluate --tta` accept
CROP = 44  # ten-crop side: 44x44 crops scaled back to 48 are a 9% zoom, inside what training augments


def tta_views(x: torch.Tensor, tta="none") -> list:
    """The views of a normalised batch [N, 1, 48, 48] whose logits TTA averages: "none" the batch itself,
    "flip" it and its mirror, "tencrop" the four corner and the centre 44x44 crops, each scaled back to
    48x48, and their mirrors."""
    if tta not in TTA:
        raise ValueError(f"tta must be one of {', '.join(TTA)}, got {tta!r}")
    if tta == "none":
        return [x]
    if tta == "flip":
        return [x, torch.flip(x, dims=[3])]
    side, far = x.shape[-1], x.shape[-1] - CROP
    corners = ((0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2))
    crops = [F.interpolate(x[..., y:y + CROP, c:c + CROP], size=(side, side), mode="bilinear", align_corners=False)
             for y, c in corners]
    return crops + [torch.flip(c, dims=[3]) for c in crops]


@torch.inference_mode()
def predict_logits(model, images, device="cpu", tta="none", batch_size=512) -> np.ndarray:
    """uint8 [N, 48, 48] -> float32 logits [N, 7]; with `tta` the mean over `tta_views`."""
    if model.training:  # a recognizer's model already is in eval mode: no walk over its modules per frame
        model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        views = tta_views(faces_to_tensor(images[i:i + batch_size], device), tta)
        out.append(torch.stack([model(v).float() for v in views]).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(EMOTIONS)), np.float32)


def softmax(logits, temperature=1.0) -> np.ndarray:
    return F.softmax(torch.as_tensor(logits) / temperature, dim=1).numpy()


def confusion_matrix(labels, pred) -> np.ndarray:
    """int64 [7, 7] counts of (true label, predicted label): rows = true, columns = predicted."""
    k = len(EMOTIONS)
    labels, pred = np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """accuracy, macro_f1, per_class, confusion_matrix (rows = true), predicted_share (the share of faces
    called each emotion, whatever their label), ece, n."""
    k = len(EMOTIONS)
    labels = np.asarray(labels, dtype=np.int64)
    pred = probs.argmax(1)
    cm = confusion_matrix(labels, pred)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    per_class = {e: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                     "f1": round(float(f1[i]), 4), "support": int(cm[i].sum())} for i, e in enumerate(EMOTIONS)}
    return {
        "n": int(len(labels)),
        "accuracy": round(float((pred == labels).mean()) if len(labels) else 0.0, 4),
        "macro_f1": round(float(f1.mean()), 4),
        "ece": round(expected_calibration_error(probs, labels), 4),
        "labels": list(EMOTIONS),
        "per_class": per_class,
        "predicted_share": {e: round(float(share), 4) for e, share in zip(EMOTIONS, cm.sum(0) / max(1, len(labels)))},
        "confusion_matrix": cm.tolist(),
    }


def expected_calibration_error(probs, labels, bins=ECE_BINS) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def reliability(probs, labels, bins=ECE_BINS) -> list:
    """Per confidence bin: [mean confidence, accuracy, count] (for the dashboard's diagram)."""
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            rows.append([round(float(conf[sel].mean()), 4), round(float(correct[sel].mean()), 4), int(sel.sum())])
    return rows


def format_table(m: dict, title="") -> str:
    lines = [title] if title else []
    lines.append(f"n={m['n']}  accuracy={m['accuracy']:.2%}  macro-F1={m['macro_f1']:.4f}  ECE={m['ece']:.4f}")
    lines.append(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for e, r in m["per_class"].items():
        lines.append(f"{e:<10}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}{r['support']:>10d}")
    lines.append("confusion matrix (rows = true, columns = predicted): " + " ".join(e[:3] for e in m["labels"]))
    for e, row in zip(m["labels"], m["confusion_matrix"]):
        lines.append(f"{e:<10}" + "".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)
