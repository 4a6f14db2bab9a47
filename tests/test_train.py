"""`python -m fer_core train`: a smoke run with its exported card, kill-and-resume, and seeded reruns."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fer_core.models import card_schema
from fer_core.training import train
from fer_core.errors import FerError
from fer_core.models.cards import sha256_file
from fer_core.cli import build_parser, main
from fer_core.data.fer2013 import FER2013
from fer_core.data.emotions import EMOTIONS
from fer_core.models.evaluate import predict_logits
from fer_core.models.registry import count_params, create_model
from fer_core.training.mixing import TrainSet
from helpers_data import REPO, cli_env, make_kaggle, run_cli

NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


def _history(run):
    return json.loads((run / "history.json").read_text())


@pytest.mark.slow
def test_smoke_run_writes_checkpoints_history_and_a_full_card(trained):
    assert "training cnn (980,199 params) on cpu" in trained.result.stdout
    assert "epoch 2/2" in trained.result.stdout and "exported" in trained.result.stdout
    history = _history(trained.run)
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert set(NUMBERS) <= h.keys()
        assert 0 < h["train_loss"] < 10 and 0 <= h["val_acc"] <= 1
    assert (trained.run / "last.pt").is_file() and (trained.run / "best.pt").is_file()
    last = torch.load(trained.run / "last.pt", weights_only=True)
    assert last["state"]["epoch"] == 2 and last["state"]["history"] == history
    assert {"model", "opt", "sched"} <= last.keys()

    pt, card_path = trained.weights / "cnn.pt", trained.weights / "cnn.json"
    assert pt.is_file() and card_path.is_file()
    card = json.loads(card_path.read_text())
    assert card["name"] == "cnn" and card["arch"] == "cnn"
    assert card["params"] == count_params(create_model("cnn")) == 980199
    assert card["recipe"].startswith("python -m fer_core train --model cnn --data ")
    assert "--epochs 2" in card["recipe"] and "--resume" not in card["recipe"]
    assert card["history"] == history
    assert card_schema.validate(card) == []
    assert card["datasets"]["fer2013"]["fingerprint"] == FER2013(trained.data.path).fingerprint()
    assert card["datasets"]["fer2013"]["counts"]["train"] == trained.data.counts["train"]
    assert card["hardware"]["device"] == "cpu" and card["hardware"]["torch"] == torch.__version__
    assert abs(card["wall_time_s"] - sum(h["seconds"] for h in history)) <= 0.3
    assert card["sha256"] == sha256_file(pt) and card["size_bytes"] == pt.stat().st_size
    assert card["dtype"] == "float16" and "default" not in card
    assert card["best_epoch"] == max(history, key=lambda h: h["val_acc"])["epoch"]

    val = card["metrics"]["fer2013"]["val"]
    n_val = sum(trained.data.counts["val"].values())
    assert val["n"] == n_val
    assert 0 <= val["accuracy"] <= 1 and 0 <= val["macro_f1"] <= 1 and 0 <= val["ece"] <= 1
    assert list(val["per_class"]) == list(EMOTIONS)
    assert [r["support"] for r in val["per_class"].values()] == list(trained.data.counts["val"].values())
    cm = val["confusion_matrix"]
    assert len(cm) == 7 and all(len(r) == 7 for r in cm) and sum(map(sum, cm)) == n_val
    assert abs(sum(cm[i][i] for i in range(7)) / n_val - val["accuracy"]) < 1e-4
    assert card["metrics"]["fer2013"]["val_tta"]["n"] == n_val
    speed = card["cpu_ms_per_face"]
    assert speed["batch1"]["median"] > 0 and speed["batch16"]["median"] > 0 and speed["threads"] == 1

    # the export holds the best epoch's weights, in fp16
    best = torch.load(trained.run / "best.pt", weights_only=True)
    shipped = torch.load(pt, weights_only=True)
    assert best.keys() == shipped.keys()
    for k, v in best.items():
        if v.is_floating_point():
            assert shipped[k].dtype == torch.float16 and torch.equal(shipped[k], v.half()), k


def test_unknown_model_and_bad_pretrained_are_short_errors(tmp_path, capsys):
    data = make_kaggle(tmp_path / "d", counts={"train": [3] * 7, "val": [1] * 7})
    common = ["--data", str(data.path), "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "run"),
              "--weights-dir", str(tmp_path / "w")]
    assert main(["train", "--model", "cnn9", *common]) == 2
    assert "error: unknown model 'cnn9'; registered: cnn, mini_xception" in capsys.readouterr().err
    assert main(["train", "--model", "cnn", "--pretrained", *common]) == 2
    assert "error: --pretrained: cnn has no ImageNet weights" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_missing_dataset_is_a_short_error(tmp_path):
    r = run_cli("train", "--model", "cnn", "--data", tmp_path / "nope.zip", "--epochs", 1,
                "--out", tmp_path / "run", "--weights-dir", tmp_path / "w")
    assert r.returncode == 2
    assert r.stderr.startswith("error: dataset not found") and "Traceback" not in r.stderr


def _epochs_done(run) -> int:
    try:
        return len(_history(run))
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return 0


def _train_cmd(data, out, epochs, *extra):
    return [sys.executable, "-m", "fer_core", "-v", "train", "--model", "cnn", "--data", str(data),
            "--epochs", str(epochs), "--batch-size", "16", "--threads", "1", "--seed", "3",
            "--out", str(out), "--no-export", *extra]


@pytest.mark.slow
def test_kill_and_resume_continues_from_the_last_checkpoint(tmp_path):
    data = make_kaggle(tmp_path / "d", counts={"train": [40] * 7, "val": [4] * 7}, seed=1)
    env = cli_env()  # this test's FER_CACHE_DIR, which the next line fills
    run = tmp_path / "run"
    FER2013(data.path).load("train")  # decode once here: the runs below read the cache

    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(_train_cmd(data.path, run, 3), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and not _epochs_done(run):
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + (tmp_path / "killed.log").read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    killed_history = _history(run)
    saved = torch.load(run / "last.pt", weights_only=True)["state"]["epoch"]
    assert 1 <= saved < 3 and len(killed_history) in (saved, saved - 1)

    resumed = subprocess.run(_train_cmd(data.path, run, 3, "--resume"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed {run / 'last.pt'} at epoch {saved}" in resumed.stderr
    epochs_run = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs_run == [f"{e}/3" for e in range(saved + 1, 4)]
    history = _history(run)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:len(killed_history)] == killed_history  # the killed run's epochs, carried over as they were

    # and the resumed run ends where an uninterrupted one does
    straight = subprocess.run(_train_cmd(data.path, tmp_path / "straight", 3), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    assert straight.returncode == 0, straight.stderr
    for a, b in zip(history, _history(tmp_path / "straight")):
        for k in NUMBERS:
            assert abs(a[k] - b[k]) <= 1e-4, (a, b)


def _train_in_process(data, out, epochs, *extra):
    """The same `train` command, run in this process (no interpreter start-up): returns the final state."""
    args = build_parser().parse_args(_train_cmd(data, out, epochs, *extra)[4:])
    return train.run(args, [])


def test_resume_without_a_checkpoint_starts_fresh(tmp_path, caplog):
    data = make_kaggle(tmp_path / "d", counts={"train": [5] * 7, "val": [1] * 7})
    with caplog.at_level("INFO", logger="fer_core.training.train"):
        state = _train_in_process(data.path, tmp_path / "run", 1, "--resume")
    assert "resumed" not in caplog.text
    assert state["epoch"] == 1 and [h["epoch"] for h in _history(tmp_path / "run")] == [1]


@pytest.mark.slow
def test_same_seed_same_history(tmp_path):
    data = make_kaggle(tmp_path / "d", counts={"train": [12] * 7, "val": [3] * 7}, seed=2)
    (a,), (b,) = (_train_in_process(data.path, tmp_path / f"run{i}", 1)["history"] for i in range(2))
    for k in NUMBERS:
        assert abs(a[k] - b[k]) <= 1e-4, (k, a, b)
    a_w = torch.load(tmp_path / "run0" / "best.pt", weights_only=True)
    b_w = torch.load(tmp_path / "run1" / "best.pt", weights_only=True)
    assert all(torch.allclose(a_w[k].float(), b_w[k].float(), atol=1e-5) for k in a_w)
    # another seed takes another path
    (c,) = _train_in_process(data.path, tmp_path / "run2", 1, "--seed", "4")["history"]
    assert c["train_loss"] != a["train_loss"]


def test_distillation_loss_follows_its_definition():
    s, t = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([[0.0, 1.5, 0.2]])
    for temperature in (1.0, 2.0, 4.0):
        p_t = torch.softmax(t / temperature, 1)
        expected = (p_t * (p_t.log() - torch.log_softmax(s / temperature, 1))).sum() * temperature ** 2
        targets = train.soft_targets(t, temperature)
        assert torch.allclose(targets, p_t)
        assert torch.isclose(train.distillation_loss(s, targets, temperature), expected, atol=1e-6)
    targets = train.soft_targets(t, 2.0)
    assert train.distillation_loss(t, targets, 2.0).abs() < 1e-6  # a student that agrees with its teacher pays nothing
    assert train.distillation_loss(t + 3.0, targets, 2.0).abs() < 1e-6  # only the distribution counts, not the offset


def _one_epoch(trained, labels, alpha, teacher):
    data = FER2013(trained.data.path)
    images = torch.from_numpy(data.load("train").images)
    torch.manual_seed(0)
    model = create_model("cnn").to(memory_format=torch.channels_last)
    args = build_parser().parse_args(["train", "--model", "cnn", "--batch-size", "16", "--epochs", "1",
                                      "--kd-alpha", str(alpha)])
    opt, sched = train._optimizer_and_schedule(model, args, len(labels) // args.batch_size)
    from fer_core.training.mixing import TrainSet
    run = train.Run(args, model, model, opt, sched, torch.device("cpu"), False, TrainSet(images, labels, len(labels)),
                    {}, None, {}, teacher=teacher)
    loss, _ = train.train_one_epoch(run, 0)
    return loss, model.state_dict()


def test_pure_distillation_learns_from_the_teacher_alone(trained):
    """--kd-alpha 1: the labels carry no weight, so shuffled labels train the very same student;
    at 0.5 they do count."""
    teacher, _ = train.load_teacher("cnn", torch.device("cpu"), trained.weights)
    labels = torch.from_numpy(FER2013(trained.data.path).load("train").labels)
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    assert (shuffled != labels).float().mean() > 0.5
    for alpha, same in ((1.0, True), (0.5, False)):
        (loss_a, w_a), (loss_b, w_b) = (_one_epoch(trained, y, alpha, teacher) for y in (labels, shuffled))
        assert (abs(loss_a - loss_b) < 1e-6) is same, (alpha, loss_a, loss_b)
        assert all(torch.allclose(w_a[k].float(), w_b[k].float(), atol=1e-6) for k in w_a) is same


@pytest.mark.slow
def test_a_distilled_run_names_its_teacher_in_the_card(trained, tmp_path):
    weights = tmp_path / "w"
    weights.mkdir()
    for f in ("cnn.pt", "cnn.json"):
        (weights / f).write_bytes((trained.weights / f).read_bytes())
    args = build_parser().parse_args(["train", "--model", "cnn", "--name", "student", "--data", str(trained.data.path),
                                      "--epochs", "1", "--batch-size", "16", "--threads", "1",
                                      "--out", str(tmp_path / "run"), "--weights-dir", str(weights),
                                      "--teacher", "cnn", "--kd-alpha", "0.6", "--kd-temperature", "3"])
    train.run(args, ["train", "--model", "cnn", "--teacher", "cnn"])
    card = json.loads((weights / "student.json").read_text())
    teacher_card = json.loads((weights / "cnn.json").read_text())
    assert card["distilled_from"] == {"name": "cnn", "sha256": teacher_card["sha256"], "alpha": 0.6,
                                      "temperature": 3.0,
                                      "val_accuracy": teacher_card["metrics"]["fer2013"]["val"]["accuracy"]}
    assert "--teacher cnn" in card["recipe"]


@pytest.mark.slow
def test_cached_teacher_outputs_are_the_teachers_mirror_averaged_logits_kept_for_resume(trained, tmp_path, capsys):
    """--kd-cache: the teacher runs once over the unaugmented training faces (face and mirror), the run
    folder keeps the result, a resumed run reuses it, and the card says how the student was taught."""
    weights = tmp_path / "w"
    weights.mkdir()
    for f in ("cnn.pt", "cnn.json"):
        (weights / f).write_bytes((trained.weights / f).read_bytes())
    run_dir = tmp_path / "run"

    def run(epochs):
        argv = ["train", "--model", "cnn", "--name", "student", "--data", str(trained.data.path),
                "--epochs", str(epochs), "--batch-size", "16", "--threads", "1", "--out", str(run_dir),
                "--weights-dir", str(weights), "--teacher", "cnn", "--kd-cache", "--resume"]
        train.run(build_parser().parse_args(argv), argv)
        return capsys.readouterr().out

    assert "teacher outputs kept in" in run(1)
    cache = torch.load(run_dir / "teacher_logits.pt", weights_only=True)
    teacher, teacher_card = train.load_teacher("cnn", torch.device("cpu"), weights)
    train_faces = FER2013(trained.data.path).load("train").images
    expected = torch.from_numpy(predict_logits(teacher, train_faces, tta="flip"))
    assert cache["logits"].shape == (len(train_faces), len(EMOTIONS))
    assert torch.allclose(cache["logits"], expected, atol=1e-5)
    assert not torch.allclose(cache["logits"], torch.from_numpy(predict_logits(teacher, train_faces)), atol=1e-3)
    assert cache["key"]["sha256"] == teacher_card["sha256"]

    modified = (run_dir / "teacher_logits.pt").stat().st_mtime_ns
    out = run(2)
    assert "epoch 2/2" in out and "teacher outputs kept in" not in out
    assert (run_dir / "teacher_logits.pt").stat().st_mtime_ns == modified
    card = json.loads((weights / "student.json").read_text())
    assert card["distilled_from"]["name"] == "cnn" and "--kd-cache" in card["distilled_from"]["targets"]
    assert "--kd-cache" in card["recipe"] and [h["epoch"] for h in card["history"]] == [1, 2]

    torch.save({"key": {**cache["key"], "sha256": "0" * 64}, "logits": cache["logits"] * 0},
               run_dir / "teacher_logits.pt")  # outputs of other teacher weights are not reused
    assert torch.allclose(train.cached_teacher_logits(teacher, {"name": "cnn", "sha256": teacher_card["sha256"]},
                                                      FER2013(trained.data.path), train_faces, run_dir, "cpu"),
                          expected, atol=1e-5)


def test_cached_targets_follow_the_faces_of_each_batch_and_their_mix():
    logits = torch.randn(10, len(EMOTIONS)) * 3
    idx = torch.tensor([7, 2, 5])
    targets = train._teacher_targets(logits, None, idx, None, 1.0, 2.0, torch.device("cpu"), False)
    assert torch.allclose(targets, torch.softmax(logits[idx] / 2.0, 1))
    partner = torch.tensor([2, 0, 1])
    mixed = train._teacher_targets(logits, None, idx, partner, 0.7, 2.0, torch.device("cpu"), False)
    assert torch.allclose(mixed, 0.7 * targets + 0.3 * targets[partner])
    assert torch.allclose(mixed.sum(1), torch.ones(3))


class _CountingTeacher(torch.nn.Module):
    """A fixed linear teacher that records how many faces it was asked to read."""
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(48 * 48, len(EMOTIONS))
        self.read = 0

    def forward(self, x):
        self.read += len(x)
        return self.head(x.flatten(1))


def _mixed_run(teacher, n_primary=6, n_extra=4):
    """A Run with just what the distillation term reads: FER2013 faces first, then real photos."""
    images = torch.randint(0, 256, (n_primary + n_extra, 48, 48), dtype=torch.uint8)
    labels = torch.randint(0, len(EMOTIONS), (n_primary + n_extra,))
    data = TrainSet(images, labels, n_primary, extra_share=0.4, balance="none")
    args = build_parser().parse_args(["train", "--model", "cnn", "--kd-alpha", "0.7", "--kd-temperature", "2"])
    return train.Run(args=args, model=None, net=None, opt=None, sched=None, device=torch.device("cpu"),
                     amp=False, train=data, vals={}, out=None, state={}, teacher=teacher)


def test_distillation_reads_only_the_fer2013_faces_of_a_mixed_batch():
    """With --extra-data a live teacher reads only the batch's FER2013 faces, and cached outputs (kept for
    FER2013's faces only) are padded so that a batch of both indexes them: real photos get no teacher term."""
    torch.manual_seed(0)
    teacher = _CountingTeacher()
    run = _mixed_run(teacher)
    idx = torch.tensor([0, 7, 3, 9, 5])  # FER2013, photo, FER2013, photo, FER2013
    x = torch.randn(len(idx), 1, 48, 48)
    logits = torch.randn(len(idx), len(EMOTIONS))
    with torch.no_grad():
        kd, weight = train._kd_term(run, logits, x, None, idx, None, 1.0)
        expected = train.distillation_loss(logits, train.soft_targets(teacher.head(x.flatten(1)), 2.0), 2.0, "none")
    fer = torch.tensor([True, False, True, False, True])
    assert teacher.read == 3
    assert torch.allclose(weight, fer.float() * 0.7)
    assert torch.allclose(kd[fer], expected[fer], atol=1e-6) and (kd[~fer] == 0).all() and (kd[fer] > 0).all()

    cached = train._pad_rows(torch.randn(6, len(EMOTIONS)), run.train.n_extra)
    assert cached.shape == (10, len(EMOTIONS)) and (cached[6:] == 0).all()
    run.teacher = cached
    kd, weight = train._kd_term(run, logits, x, None, idx, None, 1.0)
    expected = train.distillation_loss(logits, train.soft_targets(cached[idx], 2.0), 2.0, "none")
    assert torch.allclose(kd[fer], expected[fer], atol=1e-6) and (kd[~fer] == 0).all()


