"""Temperature scaling: the fit recovers a known temperature, lowers NLL and ECE, never moves the arg-max,
is stored by training and `calibrate`, and is applied by EmotionRecognizer."""
import json
import shutil

import numpy as np
import pytest

from fer_core import EmotionRecognizer
from fer_core.models.calibrate import calibration, fit_temperature, nll
from fer_core.data.fer2013 import FER2013
from fer_core.models.evaluate import predict_logits, softmax
from helpers_data import run_cli


def _sampled(true_t, n=4000, k=7, seed=0):
    """Logits whose labels are drawn from softmax(logits / true_t): perfectly calibrated at true_t."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, k)).astype(np.float32)
    p = softmax(logits, true_t)
    labels = np.array([rng.choice(k, p=row / row.sum()) for row in p])
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_that_generated_the_labels(true_t):
    logits, labels = _sampled(true_t)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.1)


def test_overconfident_logits_get_t_above_one_and_better_scores():
    logits, labels = _sampled(2.0, seed=1)
    c = calibration(logits, labels)
    assert c["temperature"] > 1.5
    assert c["nll_after"] < c["nll_before"] and c["ece_after"] < c["ece_before"]
    assert c["n"] == len(labels) and c["split"] == "val"
    assert sum(row[2] for row in c["reliability_after"]) == len(labels)
    assert (softmax(logits, c["temperature"]).argmax(1) == logits.argmax(1)).all()


def test_fitted_t_is_the_nll_minimum():
    logits, labels = _sampled(1.5, seed=2)
    t = fit_temperature(logits, labels)
    assert nll(logits, labels, t) <= min(nll(logits, labels, t * 0.9), nll(logits, labels, t * 1.1))


def test_empty_split_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        fit_temperature(np.zeros((0, 7)), np.zeros(0, int))


def test_export_stores_the_temperature_and_the_recognizer_applies_it(trained):
    card = json.loads((trained.weights / "cnn.json").read_text())
    c = card["calibration"]
    assert card["temperature"] == c["temperature"] > 0
    assert c["split"] == "val" and c["n"] == card["metrics"]["fer2013"]["val"]["n"]
    assert c["nll_after"] <= c["nll_before"] + 1e-4
    assert c["ece_before"] == card["metrics"]["fer2013"]["val"]["ece"]

    rec = EmotionRecognizer(model="cnn", detector="haar", weights_dir=trained.weights)
    faces = FER2013(trained.data.path).load("val").images[:10]
    expected = softmax(predict_logits(rec.model, faces), card["temperature"])
    np.testing.assert_allclose(rec.classify(faces), expected, atol=1e-5)


@pytest.mark.slow
def test_calibrate_command_refits_a_shipped_card(trained, tmp_path):
    weights = tmp_path / "w"
    shutil.copytree(trained.weights, weights)
    card_path = weights / "cnn.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({k: v for k, v in card.items() if k not in ("temperature", "calibration")}))
    env = {**trained.env, "FER_WEIGHTS_DIR": str(weights)}
    result = run_cli("calibrate", "--model", "cnn", "--data", trained.data.path, env=env)
    assert result.returncode == 0, result.stderr
    refit = json.loads(card_path.read_text())
    assert refit["temperature"] == pytest.approx(card["temperature"], rel=1e-3)
    assert f"temperature {refit['temperature']:.3f}" in result.stdout
    assert refit["sha256"] == card["sha256"]  # the weights themselves are untouched
