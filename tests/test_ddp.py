"""Training through PyTorch's torchrun (DDP): 2 CPU processes on the gloo backend, a tiny dataset."""
import json
import subprocess
import sys

import pytest
import torch

from fer_core.models.registry import create_model
from helpers_data import REPO, cli_env, make_kaggle

pytestmark = [pytest.mark.slow,  # two torchrun trainings: about 80 s on 2 cores
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="this torch build has no gloo backend")]


def _torchrun(*args, env, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "fer_core", "train", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_process_training_learns_checkpoints_once_and_resumes(tmp_path):
    data = make_kaggle(tmp_path / "fer", counts={"train": [32] * 7, "val": [8] * 7}, seed=5)
    env = cli_env(FER_CACHE_DIR=tmp_path / "cache")
    run, weights = tmp_path / "run", tmp_path / "w"
    common = ["--model", "cnn", "--data", data.path, "--batch-size", 32, "--threads", 1, "--device", "cpu",
              "--lr", 0.02, "--warmup", 0, "--out", run, "--weights-dir", weights]

    first = _torchrun(*common, "--epochs", 3, "--no-export", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "; 2 processes" in first.stdout
    assert first.stdout.count("training cnn") == 1  # rank 0 alone reports
    assert [line.split()[1] for line in first.stdout.splitlines() if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "history.json", "last.pt"]  # no temp files left
    assert torch.load(run / "last.pt", weights_only=True)["state"]["epoch"] == 3

    resumed = _torchrun(*common, "--epochs", 4, "--resume", "--ema", 0.9, env=env)  # averaging from epoch 4 on
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    history2 = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history2] == [1, 2, 3, 4]
    assert history2[:3] == history  # the finished epochs were kept, not retrained
    ema = torch.load(run / "last.pt", weights_only=True)["ema"]
    assert ema["steps"] == 224 // 32  # one update per global step of the one averaged epoch
    assert ema["model"].keys() == create_model("cnn").state_dict().keys()  # the model inside DDP, no "module."
    best = torch.load(run / "best.pt", weights_only=True)
    if history2[3]["val_acc"] > max(h["val_acc"] for h in history):  # epoch 4's average became best.pt
        assert all(torch.equal(best[k], v) for k, v in ema["model"].items())
    assert resumed.stdout.count("exported") == 1
    card = json.loads((weights / "cnn.json").read_text())
    assert card["history"] == history2 and next(iter(card["metrics"].values()))["val"]["n"] == 56
    assert "--epochs 4" in card["recipe"]  # the card keeps the command that set the first three epochs too
    assert [(e["until_epoch"], "--epochs 3" in e["recipe"]) for e in card["earlier_recipes"]] == [(3, True)]


def test_two_process_training_with_swa_averages_on_rank_0_and_exports_the_average(tmp_path):
    data = make_kaggle(tmp_path / "fer", counts={"train": [32] * 7, "val": [8] * 7}, seed=6)
    env = cli_env(FER_CACHE_DIR=tmp_path / "cache")
    run, weights = tmp_path / "run", tmp_path / "w"
    result = _torchrun("--model", "cnn", "--data", data.path, "--batch-size", 32, "--threads", 1, "--device", "cpu",
                       "--epochs", 3, "--swa-epochs", 2, "--swa-lr", 0.01, "--out", run, "--weights-dir", weights,
                       env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("exported") == 1
    swa = torch.load(run / "last.pt", weights_only=True)["swa"]
    assert int(swa["n_averaged"]) == 2
    assert {k.removeprefix("module.") for k in swa if k != "n_averaged"} == create_model("cnn").state_dict().keys()
    card = json.loads((weights / "cnn.json").read_text())
    assert card["swa"] == {"epochs": 2, "lr": 0.01, "averaged": 2}
    assert [h["lr"] for h in card["history"]][1:] == [0.01, 0.01]
