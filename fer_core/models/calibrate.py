"""Temperature scaling: one scalar T fitted on val logits so that softmax(logits / T) is calibrated.

T changes no prediction (the arg-max stays), only how confident the probabilities are. It is
stored in the model card and EmotionRecognizer divides the logits by it. The card also keeps the
expected calibration error (ECE) and negative log-likelihood before and after, and the
reliability bins after, for the dashboard. T is fitted on the same val split the ECE is
reported on: one parameter, so the optimism is small, but the card says which split it was.
"""
import numpy as np
import torch
import torch.nn.functional as F

from .evaluate import expected_calibration_error, reliability, softmax

T_RANGE = (0.05, 20.0)  # search bounds for the temperature


def nll(logits, labels, temperature=1.0) -> float:
    """Mean negative log-likelihood of the true labels at this temperature."""
    x = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(F.cross_entropy(x, torch.as_tensor(labels, dtype=torch.int64)))


def fit_temperature(logits, labels, iters=60) -> float:
    """The T in T_RANGE minimising val NLL (golden-section search on log T; NLL is convex in 1/T)."""
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on an empty split")
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def calibration(logits, labels, split="val") -> dict:
    """Fit T and report what it changes: {temperature, split, ece/nll before and after, reliability after}."""
    labels = np.asarray(labels, dtype=np.int64)
    t = fit_temperature(logits, labels)
    before, after = softmax(logits), softmax(logits, t)
    return {
        "temperature": round(t, 4), "split": split, "n": int(len(labels)),
        "ece_before": round(expected_calibration_error(before, labels), 4),
        "ece_after": round(expected_calibration_error(after, labels), 4),
        "nll_before": round(nll(logits, labels), 4), "nll_after": round(nll(logits, labels, t), 4),
        "reliability_after": reliability(after, labels),
    }


def calibrate_card(card: dict, model, val, dataset="fer2013") -> dict:
    """The card with `temperature` and `calibration` fitted on `val` (a data Split of `dataset`) for `model`."""
    from .evaluate import predict_logits
    logits = predict_logits(model, val.images, "cpu")
    c = {"dataset": dataset, **calibration(logits, val.labels)}
    return {**card, "temperature": c["temperature"], "calibration": c}
