"""A shipped model's int8 file at run time, without PyTorch: what `EmotionRecognizer` classifies with by default, so
the upload page, the webcam and the video tab have their model in about a second instead of after PyTorch's import
(docs/speed.md, First page). `int8` makes the files and wraps these nets as torch modules for evaluation.

A face batch goes: uint8 [N, 48, 48] -> `views` (normalised float32 [N, 1, 48, 48], and its mirror for flip TTA:
the same arithmetic as `preprocess.faces_to_tensor` and `evaluate.tta_views`, tested equal bit for bit) -> the
net's logits, averaged over the views -> `softmax` at the card's temperature.
"""
import os
import sys
from pathlib import Path

import numpy as np

from ..data.preprocess import MEAN, STD
from ..errors import WeightsError
from ..models import cards
from ..ort_options import SPIN_US, session_options, usable_cpus

INPUT, OUTPUT = "faces", "logits"  # the int8 files' input and output names
ENSEMBLE = "ensemble"  # an ensemble card's arch: its int8 build is its members' files
TTA = ("none", "flip")  # what this path runs; "tencrop" runs through PyTorch (EmotionRecognizer.classify)


def int8_path(card: dict, directory=None) -> Path:
    return cards.weights_dir(directory) / (card.get("int8") or {}).get("file", f"{card['name']}.int8.onnx")


def source_sha256(card: dict) -> str:
    """The weights an int8 file is made from: the card's fp16 file, or for an ensemble its members' files."""
    if card.get("sha256"):
        return card["sha256"]
    import hashlib
    return hashlib.sha256(" ".join(m["sha256"] for m in card.get("members", [])).encode()).hexdigest()


def problem(card: dict, directory=None):
    """Why the card's int8 file cannot be used (a message naming the file), or None when it can."""
    if card.get("arch") == ENSEMBLE:
        return ensemble_problem(card, directory)
    block = card.get("int8")
    path = int8_path(card, directory)
    if not block:
        return f"{card['name']} has no int8 file (make one with: python -m fer_core quantize --model {card['name']})"
    if not path.exists():
        return f"{path} is missing (named by the card {card['name']}.json)"
    if cards.sha256_file(path) != block.get("sha256"):
        return f"{path} does not match the sha256 in {card['name']}.json (corrupt or changed)"
    if block.get("source_sha256") != source_sha256(card):
        return (f"{path} is stale: it was made from other weights than {card['name']}'s "
                f"(run: python -m fer_core quantize --model {card['name']})")
    return None


def ensemble_problem(card: dict, directory=None):
    """Why an ensemble's int8 build cannot be used: no block, a member's int8 file that cannot, or one that
    changed since the ensemble's int8 figures were measured. None when it can."""
    block, name = card.get("int8"), card["name"]
    if not block:
        return f"{name} has no int8 build (make one with: python -m fer_core quantize --model {name})"
    for m in card.get("members", []):
        member = cards.find_card(m["name"], directory)
        why = problem(member, directory)
        if why:
            return f"ensemble {name}: {why}"
        if block.get("members", {}).get(member["name"]) != member["int8"]["sha256"]:
            return (f"ensemble {name}: {int8_path(member, directory)} changed since the ensemble's int8 build was "
                    f"measured (run: python -m fer_core quantize --model {name})")
    if block.get("source_sha256") != source_sha256(card):
        return f"ensemble {name}: its int8 build was made from other members (run: python -m fer_core quantize ...)"
    return None


def default_threads() -> int:
    """PyTorch's thread count where it is loaded (the tests and training set it), else OMP_NUM_THREADS or the
    CPUs this process may use (all of them where the OS cannot say: macOS, Windows)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or usable_cpus()


class Int8Net:
    """An int8 file in an ONNX Runtime session: float32 [N, 1, 48, 48] in, float32 logits [N, 7] out. Safe to share
    between threads (ONNX Runtime's `run` is). Its idle threads busy-wait for at most `spin_us` microseconds
    (`ort_options`: an ensemble's members do not)."""

    def __init__(self, path, threads=None, spin_us=SPIN_US):
        import onnxruntime as ort
        options = session_options(threads or default_threads(), spin_us)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # a truncated or foreign file: ONNX Runtime's own error types
            raise WeightsError(f"{path} could not be loaded by ONNX Runtime: {e}") from None
        self.path = Path(path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


class Int8Ensemble:
    """Members' int8 nets combined as `ensemble.Ensemble` combines the fp32 ones: the log of the mean of their
    probabilities, each member at its own temperature."""

    def __init__(self, members: list, temperatures: list):
        self.members, self.temperatures = members, [float(t) for t in temperatures]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        probs = np.mean([softmax(m(x), t) for m, t in zip(self.members, self.temperatures)], axis=0)
        return np.log(np.maximum(probs, 1e-12)).astype(np.float32)


def load(card: dict, directory=None):
    """The card's int8 net (an Int8Ensemble for an ensemble), after checking its files against the card
    (WeightsError naming the file if not)."""
    why = problem(card, directory)
    if why:
        raise WeightsError(why)
    if card.get("arch") != ENSEMBLE:
        return Int8Net(int8_path(card, directory))
    members = cards.member_cards(card, directory)
    if not members:
        raise WeightsError(f"ensemble {card['name']!r} lists no members")
    return Int8Ensemble([Int8Net(int8_path(m, directory), spin_us=0) for m in members],
                        [m.get("temperature", 1.0) for m in members])


def views(faces: np.ndarray, tta="none") -> list:
    """uint8 [N, 48, 48] -> the normalised float32 [N, 1, 48, 48] views whose logits TTA averages: "none" the
    batch, "flip" it and its mirror; bit for bit what `preprocess.faces_to_tensor` and `evaluate.tta_views` give
    (tested). Ten-crop's rescaled crops are left to `evaluate.tta_views` (one implementation of them; an int8 net's
    logits move by up to 0.015 when its input moves by a float32 rounding)."""
    if tta not in TTA:
        raise ValueError(f"tta must be one of {', '.join(TTA)}, got {tta!r}")
    x = ((faces.astype(np.float32) / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD))[:, None]
    return [x] if tta == "none" else [x, x[..., ::-1]]


def predict_logits(net, faces: np.ndarray, tta="none") -> np.ndarray:
    """uint8 [N, 48, 48] -> float32 logits [N, 7], the mean over `views`."""
    if not len(faces):
        return np.zeros((0, 7), np.float32)
    return np.mean([net(v) for v in views(faces, tta)], axis=0).astype(np.float32)


def softmax(logits: np.ndarray, temperature=1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
