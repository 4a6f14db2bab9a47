"""Ensembles as first-class models: built by `python -m fer_core ensemble`, loaded by EmotionRecognizer,
combined as the mean of calibrated member probabilities, and refused when a member's weights change."""
import json
import shutil

import numpy as np
import pytest
import torch

from fer_core import EmotionRecognizer
from fer_core.models import card_schema
from fer_core.models.cards import load_model, save_weights, write_card
from fer_core.data.fer2013 import FER2013
from fer_core.errors import WeightsError
from fer_core.models.evaluate import predict_logits, softmax
from fer_core.models.registry import count_params, create_model
from helpers_cards import v2_card
from helpers_data import run_cli


def _second_member(weights, seed=0, temperature=1.7):
    torch.manual_seed(seed)
    save_weights(create_model("mini_xception").eval(), v2_card("mx", "mini_xception"))
    card = json.loads((weights / "mx.json").read_text())
    write_card({**card, "temperature": temperature}, weights)


@pytest.fixture
def members(trained, tmp_path, monkeypatch):
    """A weights folder with the trained cnn and an untrained mini_xception 'mx' (temperature 1.7)."""
    weights = tmp_path / "w"
    shutil.copytree(trained.weights, weights)
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(weights))
    _second_member(weights)
    return weights, {**trained.env, "FER_WEIGHTS_DIR": str(weights)}


@pytest.mark.slow
def test_build_load_and_combine(trained, members):
    weights, env = members
    result = run_cli("ensemble", "--members", "cnn", "mx", "--data", trained.data.path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    card = json.loads((weights / "ensemble.json").read_text())
    assert card["arch"] == "ensemble" and [m["name"] for m in card["members"]] == ["cnn", "mx"]
    assert card["members"][0]["sha256"] == json.loads((weights / "cnn.json").read_text())["sha256"]
    assert "mean" in card["combine"] and card["recipe"].startswith("python -m fer_core ensemble --members cnn mx")
    assert card["params"] == count_params(create_model("cnn")) + count_params(create_model("mini_xception"))
    assert card["metrics"]["fer2013"]["val"]["n"] == card["calibration"]["n"] == 42
    assert f"fer2013 val {card['metrics']['fer2013']['val']['accuracy']:.2%}" in result.stdout
    assert card_schema.validate(card) == [] and "fer2013" in card["datasets"]

    rec = EmotionRecognizer(model="ensemble", detector="haar")
    faces = FER2013(trained.data.path).load("val").images[:12]
    cnn, cnn_card = load_model("cnn")
    mx, _ = load_model("mx")
    mean = (softmax(predict_logits(cnn, faces), cnn_card["temperature"]) + softmax(predict_logits(mx, faces), 1.7)) / 2
    expected = softmax(np.log(mean), card["temperature"])
    np.testing.assert_allclose(rec.classify(faces), expected, atol=1e-5)
    assert rec.name == "ensemble"


@pytest.mark.slow
def test_a_member_with_other_weights_is_refused(trained, members):
    weights, env = members
    assert run_cli("ensemble", "--members", "cnn", "mx", "--data", trained.data.path, env=env,
                   timeout=300).returncode == 0
    _second_member(weights, seed=1)  # mx retrained after the ensemble was measured
    with pytest.raises(WeightsError, match="member 'mx' has other weights"):
        load_model("ensemble")


@pytest.mark.slow
def test_bad_member_lists_are_clear_errors(trained, members):
    _, env = members
    one = run_cli("ensemble", "--members", "cnn", "cnn", "--data", trained.data.path, env=env)
    assert one.returncode == 2 and "at least two different" in one.stderr
    unknown = run_cli("ensemble", "--members", "cnn", "nope", "--data", trained.data.path, env=env)
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr
    assert "Traceback" not in one.stderr + unknown.stderr
