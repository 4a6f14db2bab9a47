"""Metrics on hand-made probabilities, predictions with TTA, and `python -m fer_core evaluate`."""
import json

import numpy as np
import pytest
import torch

from fer_core.models.cards import load_model
from fer_core.cli import main
from fer_core.data.fer2013 import FER2013
from fer_core.data.emotions import EMOTIONS
from fer_core.models.evaluate import (expected_calibration_error, format_table, metrics, predict_logits, reliability,
                                      softmax, tta_views)
from fer_core.data.preprocess import faces_to_tensor
from helpers_data import run_cli


def _probs(pred, confidence):
    """Rows putting `confidence` (one number, or one per row) on the predicted class, the rest evenly elsewhere."""
    conf = np.broadcast_to(np.asarray(confidence, float), (len(pred),))
    p = np.repeat(((1 - conf) / 6)[:, None], 7, axis=1)
    p[np.arange(len(pred)), pred] = conf
    return p


# true:  angry x3, disgust x2, fear, happy, sad, surprise, neutral
LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 4, 5, 6])
PRED = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5, 0])


def test_metrics_on_a_small_hand_checked_case():
    m = metrics(_probs(PRED, 0.9), LABELS)
    assert m["n"] == 10 and m["labels"] == list(EMOTIONS)
    assert m["accuracy"] == 0.7
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == 10
    assert cm[0].tolist() == [2, 1, 0, 0, 0, 0, 0]  # rows are the true class
    assert cm[1].tolist() == [0, 1, 1, 0, 0, 0, 0]
    assert cm[6].tolist() == [1, 0, 0, 0, 0, 0, 0]  # the neutral face called angry
    assert cm[:, 0].tolist() == [2, 0, 0, 0, 0, 0, 1]
    assert np.trace(cm) == 7
    pc = m["per_class"]
    assert pc["angry"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3}
    assert pc["disgust"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert pc["fear"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert pc["happy"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert pc["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted
    assert m["macro_f1"] == round((2 / 3 + 0.5 + 2 / 3 + 1 + 1 + 1 + 0) / 7, 4) == 0.6905
    assert m["ece"] == pytest.approx(0.2, abs=1e-4)  # every confidence 0.9, accuracy 0.7
    json.dumps(m)  # plain Python types only


def test_ece_is_zero_when_confidence_matches_accuracy():
    labels = np.arange(7).repeat(3)
    assert metrics(np.eye(7)[labels], labels)["ece"] == 0.0  # confident and right
    assert metrics(np.eye(7)[(labels + 1) % 7], labels)["ece"] == 1.0  # confident and wrong
    # everything at 60% confidence, 12 of 21 right: the gap is |12/21 - 0.6|
    pred = labels.copy()
    pred[:int(len(labels) * 0.4) + 1] += 1
    pred %= 7
    probs = _probs(pred, 0.6)
    acc = (pred == labels).mean()
    assert acc == 12 / 21
    assert expected_calibration_error(probs, labels) == pytest.approx(abs(acc - 0.6))


def test_ece_weighs_bins_by_their_size():
    labels = np.zeros(4, int)
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    pred = np.array([0, 1, 0, 0])  # top bin: 50% right at 0.95; low bin: 100% right at 0.55
    ece = expected_calibration_error(_probs(pred, conf), labels)
    assert ece == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    rows = reliability(_probs(pred, conf), labels)
    assert rows == [[0.55, 1.0, 2], [0.95, 0.5, 2]]


def test_perfect_and_empty_inputs():
    labels = np.array([3, 3, 5])
    m = metrics(np.eye(7)[labels], labels)
    assert m["accuracy"] == 1.0 and m["per_class"]["happy"]["f1"] == 1.0
    assert m["per_class"]["angry"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    empty = metrics(np.zeros((0, 7)), np.zeros(0, int))
    assert empty["n"] == 0 and empty["accuracy"] == 0.0 and empty["ece"] == 0.0


def test_format_table_shows_the_numbers():
    text = format_table(metrics(_probs(PRED, 0.9), LABELS), "tiny on val")
    lines = text.splitlines()
    assert lines[0] == "tiny on val"
    assert "accuracy=70.00%" in lines[1] and "macro-F1=0.6905" in lines[1]
    assert any(line.startswith("angry") and "0.6667" in line for line in lines)
    assert lines[-1].split() == ["neutral", "1", "0", "0", "0", "0", "0", "0"]


def test_softmax_and_temperature():
    logits = np.array([[2.0, 1, 0, 0, 0, 0, -1], [0.0] * 7])
    p = softmax(logits)
    assert np.allclose(p.sum(1), 1) and np.allclose(p[1], 1 / 7)
    assert p[0].argmax() == 0 and softmax(logits, 2.0)[0, 0] < p[0, 0]


def test_predict_logits_batches_and_mirrors():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    whole = predict_logits(model, images)
    assert whole.shape == (5, 7) and whole.dtype == np.float32
    assert np.allclose(predict_logits(model, images, batch_size=2), whole, atol=1e-5)
    mirrored = predict_logits(model, np.ascontiguousarray(images[:, :, ::-1]))
    assert np.allclose(predict_logits(model, images, tta="flip"), (whole + mirrored) / 2, atol=1e-5)
    assert predict_logits(model, images[:0]).shape == (0, 7)


def test_ten_crop_views_are_the_corner_and_centre_crops_scaled_back_and_mirrored():
    ramp = torch.arange(48.0).expand(2, 1, 48, 48)  # every row counts 0..47 left to right
    views = tta_views(ramp, "tencrop")
    assert len(views) == 10 and all(v.shape == (2, 1, 48, 48) for v in views)
    # a 44-px crop starting at column c, stretched to 48: output column j samples c + (j + 0.5) * 44 / 48 - 0.5
    j = torch.arange(1, 47.0)  # the outermost columns clamp to the crop's edge
    for view, c in zip(views[:5], (0, 4, 0, 4, 2)):
        assert torch.allclose(view[0, 0, 10, 1:47], c + (j + 0.5) * 44 / 48 - 0.5, atol=1e-4)
    for crop, mirror in zip(views[:5], views[5:]):
        assert torch.equal(mirror, torch.flip(crop, dims=[3]))
    column = torch.arange(48.0).view(48, 1).expand(1, 1, 48, 48)  # rows: the top crops start at 0, the bottom at 4
    tops = [tta_views(column, "tencrop")[k][0, 0, 1, 0].item() for k in range(5)]
    assert tops == pytest.approx([(1.5 * 44 / 48 - 0.5) + y for y in (0, 0, 4, 4, 2)], abs=1e-4)
    assert [len(tta_views(ramp, t)) for t in ("none", "flip")] == [1, 2]
    with pytest.raises(ValueError, match="tencrop"):
        tta_views(ramp, "twelvecrop")


def test_ten_crop_logits_are_the_mean_over_the_ten_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    images = np.random.default_rng(1).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    views = tta_views(faces_to_tensor(images), "tencrop")
    with torch.no_grad():
        expected = sum(model(v) for v in views) / 10
    got = predict_logits(model, images, tta="tencrop", batch_size=2)
    assert np.allclose(got, expected.numpy(), atol=1e-5)
    assert not np.allclose(got, predict_logits(model, images, tta="flip"), atol=1e-3)


# ------------------------------------------------------------------------------------------------- CLI

@pytest.mark.slow
def test_evaluate_cli_matches_the_card(trained, tmp_path):
    card = json.loads((trained.weights / "cnn.json").read_text())
    out = tmp_path / "val.json"
    r = run_cli("evaluate", "--model", "cnn", "--data", trained.data.path, "--split", "val", "--json", out,
                env=trained.env)
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert m["model"] == "cnn" and m["split"] == "val" and m["tta"] == "none"
    assert abs(m["accuracy"] - card["metrics"]["fer2013"]["val"]["accuracy"]) <= 0.003
    assert m["n"] == card["metrics"]["fer2013"]["val"]["n"] == sum(trained.data.counts["val"].values())
    assert m["confusion_matrix"] == card["metrics"]["fer2013"]["val"]["confusion_matrix"]
    assert f"accuracy={m['accuracy']:.2%}" in r.stdout and r.stdout.startswith("cnn on fer2013 val\n")


def test_evaluate_with_tta_on_train_uses_the_default_model(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(trained.weights))  # in this process: no interpreter start-up
    monkeypatch.setenv("FER_CACHE_DIR", str(trained.cache))
    out = tmp_path / "train.json"
    assert main(["evaluate", "--data", str(trained.data.path), "--split", "train", "--tta", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["model"] == "cnn" and m["tta"] == "flip" and m["n"] == sum(trained.data.counts["train"].values())
    assert capsys.readouterr().out.startswith("cnn on fer2013 train with flip TTA\n")


def test_evaluate_with_ten_crop_tta(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(trained.weights))
    monkeypatch.setenv("FER_CACHE_DIR", str(trained.cache))
    out = tmp_path / "val.json"
    assert main(["evaluate", "--model", "cnn", "--data", str(trained.data.path), "--tta", "tencrop",
                 "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    model, card = load_model("cnn", trained.weights)
    val = FER2013(trained.data.path).load("val")
    expected = metrics(softmax(predict_logits(model, val.images, tta="tencrop"), card["temperature"]), val.labels)
    assert m["tta"] == "tencrop" and m["accuracy"] == expected["accuracy"]
    assert m["confusion_matrix"] == expected["confusion_matrix"]
    assert capsys.readouterr().out.startswith("cnn on fer2013 val with tencrop TTA\n")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", "cnn", "--tta", "twelvecrop"])
    assert e.value.code == 2 and "invalid choice: 'twelvecrop'" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_cli_missing_split_is_a_short_error(trained, tmp_path):
    r = run_cli("evaluate", "--model", "cnn", "--data", trained.data.path, "--split", "test",
                "--json", tmp_path / "t.json", env=trained.env)
    assert r.returncode == 2
    assert "split 'test' is not in fer2013; it has: train, val" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "t.json").exists()


def test_evaluate_unknown_model_is_a_short_error(trained, monkeypatch, capsys):
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(trained.weights))
    assert main(["evaluate", "--model", "nope", "--data", str(trained.data.path)]) == 2
    assert capsys.readouterr().err == "error: unknown model 'nope'; shipped: cnn\n"


@pytest.mark.slow
def test_evaluate_names_bad_rows_and_files_and_uses_the_rest(trained, tmp_path):
    """A CSV with a malformed row and a folder with a non-image file: evaluate warns with the line or file
    and evaluates every other face."""
    from helpers_data import KAGGLE_COUNTS, make_csv, make_kaggle

    ds, rows = make_csv(tmp_path / "fer2013.csv", counts=KAGGLE_COUNTS, extra_lines=['3,"1 2 3",PublicTest\n'])
    r = run_cli("evaluate", "--model", "cnn", "--data", ds.path, "--split", "val", "--json", tmp_path / "a.json",
                env=trained.env)
    assert r.returncode == 0, r.stderr
    assert f"line {len(rows) + 2}: pixels must hold 2304 values, found 3 (skipped)" in r.stderr
    assert json.loads((tmp_path / "a.json").read_text())["n"] == sum(ds.counts["val"].values())

    folder = make_kaggle(tmp_path / "kaggle", counts=KAGGLE_COUNTS)
    (folder.path / "test" / "sad" / "readme.txt").write_text("not a face")
    r = run_cli("evaluate", "--model", "cnn", "--data", folder.path, "--split", "val", "--json", tmp_path / "b.json",
                env=trained.env)
    assert r.returncode == 0, r.stderr
    assert "test/sad/readme.txt: not an image file (skipped)" in r.stderr
    assert json.loads((tmp_path / "b.json").read_text())["n"] == sum(folder.counts["val"].values())
