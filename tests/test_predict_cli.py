"""`python -m fer_core predict` as a user runs it: JSON on stdout, exit codes, no tracebacks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

try:
    from helpers_images import TINY_MODEL, astronaut_rgb, make_tiny_weights
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import TINY_MODEL, astronaut_rgb, make_tiny_weights

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    make_tiny_weights(d / "weights")
    Image.fromarray(astronaut_rgb()).save(d / "face.jpg", quality=90)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(d / "blank.png")
    (d / "notes.txt").write_text("not a picture\n")
    (d / "cache").mkdir()
    return d


def run_cli(files, *args, weights=None):
    env = {**os.environ, "FER_WEIGHTS_DIR": str(weights or files / "weights"), "FER_CACHE_DIR": str(files / "cache"),
           "FER_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("FER_YUNET_MODEL", None)
    return subprocess.run([sys.executable, "-m", "fer_core", "predict", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


@pytest.mark.slow
def test_mixed_good_and_bad_inputs(files):
    face, text, missing = str(files / "face.jpg"), str(files / "notes.txt"), str(files / "missing.jpg")
    out = run_cli(files, face, text, missing, "--detector", "haar")
    assert "Traceback" not in out.stderr
    assert out.returncode == 1, out.stderr
    results = json.loads(out.stdout)
    assert isinstance(results, list) and [r["image"] for r in results] == [face, text, missing]

    good = results[0]
    assert "error" not in good and len(good["faces"]) == 1
    f = good["faces"][0]
    assert set(f) == {"box", "label", "confidence", "scores"}
    assert len(f["box"]) == 4 and all(isinstance(v, int) for v in f["box"])
    x, y, w, h = f["box"]
    assert 150 <= x + w / 2 <= 300 and 40 <= y + h / 2 <= 200
    assert f["label"] in f["scores"] and list(f["scores"]) == ["angry", "disgust", "fear", "happy", "sad",
                                                               "surprise", "neutral"]
    assert abs(sum(f["scores"].values()) - 1) < 1e-3
    assert f["confidence"] == max(f["scores"].values()) == f["scores"][f["label"]]

    for bad, name in ((results[1], "notes.txt"), (results[2], "missing.jpg")):
        assert set(bad) == {"image", "error"}
        assert isinstance(bad["error"], str) and name in bad["error"]


@pytest.mark.slow
def test_only_good_inputs_exit_0(files):
    face, blank = str(files / "face.jpg"), str(files / "blank.png")
    out = run_cli(files, face, blank, "--detector", "haar", "--json")
    assert "Traceback" not in out.stderr
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [r["image"] for r in results] == [face, blank]
    assert len(results[0]["faces"]) == 1
    assert results[1] == {"image": blank, "faces": []}


@pytest.mark.slow
def test_auto_detector_offline_falls_back_to_haar(files):
    out = run_cli(files, str(files / "face.jpg"))
    assert "Traceback" not in out.stderr
    assert out.returncode == 0, out.stderr
    assert "Haar" in out.stderr  # the fallback is logged as a warning
    assert len(json.loads(out.stdout)[0]["faces"]) == 1


@pytest.mark.slow
def test_tta_averages_each_face_with_its_mirror(files):
    """With a shipped model (the tiny one's outputs all sit near 1/7): --tta gives the recognizer's flip-TTA
    scores, which differ from the plain ones."""
    from fer_core import EMOTIONS, EmotionRecognizer
    face = files / "face.jpg"
    rec = EmotionRecognizer("mini_xception", detector="haar", weights_dir=ROOT / "weights", backend="torch")
    scores = {}
    for tta, args in (("none", ()), ("flip", ("--tta",)), ("tencrop", ("--tta", "tencrop"))):
        out = run_cli(files, str(face), "--model", "mini_xception", "--detector", "haar", "--backend", "torch", *args,
                      weights=ROOT / "weights")
        assert out.returncode == 0, out.stderr
        scores[tta] = json.loads(out.stdout)[0]["faces"][0]["scores"]
        assert scores[tta] == pytest.approx(rec.predict(str(face), tta=tta)[0].scores, abs=2e-4)
    assert max(abs(scores["flip"][e] - scores["none"][e]) for e in EMOTIONS) > 0.01


@pytest.mark.slow
def test_unknown_model_exit_2(files):
    out = run_cli(files, str(files / "face.jpg"), "--model", "no_such_model", "--detector", "haar")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "no_such_model" in out.stderr and f"shipped: {TINY_MODEL}" in out.stderr
    assert out.stdout == ""


def test_unknown_detector_is_a_usage_error(files, capsys):
    from fer_core.cli import main  # argparse's refusal, in-process: no model is loaded
    with pytest.raises(SystemExit) as info:
        main(["predict", str(files / "face.jpg"), "--detector", "mtcnn"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "mtcnn" in err
