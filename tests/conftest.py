"""Shared fixtures: small FER2013-like datasets in every public layout, a private dataset cache and
weights folder per test, and one CPU thread (the suite runs beside training jobs on small machines)."""
from collections import namedtuple

import pytest
import torch

from helpers_data import cli_env, make_csv, make_kaggle, make_unprefixed, run_cli, zip_folder

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    """One CPU thread for every test, even after a test (an in-process training run) changed it."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty FER_CACHE_DIR, so no test reads or writes ~/.cache."""
    path = tmp_path_factory.mktemp("fer_cache")
    monkeypatch.setenv("FER_CACHE_DIR", str(path))
    return path


@pytest.fixture
def cache_dir(_private_cache):
    return _private_cache


@pytest.fixture
def real_cache(tmp_path_factory, monkeypatch):
    """One FER_CACHE_DIR shared by the tests on the real FER2013 (env FER2013_PATH): it decodes once per session."""
    path = tmp_path_factory.getbasetemp() / "fer_cache_real"
    path.mkdir(exist_ok=True)
    monkeypatch.setenv("FER_CACHE_DIR", str(path))
    return path


@pytest.fixture
def weights_dir(tmp_path_factory, monkeypatch):
    """An empty weights folder that fer_core.models.cards uses by default (env FER_WEIGHTS_DIR) in this test."""
    path = tmp_path_factory.mktemp("weights")
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(path))
    return path


@pytest.fixture
def kaggle_folder(tmp_path):
    """(a) The Kaggle image layout: train/<emotion>/Training_N.jpg, test/<emotion>/{PublicTest,PrivateTest}_N.jpg."""
    return make_kaggle(tmp_path / "fer2013")


@pytest.fixture
def kaggle_zip(tmp_path, kaggle_folder):
    """(b) The same layout zipped with paths from the archive's root (train/angry/...)."""
    return kaggle_folder._replace(path=zip_folder(kaggle_folder.path, tmp_path / "fer2013.zip"))


@pytest.fixture
def kaggle_zip_prefixed(tmp_path, kaggle_folder):
    """(b') Zipped below a top-level folder: fer2013/train/angry/..."""
    return kaggle_folder._replace(path=zip_folder(kaggle_folder.path, tmp_path / "archive.zip", prefix="fer2013/"))


@pytest.fixture
def fer_csv(tmp_path):
    """(c) fer2013.csv with emotion,pixels,Usage (Training/PublicTest/PrivateTest)."""
    dataset, _rows = make_csv(tmp_path / "fer2013.csv")
    return dataset


@pytest.fixture
def unprefixed_folder(tmp_path):
    """(d) train/<emotion>/imgN.png + test/<emotion>/imgN.png: splits from the folders only."""
    return make_unprefixed(tmp_path / "plain")


Trained = namedtuple("Trained", "data run weights cache env result")
TRAINED_COUNTS = {"train": [24] * 7, "val": [6] * 7}  # no PrivateTest files: the dataset has no test split


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One 2-epoch `python -m fer_core train --model cnn` run on a tiny dataset, exported to its own weights
    folder; shared by the training, evaluation and card tests (about 10 s on one thread)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_kaggle(root / "fer2013", counts=TRAINED_COUNTS, seed=3)
    env = cli_env(FER_CACHE_DIR=root / "cache", FER_WEIGHTS_DIR=root / "w")
    result = run_cli("train", "--model", "cnn", "--data", data.path, "--epochs", 2, "--batch-size", 16,
                     "--threads", 1, "--out", root / "run", "--weights-dir", root / "w", env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return Trained(data, root / "run", root / "w", root / "cache", env, result)
