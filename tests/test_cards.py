"""Model cards and weights: fp16 round trip, sha256 checks before unpickling, defaults, `models --json`,
and the weights shipped in the repository."""
import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest
import torch

from fer_core.models import card_schema, cards
from fer_core.models.cards import (REPO_WEIGHTS, find_card, load_model, read_cards, save_weights, set_default,
                                   sha256_file, write_card)
from fer_core.cli import main
from fer_core.errors import WeightsError
from fer_core.models.evaluate import metrics, predict_logits, softmax
from fer_core.models.registry import create_model, list_models
from helpers_cards import v2_card
from helpers_data import run_cli

MAX_SHIPPED_BYTES = 16 * 1024 * 1024


def _model(seed=0):
    """A mini_xception with non-default BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    m = create_model("mini_xception")
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, 1, 48, 48) * 2 + 0.5)
    return m.eval()


def _faces(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


@pytest.fixture
def shipped(weights_dir):
    """weights_dir holding one exported model 'tiny' (mini_xception); returns (model, card path, .pt path)."""
    model = _model()
    card_path = save_weights(model, v2_card("tiny", "mini_xception", accuracy=0.5))
    return model, card_path, weights_dir / "tiny.pt"


def test_round_trip_in_fp16(shipped, weights_dir, tmp_path):
    model, card_path, pt = shipped
    assert card_path == weights_dir / "tiny.json" and pt.is_file()
    state = torch.load(pt, weights_only=True)
    assert state.keys() == model.state_dict().keys()
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert any(v.dtype == torch.int64 for v in state.values())  # BatchNorm's counters keep their type
    card = json.loads(card_path.read_text())
    assert card["sha256"] == hashlib.sha256(pt.read_bytes()).hexdigest() == sha256_file(pt)
    assert card["size_bytes"] == pt.stat().st_size and card["weights_file"] == "tiny.pt"
    assert card["dtype"] == "float16" and card["metrics"] == {"fer2013": {"val": {"accuracy": 0.5}}}
    assert card_schema.validate(card) == []

    loaded, loaded_card = load_model("tiny")
    assert loaded_card == card and not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    faces = _faces()
    want, got = softmax(predict_logits(model, faces)), softmax(predict_logits(loaded, faces))
    assert np.abs(want - got).max() < 1e-2
    assert (want.argmax(1) == got.argmax(1)).mean() >= 5 / 6
    # the file is much smaller than the fp32 state dict saved the same way
    torch.save(model.state_dict(), tmp_path / "fp32.pt")
    assert pt.stat().st_size < 0.75 * (tmp_path / "fp32.pt").stat().st_size


def test_saving_again_replaces_both_files_atomically(shipped, weights_dir):
    _, card_path, pt = shipped
    save_weights(_model(seed=1), v2_card("tiny", "mini_xception"))
    card = json.loads(card_path.read_text())
    assert card["sha256"] == sha256_file(pt)
    assert sorted(p.name for p in weights_dir.iterdir()) == ["tiny.json", "tiny.pt"]  # no temporary files left
    load_model("tiny")


def test_a_flipped_byte_is_refused_before_unpickling(shipped, monkeypatch):
    _, _, pt = shipped
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0x01
    pt.write_bytes(bytes(data))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("unpickled a file whose sha256 is wrong"))
    with pytest.raises(WeightsError, match=f"{pt}.*does not match the sha256 in tiny.json"):
        load_model("tiny")


def test_a_truncated_file_is_refused(shipped):
    _, card_path, pt = shipped
    pt.write_bytes(pt.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=f"{pt} does not match the sha256"):
        load_model("tiny")
    # even when the card is made to agree with it, it cannot load
    card = json.loads(card_path.read_text())
    write_card({**card, "sha256": sha256_file(pt)})
    with pytest.raises(WeightsError, match=f"{pt} could not be loaded as mini_xception"):
        load_model("tiny")


def test_an_edited_card_sha256_is_refused(shipped):
    _, card_path, _ = shipped
    card = json.loads(card_path.read_text())
    write_card({**card, "sha256": "0" * 64})
    with pytest.raises(WeightsError, match="does not match the sha256 in tiny.json"):
        load_model("tiny")
    write_card({k: v for k, v in card.items() if k != "sha256"})
    with pytest.raises(WeightsError, match="does not match the sha256"):
        load_model("tiny")


def test_a_missing_weights_file(shipped):
    _, _, pt = shipped
    pt.unlink()
    with pytest.raises(WeightsError, match=f"{pt} is missing \\(named by the card tiny.json\\)"):
        load_model("tiny")


def test_weights_of_another_architecture_are_refused(shipped):
    _, card_path, _ = shipped
    write_card({**json.loads(card_path.read_text()), "arch": "cnn"})
    with pytest.raises(WeightsError, match="could not be loaded as cnn"):
        load_model("tiny")


class NotWeights:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_pickle_with_code_is_never_executed(weights_dir):
    pt = weights_dir / "evil.pt"
    torch.save({"x": NotWeights()}, pt)
    write_card(v2_card("evil", weights_file="evil.pt", sha256=sha256_file(pt)))
    with pytest.raises(WeightsError, match="evil.pt could not be loaded as cnn"):
        load_model("evil")


def test_unreadable_cards_are_skipped(shipped, weights_dir, caplog):
    (weights_dir / "broken.json").write_text("{not json")
    (weights_dir / "list.json").write_text("[1, 2]")
    (weights_dir / "noarch.json").write_text('{"name": "noarch"}')
    write_card(v2_card("alpha"))
    (weights_dir / "invalid.json").write_text(json.dumps({**v2_card("invalid"), "metrics": {"fer2013": {"val": {}}}}))
    assert [c["name"] for c in read_cards()] == ["alpha", "tiny"]
    assert "invalid.json" in caplog.text and "metrics['fer2013']['val'] has no accuracy" in caplog.text
    assert "broken.json" in caplog.text and "noarch.json" in caplog.text and "lacks 'name' or 'arch'" in caplog.text
    assert read_cards(weights_dir / "absent") == []


def test_find_card_picks_the_default_else_the_best(weights_dir):
    with pytest.raises(WeightsError, match=f"no shipped models: {weights_dir} holds no model cards"):
        find_card()
    write_card(v2_card("a", accuracy=0.61))
    write_card(v2_card("b", accuracy=0.66))
    write_card(v2_card("c"))
    assert find_card()["name"] == "b"
    set_default("a")
    assert find_card()["name"] == "a" and find_card("c")["name"] == "c"
    with pytest.raises(WeightsError, match="unknown model 'd'; shipped: a, b, c"):
        find_card("d")


def test_set_default_names_one_model_in_the_default_file_and_leaves_the_cards_alone(weights_dir):
    for name in "abc":
        write_card(v2_card(name, params=5))
    before = {p.name: p.read_text() for p in weights_dir.glob("*.json")}
    assert cards.default_name() is None
    set_default("c")
    assert (weights_dir / "DEFAULT").read_text() == "c\n" and cards.default_name() == "c"
    set_default("a")
    assert cards.default_name() == "a"
    with pytest.raises(WeightsError, match="unknown model 'zz'"):
        set_default("zz")
    assert cards.default_name() == "a"
    assert {p.name: p.read_text() for p in weights_dir.glob("*.json")} == before  # no card changes


def test_default_cli(weights_dir, capsys):
    write_card(v2_card("a"))
    write_card(v2_card("b"))
    set_default("a")
    assert main(["default", "b"]) == 0
    assert "b is now the default model" in capsys.readouterr().out
    assert cards.default_name() == "b"
    assert main(["default", "nope"]) == 2
    assert "error: unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_models_json_lists_architectures_and_shipped_models(shipped, trained, weights_dir):
    for suffix in (".pt", ".json"):
        shutil.copy(trained.weights / f"cnn{suffix}", weights_dir)
    set_default("tiny")
    r = run_cli("models", "--json")  # FER_WEIGHTS_DIR is weights_dir in this test's environment
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert all({"name", "arch", "default", "weights", "metrics"} <= row.keys() for row in rows)
    by_name = {row["name"]: row for row in rows}
    assert len(by_name) == len(rows)
    assert set(by_name) == set(list_models()) | {"tiny"}
    assert by_name["tiny"] == {**by_name["tiny"], "arch": "mini_xception", "default": True, "weights": True,
                               "metrics": {"fer2013": {"val": {"accuracy": 0.5}}}}
    assert by_name["tiny"]["table"]["fer2013 val acc"] == 0.5
    cnn_card = json.loads((weights_dir / "cnn.json").read_text())
    assert by_name["cnn"]["weights"] is True and by_name["cnn"]["default"] is False
    assert by_name["cnn"]["metrics"] == cnn_card["metrics"] and by_name["cnn"]["params"] == 980199
    for arch in set(list_models()) - {"cnn"}:
        assert by_name[arch] == {"name": arch, "arch": arch, "default": False, "weights": False, "metrics": {}}
    assert [row["name"] for row in rows if row["default"]] == ["tiny"]


def test_models_table(shipped, capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "arch", "weights", "val", "acc", "val", "TTA", "default"]
    tiny = next(line for line in lines if line.startswith("tiny "))
    assert tiny.split() == ["tiny", "mini_xception", "yes", "50.00%", "-"]
    assert len(lines) == 1 + 1 + len(list_models())


# ------------------------------------------------------------------- weights too big for the repository

def test_weights_over_the_limit_are_kept_aside_and_the_card_says_so(weights_dir, tmp_path, monkeypatch, capsys):
    save_weights(_model(0), v2_card("small", "mini_xception", accuracy=0.4))
    set_default("small")
    size = (weights_dir / "small.pt").stat().st_size
    monkeypatch.setattr(cards, "MAX_SHIPPED_BYTES", size // 2)  # "small" was saved under the real limit
    run = tmp_path / "runs" / "big"
    model = _model(1)
    card_path = save_weights(model, v2_card("big", "mini_xception", accuracy=0.9), overflow_dir=run)
    card = json.loads(card_path.read_text())
    kept = run / "big.pt"
    assert not (weights_dir / "big.pt").exists() and kept.is_file()
    assert card["weights_file"] is None and card["kept_at"] == "big/big.pt"
    assert card["size_bytes"] == kept.stat().st_size
    assert card["sha256"] == sha256_file(kept) and card_schema.validate(card) == []  # no machine path
    assert f"{kept.stat().st_size / 2**20:.1f} MiB" in card["not_shipped"] and "run folder big/" in card["not_shipped"]

    # the kept file is the model (what training measures), but the app never loads it
    loaded = cards.load_file(kept, card).eval()
    faces = torch.from_numpy(_faces()).float().unsqueeze(1) / 255
    with torch.no_grad():
        assert torch.allclose(loaded(faces), model(faces), atol=2e-2)
    with pytest.raises(WeightsError, match="big is not shipped: its fp16 weights are"):
        load_model("big")
    assert find_card()["name"] == "small"
    (weights_dir / "DEFAULT").unlink()
    assert find_card()["name"] == "small"  # the most accurate model that can load, not the card with 90%

    assert main(["models"]) == 0
    out = capsys.readouterr()
    big = next(line for line in out.out.splitlines() if line.startswith("big "))
    assert big.split() == ["big", "mini_xception", "too", "big", "90.00%", "-"]
    assert "warning" not in out.err

    with pytest.raises(WeightsError, match="big cannot be the default"):
        set_default("big")
    (weights_dir / "DEFAULT").write_text("big\n")  # named by hand: still never picked
    assert find_card()["name"] == "small"


def test_weights_over_the_limit_without_a_folder_to_keep_them_are_refused(weights_dir, monkeypatch):
    monkeypatch.setattr(cards, "MAX_SHIPPED_BYTES", 1000)
    with pytest.raises(WeightsError, match=r"over the [0-9.e-]+ MiB limit on shipped weights"):
        save_weights(_model(), v2_card("big", "mini_xception"))
    assert list(weights_dir.iterdir()) == []


# --------------------------------------------------------------------- broken weights beside good ones

def _two_models(weights_dir):
    """weights_dir with 'good' and 'bad' (the default, more accurate) mini_xceptions."""
    save_weights(_model(0), v2_card("good", "mini_xception", accuracy=0.4))
    save_weights(_model(1), v2_card("bad", "mini_xception", accuracy=0.6))
    set_default("bad")
    return weights_dir / "bad.pt"


def _flip_byte(path, at=None):
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "card sha256", "missing file"])
def test_a_broken_model_is_named_and_the_others_stay_usable(weights_dir, damage):
    bad = _two_models(weights_dir)
    assert cards.healthy_default(read_cards()) == ("bad", {})
    if damage == "flipped byte":
        _flip_byte(bad)
    elif damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:1000])
    elif damage == "card sha256":
        write_card({**find_card("bad"), "sha256": "0" * 64})
    else:
        bad.unlink()
    problem = cards.weights_problem(find_card("bad"))
    expected = "is missing" if damage == "missing file" else "does not match the sha256 in bad.json"
    assert str(bad) in problem and expected in problem
    assert cards.healthy_default(read_cards()) == ("good", {"bad": problem})
    assert load_model("good")[1]["name"] == "good"
    with pytest.raises(WeightsError, match="bad"):
        load_model(None)

    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["bad"]["weights_ok"] is False and rows["bad"]["problem"] == problem
    assert rows["good"]["weights_ok"] is True and rows["good"]["problem"] is None
    assert f"warning: model bad cannot load: {problem}" in r.stderr
    table = run_cli("models")
    assert table.returncode == 0 and table.stdout.count("BROKEN") == 1
    predict = run_cli("predict", "--model", "bad", __file__)
    assert predict.returncode == 2 and str(bad) in predict.stderr and "Traceback" not in predict.stderr


def test_an_ensemble_with_a_broken_member_is_broken(weights_dir):
    bad = _two_models(weights_dir)
    members = [{"name": c["name"], "arch": c["arch"], "sha256": c["sha256"]} for c in read_cards()]
    write_card(v2_card("duo", "ensemble", members=members))
    assert cards.weights_problem(find_card("duo")) is None
    _flip_byte(bad)
    assert "member 'bad'" in cards.weights_problem(find_card("duo"))
    _flip_byte(bad)  # flipped back: intact again
    assert cards.weights_problem(find_card("duo")) is None
    write_card({**find_card("duo"), "members": members + [{"name": "gone", "arch": "cnn", "sha256": "x"}]})
    assert "'gone'" in cards.weights_problem(find_card("duo"))


def test_weights_problems_reads_each_file_once_and_agrees_with_weights_problem(weights_dir, monkeypatch):
    """The sidebar's check before a page's first element: an ensemble's members are not hashed again."""
    bad = _two_models(weights_dir)
    members = [{"name": c["name"], "arch": c["arch"], "sha256": c["sha256"]} for c in read_cards()]
    write_card(v2_card("duo", "ensemble", members=members))
    _flip_byte(bad)
    hashed, real = [], cards.sha256_file
    monkeypatch.setattr(cards, "sha256_file", lambda p: hashed.append(p) or real(p))
    problems = cards.weights_problems(read_cards())
    assert sorted(p.name for p in hashed) == ["bad.pt", "good.pt"]
    assert problems == {c["name"]: p for c in read_cards() if (p := cards.weights_problem(c))}
    assert set(problems) == {"bad", "duo"} and "member 'bad'" in problems["duo"]


