"""int8 inference: a shipped model as an ONNX Runtime file with static int8 quantization, weights/NAME.int8.onnx.

`python -m fer_core quantize --model NAME` exports the model (BatchNorm folded, as `registry.for_inference`
runs it) to ONNX, quantizes it statically (QDQ: per-channel int8 weights, uint8 activations in a reduced
7-bit range, so AVX2 machines without VNNI do not saturate; ranges calibrated on FER2013 training faces),
measures the file's accuracy on the val split of every dataset the card has metrics for, times it on this
CPU and records it all in the card's `int8` block with the file's sha256 and the sha256 of the weights it
was made from. `load` refuses a file that is missing, corrupt (sha256) or stale (made from other weights),
and `Int8Model` runs it as a torch module, so `evaluate.predict_logits` and TTA use it unchanged; the
recognizer runs the same file without PyTorch (`int8_runtime`, which also holds the checks). An ensemble has
no file of its own: its int8 build is its members' int8 files combined as the fp32 ensemble combines them, and
its card's block records those files' sha256s and the ensemble's own figures.
Measured choices: docs/speed.md.
"""
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..atomic import write_atomic
from ..data.preprocess import FACE_SIZE, faces_to_tensor
from ..errors import WeightsError
from ..models import card_schema, cards, ensemble
from ..models.ensemble import COMBINE
from ..models.measure import VIEWS, dataset_info, split_metrics
from ..models.registry import fuse_conv_bn
from ..models.speed import card_machine, latency_ms
from .int8_runtime import INPUT, OUTPUT, Int8Net, ensemble_problem, int8_path, problem, source_sha256  # noqa: F401

METHOD = ("onnxruntime static quantization, QDQ format: per-channel symmetric int8 weights, uint8 activations "
          "(reduce_range), MinMax ranges")
CALIBRATION_FACES = 1024  # FER2013 training faces, drawn at random with CALIBRATION_SEED
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 64


class Int8Model(nn.Module):
    """An `int8_runtime` net (an int8 file's session, or an ensemble of them) as a torch module: float [N, 1, 48, 48]
    in, float logits [N, 7] out, on the CPU, for what takes torch modules: `evaluate.predict_logits`, `benchmark`
    (which so times the very session the recognizer classifies with), ensembles of them."""

    def __init__(self, runtime):
        super().__init__()
        self.runtime = runtime
        self.eval()

    def forward(self, x):
        return torch.from_numpy(self.runtime(x.detach().cpu().numpy()))


def load(card: dict, directory=None) -> Int8Model:
    """The card's int8 model, after checking its file against the card (WeightsError naming the file if not)."""
    why = problem(card, directory)
    if why:
        raise WeightsError(why)
    if card.get("arch") == ensemble.ARCH:
        return ensemble_model(card, directory)
    return Int8Model(Int8Net(int8_path(card, directory)))


def ensemble_model(card: dict, directory=None) -> ensemble.Ensemble:
    """An ensemble of its members' int8 models, each at its calibrated temperature (as `ensemble.load`)."""
    members = ensemble.member_cards(card, directory)
    return ensemble.Ensemble([Int8Model(Int8Net(int8_path(m, directory), spin_us=0)) for m in members],
                             [float(m.get("temperature", 1.0)) for m in members]).eval()


def export_onnx(model: nn.Module, path):
    """`model` with BatchNorm folded as an fp32 ONNX graph with a dynamic batch axis."""
    x = torch.zeros(1, 1, FACE_SIZE, FACE_SIZE)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(fuse_conv_bn(model), x, str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "n"}, OUTPUT: {0: "n"}}, opset_version=17, dynamo=False)


def calibration_faces(train, n=CALIBRATION_FACES, seed=CALIBRATION_SEED) -> np.ndarray:
    """`n` faces of a training Split drawn at random (all of them when it has fewer)."""
    rng = np.random.default_rng(seed)
    return train.images[np.sort(rng.choice(len(train.images), min(n, len(train.images)), replace=False))]


