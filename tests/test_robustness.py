"""The robustness benchmark (fer_core/models/robustness.py and `python -m fer_core robustness`)."""
import json

import numpy as np
import pytest
import torch

from fer_core.models import card_schema, robustness
from helpers_data import cli_env, face_image, run_cli
from test_photos import make_folder_set


def _faces(n=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    return np.stack([face_image(int(k), rng) for k in labels]), labels


@pytest.mark.parametrize("kind", list(robustness.SEVERITIES))
def test_every_corruption_is_deterministic_and_hurts_more_as_it_gets_stronger(kind):
    faces, _ = _faces()
    damage = []
    for s in robustness.SEVERITIES[kind]:
        out = robustness.corrupt(faces, kind, s)
        assert out.shape == faces.shape and out.dtype == np.uint8
        assert np.array_equal(out, robustness.corrupt(faces, kind, s))  # the same faces for every model
        damage.append(np.abs(out.astype(float) - faces).mean())
    assert 0 < damage[0] < damage[1] < damage[2]


def test_rotation_turns_faces_both_ways_and_framing_zooms():
    bar = np.full((2, 48, 48), 50, np.uint8)
    bar[:, 23:25, 4:44] = 250
    turned = robustness.corrupt(bar, "rotation", 30.0)
    assert not np.array_equal(turned[0], turned[1])
    assert np.abs(turned[0][:, ::-1].astype(int) - turned[1]).mean() < 3  # +30 degrees mirrored is -30
    tight = robustness.corrupt(bar, "tighter", 1.5)
    loose = robustness.corrupt(bar, "looser", 0.55)
    assert (tight[0, 24] > 150).sum() > 44  # the bar now runs off both sides
    assert (loose[0, 24] > 150).sum() < 26  # the bar shrank to about half


class _MeanBrightness(torch.nn.Module):
    """A 'model' that calls a face happy when it is bright and sad when it is dark."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        logits = torch.zeros(len(x), 7)
        logits[:, 3], logits[:, 4] = m, -m
        return logits


def test_run_reports_each_severity_and_their_mean():
    bright = np.full((20, 48, 48), 200, np.uint8)
    bright[10:] = 40
    labels = np.array([3] * 10 + [4] * 10)
    split = type("S", (), {"images": bright, "labels": labels})
    seen = []
    result = robustness.run(_MeanBrightness(), split, progress=lambda kind, accs: seen.append(kind))
    assert result["clean"] == 1.0 and seen == list(robustness.SEVERITIES)
    assert result["corruptions"]["dark"][2] == 0.5  # at gamma 3 the bright faces read dark too
    assert result["corruptions"]["blur"] == [1.0, 1.0, 1.0]  # a flat face has nothing to blur
    everything = [a for accs in result["corruptions"].values() for a in accs]
    assert result["mean"] == pytest.approx(np.mean(everything), abs=1e-4) and len(everything) == 27
    text = robustness.format_results({"toy": result})
    assert "dark" in text and "mean" in text.splitlines()[-1]


@pytest.mark.slow
def test_cli_prints_the_table_and_writes_it_into_the_card(tmp_path, kaggle_zip):
    from helpers_images import make_tiny_weights
    make_tiny_weights(tmp_path / "w")
    env = cli_env(FER_CACHE_DIR=tmp_path / "cache", FER_WEIGHTS_DIR=tmp_path / "w")
    result = run_cli("robustness", "--model", "tiny", "--data", kaggle_zip.path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert all(k in result.stdout for k in robustness.SEVERITIES)
    card = json.loads((tmp_path / "w" / "tiny.json").read_text())
    r = card["robustness"]
    assert card_schema.validate(card) == []
    assert r["dataset"] == "fer2013" and len(r["corruptions"]) == 9 and 0 <= r["mean"] <= 1
    assert r["severities"]["jpeg"] == [30, 15, 8]
    result = run_cli("robustness", "--model", "tiny", "--data", make_folder_set(tmp_path / "photos"), env=env)
    assert result.returncode == 2 and "photo set" in result.stderr
