"""Mixing a real-photo set into FER2013's epochs (fer_core/training/mixing.py), and `train --extra-data` end to end."""
import json

import numpy as np
import pytest
import torch

from fer_core.data.fer2013 import Split
from fer_core.data.emotions import EMOTIONS
from fer_core.errors import FerError
from fer_core.training.mixing import TrainSet
from helpers_data import cli_env, make_kaggle, run_cli
from test_photos import make_folder_set


def _split(counts, offset=0):
    labels = np.concatenate([np.full(n, i) for i, n in enumerate(counts)]).astype(np.int64)
    images = np.full((len(labels), 48, 48), offset, np.uint8)
    return Split(images, labels, np.asarray([f"f{i}" for i in range(len(labels))]))


PRIMARY = _split([100, 10, 100, 180, 120, 80, 124])  # 714 faces
EXTRA = _split([16, 1, 1, 400, 9, 25, 500], offset=1)  # 95% happy or neutral, like the shared photo set


def test_without_extra_data_an_epoch_is_fer2013_once():
    data = TrainSet.build(PRIMARY)
    order = data.epoch_order(torch.Generator().manual_seed(0))
    assert data.epoch_size() == 714 and sorted(order.tolist()) == list(range(714))


def test_extra_share_of_each_epoch_and_sqrt_balanced_classes():
    data = TrainSet.build(PRIMARY, EXTRA, extra_share=0.25, balance="sqrt")
    assert data.epoch_size() == 952  # 714 / 0.75
    order = data.epoch_order(torch.Generator().manual_seed(1))
    extra = order[data.from_extra(order)]
    assert len(order) == 952 and len(extra) == 238
    assert sorted(order[~data.from_extra(order)].tolist()) == list(range(714))  # every FER2013 face once
    want = np.sqrt([16, 1, 1, 400, 9, 25, 500])
    want = dict(zip(EMOTIONS, want / want.sum()))
    assert data.drawn_share() == pytest.approx(want, abs=1e-3)
    assert data.drawn_share()["happy"] + data.drawn_share()["neutral"] < 0.8  # instead of 0.95
    many = torch.cat([data.epoch_order(torch.Generator().manual_seed(s)) for s in range(40)])
    drawn = data.labels[many[data.from_extra(many)]]
    share = torch.bincount(drawn, minlength=7).double() / len(drawn)
    assert share.numpy() == pytest.approx(np.array(list(want.values())), abs=0.02)


def test_natural_balance_and_seeded_order():
    data = TrainSet.build(PRIMARY, EXTRA, extra_share=0.5, balance="none")
    assert data.drawn_share()["neutral"] == pytest.approx(500 / 952, abs=1e-3)
    a, b = (data.epoch_order(torch.Generator().manual_seed(7)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, data.epoch_order(torch.Generator().manual_seed(8)))


def test_bad_mixing_options_raise():
    with pytest.raises(FerError, match="balance"):
        TrainSet.build(PRIMARY, EXTRA, 0.25, balance="cube")
    with pytest.raises(FerError, match=r"\(0, 1\)"):
        TrainSet.build(PRIMARY, EXTRA, 1.0)


@pytest.mark.slow
def test_train_with_extra_data_reports_both_val_sets_and_writes_them_in_the_card(tmp_path):
    """A 2-epoch cnn run on tiny FER2013 plus a photo set made from a real portrait, with every capture
    augmentation on: history, card metrics and fingerprints cover both datasets."""
    fer = make_kaggle(tmp_path / "fer2013", counts={"train": [12] * 7, "val": [4] * 7}, seed=5)
    photo_set = make_folder_set(tmp_path / "set")
    env = cli_env(FER_CACHE_DIR=tmp_path / "cache", FER_WEIGHTS_DIR=tmp_path / "w", FER_YUNET_MODEL="",
                  FER_OFFLINE="1")
    result = run_cli("train", "--model", "cnn", "--data", fer.path, "--extra-data", photo_set, "--extra-share", 0.3,
                     "--epochs", 2, "--batch-size", 16, "--threads", 1, "--out", tmp_path / "run",
                     "--weights-dir", tmp_path / "w", "--aug-rotate", 25, *sum(
                         ([f"--aug-{k}", "0.3"] for k in ("blur", "lowres", "jpeg", "light", "noise", "occlude")), []),
                     env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train 84 + 36 drawn from" in result.stdout
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [set(h) >= {"val_acc", "set_val_acc"} for h in history] == [True, True]
    card = json.loads((tmp_path / "w" / "cnn.json").read_text())
    assert set(card["metrics"]) == {"fer2013", "set"} and set(card["datasets"]) == {"fer2013", "set"}
    assert card["metrics"]["set"]["val"]["n"] == 2 and card["metrics"]["set"]["val"]["no_face"] == 1
    assert card["datasets"]["set"]["no_face"] == {"val": 1}
    assert card["extra_data"]["source"] == "set" and card["extra_data"]["share"] == 0.3
    assert card["augment"]["rotate"] == 25 and set(card["augment"]["capture"]) == {
        "blur", "lowres", "jpeg", "light", "noise", "occlude"}
    assert str(tmp_path) not in json.dumps(card)


def test_train_refuses_photos_as_the_main_data_and_bad_shares(tmp_path):
    photo_set = make_folder_set(tmp_path / "wild")
    env = cli_env(FER_CACHE_DIR=tmp_path / "cache", FER_WEIGHTS_DIR=tmp_path / "w", FER_YUNET_MODEL="",
                  FER_OFFLINE="1")
    result = run_cli("train", "--model", "cnn", "--data", photo_set, "--epochs", 1, env=env)
    assert result.returncode == 2 and "pass it as --extra-data" in result.stderr
    result = run_cli("train", "--model", "cnn", "--data", photo_set, "--extra-data", photo_set, "--extra-share", 1.5,
                     env=env)
    assert result.returncode == 2 and "--extra-share" in result.stderr
    result = run_cli("train", "--model", "cnn", "--data", photo_set, "--aug-jpeg", 2, env=env)
    assert result.returncode == 2 and "--aug-jpeg" in result.stderr
    assert not (tmp_path / "w").exists()
