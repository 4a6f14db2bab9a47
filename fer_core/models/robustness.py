"""Robustness benchmark: FER2013's val faces through what real capture does to a face.

`python -m fer_core robustness --model NAME [NAME ...]` reads every val face clean and then through
each corruption at three fixed severities (mild, medium, strong), prints the accuracy of each and
their mean, and writes them into the card (`robustness`). The corruptions are capture.py's (blur, low
resolution, JPEG, sensor noise, dark light, occlusion) plus the geometry of a face that a detector
frames differently from FER2013: in-plane rotation, a tighter and a looser crop. Random parts (noise,
where an occluder falls) come from a fixed seed, so every model sees the very same faces.
"""
import cv2
import numpy as np
import torch

from ..data import capture
from .evaluate import predict_logits

SEED = 2026
# corruption -> its three severities (what they mean: see `corrupt`)
SEVERITIES = {
    "blur": (0.6, 1.0, 1.6),  # Gaussian sigma, px at 48x48
    "lowres": (2.0, 3.0, 4.0),  # downscale factor: a face 24, 16, 12 px wide
    "jpeg": (30, 15, 8),  # JPEG quality
    "noise": (8.0, 15.0, 25.0),  # sensor noise sigma, grey levels
    "dark": (1.6, 2.2, 3.0),  # gamma (with contrast falling to 0.8, 0.65, 0.5)
    "rotation": (10.0, 20.0, 30.0),  # degrees, alternating in sign face by face
    "tighter": (1.15, 1.3, 1.5),  # zoom in: the crop cuts into the face
    "looser": (0.85, 0.7, 0.55),  # zoom out: more background, a smaller face
    "occlusion": (0.1, 0.2, 0.3),  # share of the face under a flat rectangle
}
DARK_CONTRAST = {1.6: 0.8, 2.2: 0.65, 3.0: 0.5}


def warp(faces: np.ndarray, angle=0.0, zoom=1.0) -> np.ndarray:
    """Each uint8 face rotated by `angle` degrees and scaled by `zoom` about its centre; the border is
    replicated, as crop_face does where a crop leaves the picture. `angle` may be one per face."""
    angles = np.broadcast_to(np.asarray(angle, dtype=np.float64), (len(faces),))
    out = np.empty_like(faces)
    for i, (face, a) in enumerate(zip(faces, angles)):
        h, w = face.shape
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), float(a), float(zoom))
        out[i] = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def corrupt(faces: np.ndarray, kind: str, severity) -> np.ndarray:
    """uint8 faces [N, 48, 48] through one corruption at one severity (deterministic)."""
    g = torch.Generator().manual_seed(SEED)
    t = torch.from_numpy(np.ascontiguousarray(faces))
    n = len(faces)
    if kind == "blur":
        return capture.blur(t, torch.full((n,), float(severity))).numpy()
    if kind == "lowres":
        return capture.lowres(t, torch.full((n,), float(severity))).numpy()
    if kind == "jpeg":
        return capture.jpeg(t, torch.full((n,), int(severity))).numpy()
    if kind == "noise":
        return capture.noise(t, float(severity), g).numpy()
    if kind == "dark":
        return capture.light(t, float(severity), DARK_CONTRAST[severity], 0.0).numpy()
    if kind == "occlusion":
        return capture.occlude(t, float(severity), g).numpy()
    if kind == "rotation":
        return warp(faces, angle=np.where(np.arange(n) % 2 == 0, severity, -severity))
    if kind in ("tighter", "looser"):
        return warp(faces, zoom=severity)
    raise ValueError(f"unknown corruption {kind!r}; choose one of {', '.join(SEVERITIES)}")


def accuracy(model, faces, labels) -> float:
    return round(float((predict_logits(model, faces).argmax(1) == labels).mean()), 4)


def run(model, split, progress=None) -> dict:
    """{clean, corruptions: {kind: [accuracy at each severity]}, mean} of `model` on a data Split."""
    result = {"clean": accuracy(model, split.images, split.labels), "corruptions": {}}
    for kind, levels in SEVERITIES.items():
        result["corruptions"][kind] = [accuracy(model, corrupt(split.images, kind, s), split.labels) for s in levels]
        if progress:
            progress(kind, result["corruptions"][kind])
    scores = [a for accs in result["corruptions"].values() for a in accs]
    result["mean"] = round(float(np.mean(scores)), 4)
    return result


def card_entry(result: dict, dataset_key: str, fingerprint: str) -> dict:
    """What a card keeps: the result, on which data, at which severities, made by which command."""
    return {"dataset": dataset_key, "split": "val", "fingerprint": fingerprint, **result,
            "severities": {k: list(v) for k, v in SEVERITIES.items()},
            "command": "python -m fer_core robustness --model NAME"}


def format_results(results: dict) -> str:
    """A table: one row per corruption (mean of its severities and each), one column per model."""
    names = list(results)
    lines = [f"{'corruption':<12}" + "".join(f"{n:>24}" for n in names)]
    lines.append(f"{'clean':<12}" + "".join(f"{results[n]['clean']:>24.2%}" for n in names))
    for kind in SEVERITIES:
        cells = []
        for n in names:
            accs = results[n]["corruptions"][kind]
            cells.append(f"{np.mean(accs):.2%} (" + "/".join(f"{a * 100:.0f}" for a in accs) + ")")
        lines.append(f"{kind:<12}" + "".join(f"{c:>24}" for c in cells))
    lines.append(f"{'mean':<12}" + "".join(f"{results[n]['mean']:>24.2%}" for n in names))
    return "\n".join(lines)