def test_export_last_takes_the_final_epochs_average_and_best_takes_best_pt(tmp_path):
    """--export best writes best.pt; --export last the weights the last epoch evaluated: the SWA average
    once it holds weights, else the EMA, else the trained model."""
    def weights(value):
        return {"w": torch.full((2,), float(value))}
    torch.save(weights(1), tmp_path / "best.pt")
    last = {"model": weights(2), "opt": {}, "sched": {}, "state": {"epoch": 3}}
    torch.save(last, tmp_path / "last.pt")
    assert train._exported_weights(tmp_path, "best")["w"][0] == 1
    assert train._exported_weights(tmp_path, "last")["w"][0] == 2
    torch.save({**last, "ema": {"model": weights(3), "steps": 10}}, tmp_path / "last.pt")
    assert train._exported_weights(tmp_path, "last")["w"][0] == 3
    swa = {"module.w": torch.full((2,), 4.0), "n_averaged": torch.tensor(0)}
    torch.save({**last, "swa": swa}, tmp_path / "last.pt")  # SWA not begun: the model itself
    assert train._exported_weights(tmp_path, "last")["w"][0] == 2
    torch.save({**last, "swa": {**swa, "n_averaged": torch.tensor(2)}}, tmp_path / "last.pt")
    assert list(train._exported_weights(tmp_path, "last")) == ["w"]
    assert train._exported_weights(tmp_path, "last")["w"][0] == 4