def quantize(model: nn.Module, faces: np.ndarray, path):
    """Write `model` statically quantized to int8, its activation ranges calibrated on uint8 `faces`, to `path`
    (atomically)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.batches = (faces_to_tensor(faces[i:i + CALIBRATION_BATCH]).numpy()
                            for i in range(0, len(faces), CALIBRATION_BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        export_onnx(model, fp32)
        quant_pre_process(str(fp32), str(pre))  # shape inference and graph clean-up before quantizing
        write_atomic(path, lambda p: quantize_static(
            str(pre), str(p), Faces(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax))


def other_datasets(card: dict, primary_path):
    """The datasets beside `primary_path` that the card has metrics for (same source name and fingerprint), and
    {dataset: why it was not measured} for the others."""
    from ..data.fer2013 import open_dataset
    found, missing = [], {}
    for key, info in card.get("datasets", {}).items():
        if key == card_schema.dataset_key(Path(primary_path).name) or key not in card.get("metrics", {}):
            continue
        path = Path(primary_path).parent / info["source"]
        try:
            ds = open_dataset(path)  # the app's detector; another one gives another fingerprint, caught below
            if ds.fingerprint() != info.get("fingerprint"):
                missing[key] = f"{info['source']} beside the FER2013 data has another fingerprint"
                continue
            found.append(ds)
        except Exception as e:  # not there, or not readable: the int8 block says so
            missing[key] = card_schema.portable(f"{info['source']} could not be opened beside the FER2013 data: {e}")
    return found, missing


def measured(net, fer, card: dict) -> dict:
    """The part of an int8 block that says how `net` does: val metrics on FER2013 `fer` and on the card's other
    datasets found beside it, what they were, and its CPU latency on this machine."""
    import onnxruntime as ort
    here = card_machine()  # before the long part: refused while the code paths are limited
    others, missing = other_datasets(card, fer.path)
    metrics, infos = {}, {}
    for ds in [fer, *others]:
        key = card_schema.dataset_key(ds.path.name)
        infos[key] = dataset_info(ds)
        metrics[key] = {k: split_metrics(net, ds, "val", tta) for k, tta in VIEWS}
    block = {"metrics": metrics, "datasets": infos,  # the data int8 was measured on: compare with the card's
             "cpu_ms_per_face": {"batch1": latency_ms(net, 1), "batch16": latency_ms(net, 16, runs=30),
                                 "onnxruntime": ort.__version__, **here}}
    return {**block, "not_measured": missing} if missing else block


def build(name=None, data=None, directory=None, calibration=CALIBRATION_FACES) -> dict:
    """Quantize a shipped model, measure the int8 file and store the `int8` block in its card; returns the card.
    For an ensemble: quantize the members that have no usable int8 file, then measure them together."""
    from ..data.fer2013 import dataset_path, open_dataset
    card = cards.find_card(name, directory)
    fer = open_dataset(dataset_path(data))
    if card["arch"] == ensemble.ARCH:
        return build_ensemble(card, fer, directory, calibration)
    return build_single(card, fer, directory, calibration)


def build_single(card: dict, fer, directory=None, calibration=CALIBRATION_FACES) -> dict:
    """A single model's int8 file, calibrated and measured on the opened FER2013 `fer`; returns its card."""
    model, card = cards.load_model(card["name"], directory)
    faces = calibration_faces(fer.load("train"), calibration)
    path = int8_path({"name": card["name"]}, directory)
    quantize(model, faces, path)
    block = measured(Int8Model(Int8Net(path)), fer, card)
    card = cards.find_card(card["name"], directory)  # as it is now: others may have written it meanwhile
    card["int8"] = {
        "file": path.name, "sha256": cards.sha256_file(path), "size_bytes": path.stat().st_size,
        "source_sha256": source_sha256(card), "method": METHOD,
        "calibration": {"dataset": card_schema.dataset_key(fer.path.name), "split": "train",
                        "faces": len(faces), "seed": CALIBRATION_SEED},
        **block, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": f"python -m fer_core quantize --model {card['name']} --data {fer.path.name}",
    }
    cards.write_card(card, directory)
    return card


def build_ensemble(card: dict, fer, directory=None, calibration=CALIBRATION_FACES) -> dict:
    """An ensemble's int8 build: its members' int8 files (made where missing, corrupt or stale), measured
    together; the block names each member file's sha256 so that a later change to one shows as stale. A member
    whose weights changed since the ensemble was measured is refused (WeightsError): rebuild the ensemble first."""
    members = ensemble.member_cards(card, directory)  # the weights the ensemble's fp32 figures were measured with
    members = [build_single(m, fer, directory, calibration) if problem(m, directory) else m for m in members]
    block = measured(ensemble_model(card, directory), fer, card)
    card = cards.find_card(card["name"], directory)
    card["int8"] = {
        "members": {m["name"]: m["int8"]["sha256"] for m in members},
        "size_bytes": sum(m["int8"]["size_bytes"] for m in members),
        "source_sha256": source_sha256(card), "method": f"the members' int8 files ({METHOD}), combined as {COMBINE}",
        **block, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": f"python -m fer_core quantize --model {card['name']} --data {fer.path.name}",
    }
    cards.write_card(card, directory)
    return card
