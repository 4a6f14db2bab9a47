"""int8 inference: a shipped model as an ONNX Runtime file with static int8 quantization, weights/NAME.int8.onnx.

`python -m fer_core quantize --model NAME` exports the model (BatchNorm folded, as `registry.for_inference`
runs it) to ONNX, quantizes it statically (QDQ: per-channel int8 weights, uint8 activations in a reduced
7-bit range, so AVX2 machines without VNNI do not saturate; ranges calibrated on FER2013 training faces),
measures the file's accuracy on the val split of every dataset the card has metrics for, times it on this
CPU and records it all in the card's `int8` block with the file's sha256 and the sha256 of the weights it
was made from. `load` refuses a file that is missing, corrupt (sha256) or stale (made from other weights),
and `Int8Model` runs it as a torch module, so `evaluate.predict_logits`, TTA and the recognizer use it
unchanged. An ensemble has no file of its own: its int8 build is its members' int8 files combined as the
fp32 ensemble combines them, and its card's block records those files' sha256s and the ensemble's own figures.
Measured choices: docs/speed.md.
"""
import hashlib
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

METHOD = ("onnxruntime static quantization, QDQ format: per-channel symmetric int8 weights, uint8 activations "
          "(reduce_range), MinMax ranges")
CALIBRATION_FACES = 1024  # FER2013 training faces, drawn at random with CALIBRATION_SEED
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 64
INPUT, OUTPUT = "faces", "logits"


def int8_path(card: dict, directory=None) -> Path:
    return cards.weights_dir(directory) / (card.get("int8") or {}).get("file", f"{card['name']}.int8.onnx")


def source_sha256(card: dict) -> str:
    """The weights an int8 file is made from: the card's fp16 file, or for an ensemble its members' files."""
    if card.get("sha256"):
        return card["sha256"]
    return hashlib.sha256(" ".join(m["sha256"] for m in card.get("members", [])).encode()).hexdigest()


def problem(card: dict, directory=None):
    """Why the card's int8 file cannot be used (a message naming the file), or None when it can."""
    if card.get("arch") == ensemble.ARCH:
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


class Int8Model(nn.Module):
    """An ONNX Runtime session as a torch module: float [N, 1, 48, 48] in, float logits [N, 7] out, on the CPU.
    Safe to share between threads (ONNX Runtime's `run` is). `spin`: its threads busy-wait a while after each
    run, ready for the next; that saves 0.1 ms per call on one model, but an ensemble's members run one after
    another and each one's spinning threads slow the next (measured: 7 full-width VGG13s 34.6 ms per face with
    spinning, 6.3 ms without; one vgg13_s 0.21 ms with, 0.31 ms without)."""

    def __init__(self, path, threads=None, spin=True):
        super().__init__()
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # a truncated or foreign file: ONNX Runtime's own error types
            raise WeightsError(f"{path} could not be loaded by ONNX Runtime: {e}") from None
        self.path = Path(path)
        self.eval()

    def forward(self, x):
        x = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])


def load(card: dict, directory=None) -> Int8Model:
    """The card's int8 model, after checking its file against the card (WeightsError naming the file if not)."""
    why = problem(card, directory)
    if why:
        raise WeightsError(why)
    if card.get("arch") == ensemble.ARCH:
        return ensemble_model(card, directory)
    return Int8Model(int8_path(card, directory))


def ensemble_model(card: dict, directory=None) -> ensemble.Ensemble:
    """An ensemble of its members' int8 models, each at its calibrated temperature (as `ensemble.load`)."""
    members = ensemble.member_cards(card, directory)
    return ensemble.Ensemble([Int8Model(int8_path(m, directory), spin=False) for m in members],
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
    block = measured(Int8Model(path), fer, card)
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