def test_weights_digests_reads_a_file_again_only_when_it_changed(tmp_path, monkeypatch):
    """The sidebar's check reuses a digest while the file's size, mtime and inode stay, but not for a file changed
    within RACY_S of its hashing: a second change in the same timestamp tick could keep its mtime."""
    f = tmp_path / "a.pt"
    f.write_bytes(b"x" * 1000)
    os.utime(f, (time.time() - 60,) * 2)
    hashed, real = [], cards.sha256_file
    monkeypatch.setattr(cards, "sha256_file", lambda p: hashed.append(p) or real(p))
    x, y = (hashlib.sha256(c * 1000).hexdigest() for c in (b"x", b"y"))
    assert cards.weights_digests([f]) == cards.weights_digests([f]) == {f: x}
    assert hashed == [f]
    f.write_bytes(b"y" * 1000)  # the same size, changed just now
    assert cards.weights_digests([f]) == cards.weights_digests([f]) == {f: y}
    assert hashed == [f] * 3  # too recent to trust its mtime: read on every check
    os.utime(f, (time.time() - 30,) * 2)
    assert cards.weights_digests([f]) == cards.weights_digests([f]) == {f: y}
    assert hashed == [f] * 4


def test_weights_hashed_says_whether_a_check_would_read_a_file(weights_dir):
    _two_models(weights_dir)
    for f in weights_dir.glob("*.pt"):
        os.utime(f, (f.stat().st_mtime - 60,) * 2)
    assert not cards.weights_hashed(read_cards())
    assert cards.weights_problems(read_cards()) == {}
    assert cards.weights_hashed(read_cards())
    _flip_byte(weights_dir / "bad.pt")
    assert not cards.weights_hashed(read_cards())
    assert set(cards.weights_problems(read_cards())) == {"bad"}