def test_pure_distillation_from_cached_outputs_ignores_the_labels(trained):
    """--kd-alpha 1 with cached outputs: shuffled labels train the same student, shuffled outputs do not."""
    teacher, _ = train.load_teacher("cnn", torch.device("cpu"), trained.weights)
    data = FER2013(trained.data.path).load("train")
    cached = torch.from_numpy(predict_logits(teacher, data.images, tta="flip"))
    labels = torch.from_numpy(data.labels)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    loss_a, w_a = _one_epoch(trained, labels, 1.0, cached)
    loss_b, w_b = _one_epoch(trained, labels[perm], 1.0, cached)
    loss_c, w_c = _one_epoch(trained, labels, 1.0, cached[perm])
    assert abs(loss_a - loss_b) < 1e-6 and all(torch.allclose(w_a[k].float(), w_b[k].float(), atol=1e-6) for k in w_a)
    assert abs(loss_a - loss_c) > 1e-4


@pytest.mark.slow
def test_kd_cache_without_a_teacher_is_a_short_error(trained, tmp_path):
    result = run_cli("train", "--model", "cnn", "--data", trained.data.path, "--epochs", 1, "--threads", 1,
                     "--out", tmp_path / "run", "--weights-dir", trained.weights, "--kd-cache", env=trained.env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--kd-cache" in result.stderr and "--teacher" in result.stderr


@pytest.mark.slow
def test_an_unknown_teacher_is_a_short_error(trained, tmp_path):
    result = run_cli("train", "--model", "cnn", "--data", trained.data.path, "--epochs", 1, "--threads", 1,
                     "--out", tmp_path / "run", "--weights-dir", trained.weights, "--teacher", "nope",
                     env=trained.env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "unknown model 'nope'" in result.stderr and "cnn" in result.stderr


@pytest.mark.slow
def test_a_model_over_the_size_limit_is_measured_and_kept_in_its_run_folder(trained, tmp_path, monkeypatch):
    from fer_core.models import cards
    monkeypatch.setattr(cards, "MAX_SHIPPED_BYTES", 100_000)  # the cnn's fp16 file is about 2 MB
    weights, run = tmp_path / "w", tmp_path / "run"
    args = build_parser().parse_args(["train", "--model", "cnn", "--name", "big", "--data", str(trained.data.path),
                                      "--epochs", "1", "--batch-size", "16", "--threads", "1",
                                      "--out", str(run), "--weights-dir", str(weights)])
    train.run(args, ["train", "--model", "cnn", "--name", "big"])
    card = json.loads((weights / "big.json").read_text())
    assert sorted(p.name for p in weights.iterdir()) == ["big.json"]
    assert card["kept_at"] == "run/big.pt" and card["sha256"] == sha256_file(run / "big.pt")
    assert "over the 0.0953674 MiB limit" in card["not_shipped"]
    val = card["metrics"]["fer2013"]["val"]
    assert val["n"] == 7 * 6 and 0 <= val["accuracy"] <= 1 and card["metrics"]["fer2013"]["val_tta"]["n"] == val["n"]
    assert card["temperature"] > 0 and card["cpu_ms_per_face"]["batch1"]["median"] > 0


def test_label_loss_of_a_mixed_batch_weighs_both_labels():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    y, partner = torch.tensor([0, 2]), torch.tensor([1, 0])
    plain = train.label_loss(logits, y, None, 1.0, 0.0)
    assert torch.isclose(plain, torch.nn.functional.cross_entropy(logits, y))
    mixed = train.label_loss(logits, y, partner, 0.3, 0.1)
    ce = torch.nn.functional.cross_entropy
    expected = 0.3 * ce(logits, y, label_smoothing=0.1) + 0.7 * ce(logits, y[partner], label_smoothing=0.1)
    assert torch.isclose(mixed, expected)


@pytest.mark.slow
def test_an_ema_run_keeps_the_average_as_best_and_resumes_on_the_same_path(tmp_path):
    data = make_kaggle(tmp_path / "d", counts={"train": [12] * 7, "val": [3] * 7}, seed=4)
    recipe = ("--ema", "0.9", "--mixup", "0.4", "--cutmix", "1.0")
    one = _train_in_process(data.path, tmp_path / "run", 1, *recipe)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert one["epoch"] == 1 and last["ema"]["steps"] == 84 // 16  # one update per step
    assert all(torch.equal(best[k], v) for k, v in last["ema"]["model"].items())  # val and best.pt: the average
    assert not all(torch.equal(best[k], v) for k, v in last["model"].items())

    resumed = _train_in_process(data.path, tmp_path / "run", 2, *recipe, "--resume")["history"]
    straight = _train_in_process(data.path, tmp_path / "straight", 2, *recipe)["history"]
    plain = _train_in_process(data.path, tmp_path / "plain", 2)["history"]
    for a, b in zip(resumed, straight):
        for k in NUMBERS:
            assert abs(a[k] - b[k]) <= 1e-4, (k, a, b)
    assert plain[0]["train_loss"] != straight[0]["train_loss"]  # mixing changes what is trained on


def test_bad_ema_or_mixing_values_are_short_errors(tmp_path):
    for flag, value in (("--ema", "1"), ("--ema", "-0.1"), ("--mixup", "-1"), ("--cutmix", "-0.2")):
        args = build_parser().parse_args(["train", "--model", "cnn", "--out", str(tmp_path / "run"), flag, value])
        with pytest.raises(FerError, match=r"--ema takes a decay in \[0, 1\)"):
            train.run(args, [])
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_augmentation_options_reach_the_training_batches(tmp_path):
    data = make_kaggle(tmp_path / "d", counts={"train": [12] * 7, "val": [3] * 7}, seed=2)
    (default,) = _train_in_process(data.path, tmp_path / "default", 1)["history"]
    (still,) = _train_in_process(data.path, tmp_path / "still", 1, "--aug-shift", "0", "--aug-zoom", "0")["history"]
    (again,) = _train_in_process(data.path, tmp_path / "again", 1, "--aug-shift", "0", "--aug-zoom", "0")["history"]
    assert still["train_loss"] != default["train_loss"]  # the same seed, other faces
    assert abs(still["train_loss"] - again["train_loss"]) <= 1e-4


def test_bad_augmentation_values_are_short_errors(tmp_path):
    for flag, value in (("--aug-shift", "-2"), ("--aug-zoom", "1"), ("--aug-zoom", "-0.5")):
        args = build_parser().parse_args(["train", "--model", "cnn", "--out", str(tmp_path / "run"), flag, value])
        with pytest.raises(FerError, match=r"--aug-shift takes pixels >= 0, --aug-zoom a share in \[0, 1\)"):
            train.run(args, [])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_an_swa_run_averages_its_last_epochs_at_a_constant_rate_and_resumes_on_the_same_path(tmp_path):
    data = make_kaggle(tmp_path / "d", counts={"train": [12] * 7, "val": [3] * 7}, seed=5)
    run, straight = tmp_path / "run", tmp_path / "straight"
    # with one epoch before the SWA phase in both, the 2-epoch run is the first part of the 3-epoch one
    _train_in_process(data.path, run, 2, "--swa-epochs", "1", "--swa-lr", "0.02")
    after_two = torch.load(run / "last.pt", weights_only=True)
    resumed = _train_in_process(data.path, run, 3, "--swa-epochs", "2", "--swa-lr", "0.02", "--resume")
    _train_in_process(data.path, straight, 3, "--swa-epochs", "2", "--swa-lr", "0.02")
    assert [h["lr"] for h in resumed["history"]][1:] == [0.02, 0.02]
    assert resumed["swa"] == {"epochs": 2, "lr": 0.02, "averaged": 2}
    for a, b in zip(resumed["history"], _history(straight)):
        for k in NUMBERS:
            assert abs(a[k] - b[k]) <= 1e-4, (k, a, b)

    last = torch.load(run / "last.pt", weights_only=True)
    average, two, three = last["swa"], after_two["model"], last["model"]
    assert int(average["n_averaged"]) == 2
    model = create_model("cnn")
    for name, _ in model.named_parameters():  # an equal average of the weights at the end of epochs 2 and 3
        assert torch.allclose(average[f"module.{name}"], (two[name] + three[name]) / 2, atol=1e-6), name
    means = [k for k in three if k.endswith("running_mean")]
    for k in means:  # BatchNorm statistics measured again on the averaged weights, not averaged
        assert not torch.allclose(average[f"module.{k}"], (two[k] + three[k]) / 2, atol=1e-4), k

    # the last val figure is that of the averaged weights
    model.load_state_dict({k.removeprefix("module."): v for k, v in average.items() if k != "n_averaged"})
    val = FER2013(data.path).load("val")
    accuracy = float((predict_logits(model, val.images).argmax(1) == val.labels).mean())
    assert abs(resumed["history"][-1]["val_acc"] - round(accuracy, 4)) < 1e-6


def test_the_schedule_warms_up_decays_to_zero_by_the_swa_epochs_then_holds_the_swa_rate():
    args = build_parser().parse_args(["train", "--model", "cnn", "--epochs", "10", "--swa-epochs", "4",
                                      "--warmup", "2", "--lr", "0.05", "--swa-lr", "0.01"])
    factor = train._lr_lambda(args, steps_per_epoch=10)  # cosine over steps 20..59, SWA from step 60
    assert factor(0) == pytest.approx(1 / 20) and factor(19) == pytest.approx(1.0)
    assert factor(40) == pytest.approx(0.5, abs=0.02) and factor(59) < 0.01
    assert [factor(s) for s in (60, 75, 99, 150)] == [pytest.approx(0.2)] * 4
    args.swa_lr = None
    assert train._lr_lambda(args, 10)(60) == pytest.approx(0.2)  # default: a fifth of the peak
    args.swa_epochs = 10
    assert train._lr_lambda(args, 10)(0) == pytest.approx(0.2)  # all SWA: the constant rate from the start


def test_bad_swa_values_are_short_errors(tmp_path):
    cases = ((("--swa-epochs", "4"), "--swa-epochs takes 0 to --epochs"),
             (("--swa-epochs", "-1"), "--swa-epochs takes 0 to --epochs"),
             (("--swa-epochs", "1", "--swa-lr", "0"), "--swa-lr a rate > 0"),
             (("--swa-epochs", "1", "--ema", "0.9"), "both average the weights"))
    for extra, message in cases:
        args = build_parser().parse_args(["train", "--model", "cnn", "--epochs", "3", "--out", str(tmp_path / "run"),
                                          *extra])
        with pytest.raises(FerError, match=message):
            train.run(args, [])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_init_starts_from_a_shipped_models_weights_and_names_it_in_the_card(trained, tmp_path):
    shipped = json.loads((trained.weights / "cnn.json").read_text())
    start = torch.load(trained.weights / "cnn.pt", weights_only=True)
    extra = ("--weights-dir", str(trained.weights), "--lr", "1e-9", "--warmup", "0")
    state = _train_in_process(trained.data.path, tmp_path / "run", 1, "--init", "cnn", *extra)
    assert state["init"] == {"name": "cnn", "sha256": shipped["sha256"],
                             "val_accuracy": shipped["metrics"]["fer2013"]["val"]["accuracy"]}
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    _train_in_process(trained.data.path, tmp_path / "fresh", 1, *extra)
    fresh = torch.load(tmp_path / "fresh" / "last.pt", weights_only=True)["model"]
    weights = [k for k in after if k.endswith(".weight")]
    assert all(torch.allclose(after[k], start[k].float(), atol=2e-3) for k in weights)  # fp16 file, tiny steps
    assert not all(torch.allclose(fresh[k], start[k].float(), atol=2e-3) for k in weights)


@pytest.mark.slow
def test_init_from_another_architecture_or_an_unknown_model_is_a_short_error(trained, tmp_path):
    cases = (("mini_xception", "cnn", "--init cnn is a cnn, which mini_xception cannot start from"),
             ("cnn", "nope", "unknown model 'nope'"))
    for model, init, message in cases:
        result = run_cli("train", "--model", model, "--data", trained.data.path, "--epochs", 1, "--threads", 1,
                         "--out", tmp_path / "run", "--weights-dir", trained.weights, "--init", init, env=trained.env)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert message in result.stderr
