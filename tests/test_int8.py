"""int8 inference (fer_core.inference.int8): quantizing a shipped model, the card's int8 block, the recognizer's backend
choice and its fallback to fp32 when the int8 file is missing, corrupt or stale."""
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fer_core import EmotionRecognizer
from fer_core.errors import WeightsError
from fer_core.inference import int8
from fer_core.models.cards import find_card, sha256_file, write_card
from fer_core.data.fer2013 import FER2013
from fer_core.models.speed import SIMD_FLAGS, machine

try:
    from helpers_data import cli_env, make_kaggle, run_cli, zip_folder
except ImportError:  # tests/ imported as a package
    from tests.helpers_data import cli_env, make_kaggle, run_cli, zip_folder

pytestmark = pytest.mark.slow  # quantizing the module's model takes about 30 s on 2 cores
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = "mini_xception"  # a small trained model: its int8 copy must read synthetic faces as fp32 does
COUNTS = {"train": [30] * 7, "val": [20] * 7, "test": [2] * 7}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(weights folder, card) with the shipped mini_xception quantized on synthetic FER2013-like faces."""
    root = tmp_path_factory.mktemp("int8")
    data = zip_folder(make_kaggle(root / "fer2013", COUNTS).path, root / "fer2013.zip")
    weights = root / "weights"
    weights.mkdir()
    for ext in (".pt", ".json"):
        shutil.copy(ROOT / "weights" / f"{SHIPPED}{ext}", weights)
    card = {**json.loads((weights / f"{SHIPPED}.json").read_text())}
    card.pop("int8", None)  # the shipped card's block names the shipped file
    write_card(card, weights)
    return weights, int8.build(SHIPPED, data, weights, calibration=64), FER2013(data).load("val").images


def test_build_writes_the_file_and_its_card_block(quantized):
    weights, card, _ = quantized
    block = card["int8"]
    path = weights / block["file"]
    assert block["file"] == f"{SHIPPED}.int8.onnx" and path.stat().st_size == block["size_bytes"] > 0
    assert block["sha256"] == sha256_file(path) and block["source_sha256"] == card["sha256"]
    assert block["calibration"] == {"dataset": "fer2013", "split": "train", "faces": 64, "seed": 0}
    m = block["metrics"]["fer2013"]
    assert m["val"]["n"] == m["val_tta"]["n"] == 140 and 0 <= m["val"]["accuracy"] <= 1
    assert block["datasets"]["fer2013"]["fingerprint"]
    assert 0 < block["cpu_ms_per_face"]["batch1"]["median"] <= block["cpu_ms_per_face"]["batch1"]["p95"]
    assert find_card(SHIPPED, weights)["int8"] == block  # what build returned is what the card says
    assert int8.problem(card, weights) is None


def test_int8_agrees_with_fp32(quantized):
    weights, _, faces = quantized
    fast = EmotionRecognizer(SHIPPED, "haar", weights_dir=weights)
    exact = EmotionRecognizer(SHIPPED, "haar", weights_dir=weights, backend="torch")
    assert (fast.backend_used, exact.backend_used) == ("int8", "torch")
    p, q = fast.classify(faces), exact.classify(faces)
    assert p.shape == q.shape == (len(faces), 7) and np.allclose(p.sum(1), 1, atol=1e-5)
    top2 = np.sort(q, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] >= 0.1  # faces fp32 does not read on a knife-edge (synthetic ones often are)
    same = p.argmax(1) == q.argmax(1)
    print(f"int8 = fp32 on {same.mean():.1%} of faces, {same[clear].mean():.1%} of {clear.sum()} clear ones; "
          f"largest probability gap {np.abs(p - q).max():.3f}")
    assert clear.mean() >= 0.5 and same[clear].mean() >= 0.97 and same.mean() >= 0.9
    assert np.abs(p - q).max() < 0.15
    assert np.allclose(fast.classify(faces[:3], tta="flip").sum(1), 1, atol=1e-5)  # TTA runs through int8 too


@pytest.mark.parametrize("damage, words", [
    ("corrupt", "does not match the sha256"), ("missing", "is missing"), ("stale", "is stale"),
    ("no block", "has no int8 file")])
def test_a_broken_int8_file_falls_back_to_fp32_naming_it(quantized, tmp_path, caplog, damage, words):
    weights = tmp_path / "w"
    shutil.copytree(quantized[0], weights)
    path, card = weights / f"{SHIPPED}.int8.onnx", find_card(SHIPPED, weights)
    if damage == "corrupt":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "missing":
        path.unlink()
    elif damage == "stale":  # made from other weights than the card's
        write_card({**card, "int8": {**card["int8"], "source_sha256": "0" * 64}}, weights)
    else:
        card.pop("int8")
        write_card(card, weights)
    with caplog.at_level(logging.WARNING, logger="fer_core.inference.recognizer"):
        rec = EmotionRecognizer(SHIPPED, "haar", weights_dir=weights)
    assert rec.backend_used == "torch"
    assert words in caplog.text and "fp32" in caplog.text
    if damage != "no block":
        assert f"{SHIPPED}.int8.onnx" in caplog.text
    np.testing.assert_allclose(rec.classify(quantized[2][:5]).sum(1), 1, atol=1e-5)


def test_unreadable_file_with_matching_sha_falls_back(quantized, tmp_path, caplog):
    """A file the card vouches for that ONNX Runtime cannot read (a foreign file) is named too."""
    weights = tmp_path / "w"
    shutil.copytree(quantized[0], weights)
    path, card = weights / f"{SHIPPED}.int8.onnx", find_card(SHIPPED, weights)
    path.write_bytes(b"not an onnx file")
    write_card({**card, "int8": {**card["int8"], "sha256": sha256_file(path)}}, weights)
    with caplog.at_level(logging.WARNING, logger="fer_core.inference.recognizer"):
        assert EmotionRecognizer(SHIPPED, "haar", weights_dir=weights).backend_used == "torch"
    assert "could not be loaded by ONNX Runtime" in caplog.text and str(path) in caplog.text


def test_backend_choice(quantized):
    weights = quantized[0]
    with pytest.raises(ValueError, match="unknown backend"):
        EmotionRecognizer(SHIPPED, "haar", weights_dir=weights, backend="tflite")
    rec = EmotionRecognizer(SHIPPED, "haar", weights_dir=weights)
    assert rec._model is None  # int8 needs no PyTorch model until Grad-CAM asks for it
    assert not rec.model.training and rec.net is not rec.model


def test_machine_names_the_cpu():
    m = machine()
    assert m["cpu"] and m["cores"] >= 1 and m["threads"] >= 1
    assert set(m["flags"]) <= set(SIMD_FLAGS)


def test_predict_cli_backend(quantized, tmp_path):
    import cv2

    try:
        from helpers_images import astronaut_bgr
    except ImportError:
        from tests.helpers_images import astronaut_bgr
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut_bgr())
    env = cli_env(FER_WEIGHTS_DIR=quantized[0])
    out = {}
    for backend in ("int8", "torch"):
        r = run_cli("predict", photo, "--model", SHIPPED, "--detector", "haar", "--backend", backend, env=env)
        assert r.returncode == 0, r.stderr
        out[backend] = json.loads(r.stdout)[0]["faces"]
    assert len(out["int8"]) == len(out["torch"]) == 1
    assert out["int8"][0]["label"] == out["torch"][0]["label"]
    assert out["int8"][0]["box"] == out["torch"][0]["box"]


def test_evaluate_int8_measures_and_stores_the_int8_block(quantized, tmp_path):
    """`evaluate --backend int8 --write-card` reads the int8 build and writes its figures and the data they were
    measured on into the int8 block only; a model without an int8 build is named, not read in fp32."""
    from fer_core.models.measure import split_metrics
    weights = tmp_path / "w"
    shutil.copytree(quantized[0], weights)
    data = zip_folder(make_kaggle(tmp_path / "other", {**COUNTS, "val": [12] * 7}).path, tmp_path / "fer2013.zip")
    env = cli_env(FER_WEIGHTS_DIR=weights)
    for tta in ("none", "flip"):
        r = run_cli("evaluate", "--model", SHIPPED, "--data", data, "--backend", "int8", "--tta", tta, "--write-card",
                    env=env)
        assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout
    before, card = find_card(SHIPPED, quantized[0]), find_card(SHIPPED, weights)
    fingerprint = FER2013(data).fingerprint()
    assert card["int8"]["datasets"]["fer2013"]["fingerprint"] == fingerprint
    assert card["datasets"] == before["datasets"] and card["metrics"] == before["metrics"]  # fp32's untouched
    written = card["int8"]["metrics"]["fer2013"]
    assert written["val"]["n"] == written["val_tta"]["n"] == 84
    net = int8.load(card, weights)
    assert written["val"]["accuracy"] == split_metrics(net, FER2013(data), "val")["accuracy"]
    assert written["val_tta"]["accuracy"] == split_metrics(net, FER2013(data), "val", "flip")["accuracy"]
    card.pop("int8")
    write_card(card, weights)
    r = run_cli("evaluate", "--model", SHIPPED, "--data", data, "--backend", "int8", env=env)
    assert r.returncode == 2 and f"{SHIPPED} has no int8 file" in r.stderr


@pytest.mark.dataset
@pytest.mark.skipif(not os.environ.get("FER2013_PATH"), reason="set FER2013_PATH to the real FER2013")
def test_shipped_default_int8_on_real_val():
    """The shipped default's int8 file on FER2013's val faces: the same answer as fp32 on >= 97% of them,
    and its accuracy within 0.3 points of the fp32 figure in the card."""
    card = find_card()
    if int8.problem(card):
        pytest.skip(int8.problem(card))
    val = FER2013(os.environ["FER2013_PATH"]).load("val")
    fast, exact = EmotionRecognizer(backend="int8", detector="haar"), EmotionRecognizer(backend="torch", detector="haar")
    p, q = fast.classify(val.images).argmax(1), exact.classify(val.images).argmax(1)
    assert (p == q).mean() >= 0.97
    accuracy = (p == val.labels).mean()
    assert abs(accuracy - card["metrics"]["fer2013"]["val"]["accuracy"]) <= 0.003
    assert accuracy == pytest.approx(card["int8"]["metrics"]["fer2013"]["val"]["accuracy"], abs=1e-4)


@pytest.fixture(scope="module")
def quantized_ensemble(quantized, tmp_path_factory):
    """(weights folder, ensemble card) for an ensemble of the quantized mini_xception and squeezenet, which has
    no int8 file yet: quantizing the ensemble must make it."""
    from fer_core.data.fer2013 import open_dataset
    from fer_core.models import ensemble
    weights = tmp_path_factory.mktemp("int8_ensemble") / "weights"
    shutil.copytree(quantized[0], weights)
    for ext in (".pt", ".json"):
        shutil.copy(ROOT / "weights" / f"squeezenet{ext}", weights)
    card = json.loads((weights / "squeezenet.json").read_text())
    card.pop("int8", None)
    write_card(card, weights)
    data = quantized[0].parent / "fer2013.zip"
    ensemble.build("duo", [SHIPPED, "squeezenet"], [open_dataset(data)], ["ensemble"], weights)
    return weights, int8.build("duo", data, weights, calibration=64)


def test_an_ensemble_is_quantized_through_its_members(quantized_ensemble, quantized):
    weights, card = quantized_ensemble
    block, members = card["int8"], [find_card(n, weights) for n in (SHIPPED, "squeezenet")]
    assert (weights / "squeezenet.int8.onnx").is_file() and "file" not in block
    assert block["members"] == {m["name"]: sha256_file(weights / m["int8"]["file"]) for m in members}
    assert block["size_bytes"] == sum(m["int8"]["size_bytes"] for m in members)
    assert block["metrics"]["fer2013"]["val"]["n"] == 140 and block["cpu_ms_per_face"]["batch1"]["median"] > 0
    assert int8.problem(card, weights) is None
    fast = EmotionRecognizer("duo", "haar", weights_dir=weights)
    exact = EmotionRecognizer("duo", "haar", weights_dir=weights, backend="torch")
    assert (fast.backend_used, exact.backend_used) == ("int8", "torch")
    p, q = fast.classify(quantized[2]), exact.classify(quantized[2])
    assert np.allclose(p.sum(1), 1, atol=1e-5) and (p.argmax(1) == q.argmax(1)).mean() >= 0.9
    assert np.abs(p - q).max() < 0.15


@pytest.mark.parametrize("damage, words", [("corrupt member", "squeezenet.int8.onnx does not match"),
                                           ("member remade", "changed since the ensemble's int8 build")])
def test_an_ensemble_with_a_broken_member_file_falls_back_naming_it(quantized_ensemble, tmp_path, caplog, damage,
                                                                     words):
    weights = tmp_path / "w"
    shutil.copytree(quantized_ensemble[0], weights)
    path, member = weights / "squeezenet.int8.onnx", find_card("squeezenet", weights)
    path.write_bytes(path.read_bytes() + b"\0")  # the member's sha256 changes
    if damage == "member remade":  # a new member file its own card vouches for: the ensemble's figures are stale
        write_card({**member, "int8": {**member["int8"], "sha256": sha256_file(path)}}, weights)
    with caplog.at_level(logging.WARNING, logger="fer_core.inference.recognizer"):
        rec = EmotionRecognizer("duo", "haar", weights_dir=weights)
    assert rec.backend_used == "torch" and words in caplog.text and "ensemble duo" in caplog.text


def test_an_ensemble_whose_member_changed_is_not_quantized(quantized_ensemble, quantized, tmp_path):
    """A member retrained since the ensemble was measured: its int8 figures would describe another ensemble."""
    weights = tmp_path / "w"
    shutil.copytree(quantized_ensemble[0], weights)
    member = find_card("squeezenet", weights)
    write_card({**member, "sha256": "1" * 64}, weights)
    with pytest.raises(WeightsError, match="'squeezenet' has other weights"):
        int8.build("duo", quantized[0].parent / "fer2013.zip", weights, calibration=64)