@pytest.mark.slow
def test_a_missing_weights_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    r = run_cli("models", "--json")
    assert r.returncode == 0 and not any(row["weights"] for row in json.loads(r.stdout))
    predict = run_cli("predict", __file__)
    assert predict.returncode == 2 and "no shipped models" in predict.stderr and "nowhere" in predict.stderr


# ------------------------------------------------------------------------------- the shipped weights

SHIPPED = read_cards(REPO_WEIGHTS)
RAW_CARDS = sorted(REPO_WEIGHTS.glob("*.json"))


@pytest.mark.parametrize("path", RAW_CARDS, ids=lambda p: p.stem)
def test_every_card_in_weights_follows_the_schema_as_written(path):
    """The JSON on disk, not its migrated form: a shipped card is written in schema version 2 and names
    no path of the machine that wrote it."""
    card = json.loads(path.read_text())
    assert card_schema.validate(card) == [], path.name
    assert list(card_schema.machine_paths(card)) == [], path.name
    assert card["name"] == path.stem and card_schema.migrate(card) is card
needs_shipped = pytest.mark.skipif(not SHIPPED, reason=f"no model cards in {REPO_WEIGHTS} yet")


@needs_shipped
def test_shipped_weights_are_small_intact_and_one_is_default():
    default = cards.default_name(REPO_WEIGHTS)
    assert default in {c["name"] for c in SHIPPED if not c.get("not_shipped")}, (
        f"weights/DEFAULT names {default!r}; name a shipped model with: python -m fer_core default NAME")
    for card in SHIPPED:
        if card["arch"] == "ensemble":  # no file of its own: its members are checked as they load
            assert {m["name"] for m in card["members"]} <= {c["name"] for c in SHIPPED}
            load_model(card["name"], REPO_WEIGHTS)
            continue
        assert {"val", "val_tta"} <= card["metrics"]["fer2013"].keys(), card["name"]
        if card.get("not_shipped"):  # compared on the dashboard only: its card says why there is no file
            assert card["size_bytes"] > MAX_SHIPPED_BYTES and not (REPO_WEIGHTS / f"{card['name']}.pt").exists()
            continue
        pt = REPO_WEIGHTS / card.get("weights_file", f"{card['name']}.pt")
        assert pt.is_file(), pt
        assert pt.stat().st_size <= MAX_SHIPPED_BYTES, f"{pt} is over 16 MiB"
        assert sha256_file(pt) == card["sha256"], f"{pt} does not match its card"
        assert card["arch"] in list_models()
        assert {"val", "val_tta"} <= card["metrics"]["fer2013"].keys(), card["name"]
        assert card["metrics"]["fer2013"]["val"]["n"] == 3589, card["name"]  # measured on the whole PublicTest split
        model, _ = load_model(card["name"], REPO_WEIGHTS)
        with torch.no_grad():
            assert model(torch.zeros(1, 1, 48, 48)).shape == (1, 7)


@needs_shipped
@pytest.mark.dataset
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FER2013_PATH"), reason="set FER2013_PATH to the FER2013 dataset to run")
def test_shipped_default_reproduces_its_val_accuracy(real_cache):
    from fer_core.data.fer2013 import FER2013
    model, card = load_model(None, REPO_WEIGHTS)
    val = FER2013(os.environ["FER2013_PATH"]).load("val")
    m = metrics(softmax(predict_logits(model, val.images)), val.labels)
    assert m["n"] == card["metrics"]["fer2013"]["val"]["n"]
    assert abs(m["accuracy"] - card["metrics"]["fer2013"]["val"]["accuracy"]) <= 0.003
    assert cards.val_accuracy(card) == card["metrics"]["fer2013"]["val"]["accuracy"]
