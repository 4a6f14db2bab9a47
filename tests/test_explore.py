"""fer_core.app.explore: class counts, paging, mean faces, histograms, near-blank and duplicate faces and the
misclassified list, on small datasets with planted blanks and duplicates, and on FER2013 when
FER2013_PATH is set."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from fer_core import EMOTIONS, EmotionRecognizer
from fer_core.app import explore
from fer_core.models.cards import REPO_WEIGHTS, find_card, read_cards, write_card
from fer_core.data.fer2013 import FER2013, Split
from fer_core.models.evaluate import metrics
from helpers_cards import v2_card
from helpers_data import make_kaggle

# Kaggle layout counts (EMOTIONS order) before the planted files below are added
COUNTS = {"train": [6, 3, 5, 8, 4, 7, 5], "val": [2, 1, 3, 2, 1, 2, 2]}
# FER2013 as published (train = Training, val = PublicTest), EMOTIONS order
FER_TRAIN = [3995, 436, 4097, 7215, 4830, 3171, 4965]
FER_VAL = [467, 56, 496, 895, 653, 415, 607]


def first(root, folder, emotion):
    return sorted((root / folder / emotion).glob("*.jpg"))[0]


def make_planted(root):
    """make_kaggle plus: one copy inside train (happy), one train face copied into val with its label
    (sad) and one with another label (fear -> angry), a flat grey face in train/neutral, a 95%-flat face
    in val/surprise, and a low-contrast gradient in train/neutral that is not blank."""
    data = make_kaggle(root, counts=COUNTS, seed=1)
    shutil.copy(first(root, "train", "happy"), root / "train/happy/Training_90001.jpg")
    shutil.copy(first(root, "train", "sad"), root / "test/sad/PublicTest_90002.jpg")
    shutil.copy(first(root, "train", "fear"), root / "test/angry/PublicTest_90003.jpg")
    cv2.imwrite(str(root / "train/neutral/Training_90004.png"), np.full((48, 48), 128, np.uint8))
    mostly_flat = np.full((48, 48), 30, np.uint8)
    mostly_flat[:2, :] = np.arange(48, dtype=np.uint8) * 5 + 40  # 96 of 2304 pixels differ: 95.8% flat
    cv2.imwrite(str(root / "test/surprise/PublicTest_90005.png"), mostly_flat)
    gradient = np.tile(np.linspace(100, 140, 48).astype(np.uint8), (48, 1))
    cv2.imwrite(str(root / "train/neutral/Training_90006.png"), gradient)
    return data


@pytest.fixture
def planted(tmp_path):
    make_planted(tmp_path / "fer")
    dataset = FER2013(tmp_path / "fer")
    return dataset, {s: dataset.load(s) for s in dataset.splits}


def index_of(split, name):
    (i,) = np.flatnonzero(split.names == name)
    return int(i)


def hand_split(images, labels):
    return Split(np.asarray(images, np.uint8), np.asarray(labels, np.int64),
                 np.asarray([f"img{i}" for i in range(len(labels))]))


# ---- class distribution and the counts in the model cards


def test_distribution_figure_has_a_bar_group_per_split_with_the_counts(planted):
    dataset, _ = planted
    fig = explore.distribution_figure(dataset.counts())
    assert [t.name for t in fig.data] == ["train", "val"]
    train, val = fig.data
    assert train.x == EMOTIONS
    assert list(train.y) == [6, 3, 5, 9, 4, 7, 7]  # + the happy copy, + 2 neutral pngs
    assert list(val.y) == [3, 1, 3, 2, 2, 3, 2]  # + angry and sad copies, + the surprise png


def test_shipped_cards_record_fer2013_class_counts():
    default = find_card(None)
    recorded = explore.recorded_datasets(read_cards())
    (mine,) = [r for r in recorded if default["name"] in r["models"]
               and r["fingerprint"] == default["datasets"]["fer2013"]["fingerprint"]]
    assert mine["fingerprint"] == default["datasets"]["fer2013"]["fingerprint"]
    assert [mine["counts"]["train"][e] for e in EMOTIONS] == FER_TRAIN
    assert [mine["counts"]["val"][e] for e in EMOTIONS] == FER_VAL
    assert sum(mine["counts"]["train"].values()) == 28709 and sum(mine["counts"]["val"].values()) == 3589
    cards_on_disk = [json.loads(p.read_text()) for p in REPO_WEIGHTS.glob("*.json")]
    assert sorted(m for r in recorded for m in r["models"]) == sorted(
        c["name"] for c in cards_on_disk for d in c["datasets"].values() if isinstance(d.get("counts"), dict))


def test_recorded_datasets_merge_by_fingerprint_and_skip_malformed(weights_dir):
    counts = {"train": dict(zip(EMOTIONS, range(1, 8))), "val": dict(zip(EMOTIONS, [1] * 7))}
    for name in ("a", "b"):
        write_card(v2_card(name, datasets={"x": {"fingerprint": "f1", "source": "x.zip", "counts": counts}}))
    odd = {"train": {"happy": 5, "sad": "many", "fear": float("nan")}}
    write_card(v2_card("c", datasets={"y": {"fingerprint": "f2", "source": "y.csv", "counts": odd}}))
    write_card(v2_card("d", datasets={"fer2013": {"fingerprint": "f3", "source": "fer2013.zip"}}))  # no counts
    write_card(v2_card("e"))
    recorded = explore.recorded_datasets(read_cards())
    assert [(r["fingerprint"], r["models"]) for r in recorded] == [("f1", ["a", "b"]), ("f2", ["c"])]
    assert recorded[0]["counts"] == counts
    assert recorded[1]["counts"] == {"train": {e: 5 if e == "happy" else 0 for e in EMOTIONS}}
    assert explore.matching_models("f1", read_cards()) == ["a", "b"]
    assert explore.matching_models("nope", read_cards()) == []


# ---- paging


@pytest.mark.parametrize("n,pages", [(0, 1), (1, 1), (32, 1), (33, 2), (7215, 226)])
def test_page_count(n, pages):
    assert explore.page_count(n) == pages


def test_page_slice_pages_through_every_item_once_and_clamps():
    items = np.arange(100, 170)  # 70 items: pages of 32, 32, 6
    pages = [explore.page_slice(items, p) for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [32, 32, 6]
    assert np.array_equal(np.concatenate(pages), items)
    assert np.array_equal(explore.page_slice(items, 99), pages[-1])
    assert np.array_equal(explore.page_slice(items, 0), pages[0])
    assert len(explore.page_slice([], 1)) == 0


def test_sample_page_returns_only_the_chosen_class_in_order(planted):
    _, splits = planted
    train = splits["train"]
    happy = explore.sample_page(train, EMOTIONS.index("happy"), 1, per_page=4)
    assert len(happy) == 4 and (train.labels[happy] == EMOTIONS.index("happy")).all()
    assert all("/happy/" in train.names[i] for i in happy)
    rest = explore.sample_page(train, EMOTIONS.index("happy"), 3, per_page=4)
    assert len(rest) == 1  # 9 happy faces: 4 + 4 + 1
    assert list(explore.class_indices(train.labels, 1)) == [i for i, n in enumerate(train.names) if "/disgust/" in n]


# ---- mean faces and histograms


def test_mean_faces_average_each_class_and_leave_empty_classes_black():
    gradient = np.tile(np.arange(48, dtype=np.uint8), (48, 1))
    split = hand_split([np.full((48, 48), 10), np.full((48, 48), 31), gradient], [0, 0, 3])
    means = explore.mean_faces(split)
    assert means.shape == (7, 48, 48) and means.dtype == np.float32
    assert np.all(means[0] == 20.5)
    assert np.array_equal(means[3], gradient)
    assert not means[[1, 2, 4, 5, 6]].any()


def test_histograms_count_every_pixel_at_its_grey_level():
    split = hand_split([np.full((48, 48), 10), np.full((48, 48), 30), np.full((48, 48), 10)], [0, 0, 5])
    by_class = explore.histograms_by_class(split)
    assert list(by_class) == list(EMOTIONS)
    assert by_class["angry"][10] == 2304 and by_class["angry"][30] == 2304 and by_class["angry"].sum() == 4608
    assert by_class["surprise"][10] == 2304 and by_class["surprise"].sum() == 2304
    assert by_class["happy"].sum() == 0
    fig = explore.histogram_figure(by_class)
    assert [t.name for t in fig.data] == ["angry", "surprise"]  # empty classes have no line
    assert fig.data[0].y[10] == 0.5 and sum(fig.data[0].y) == 1


def test_histograms_by_split_cover_all_pixels(planted):
    _, splits = planted
    hists = explore.histograms_by_split(splits)
    assert {s: int(h.sum()) for s, h in hists.items()} == {s: len(x) * 48 * 48 for s, x in splits.items()}
    assert hists["train"].dtype == np.int64 and hists["train"].shape == (256,)


# ---- quality flags


def test_flatness_measures_std_and_most_common_level():
    half = np.zeros((48, 48), np.uint8)
    half[:, 24:] = 200
    std, mode = explore.flatness(np.stack([np.full((48, 48), 9, np.uint8), half]))
    assert std[0] == 0 and mode[0] == 1
    assert std[1] == pytest.approx(100) and mode[1] == 0.5


def test_near_blank_flags_exactly_the_planted_faces(planted):
    _, splits = planted
    blanks = explore.blank_faces(splits)
    assert [(b["split"], b["name"], b["label"]) for b in blanks] == [
        ("train", "train/neutral/Training_90004.png", "neutral"),
        ("val", "test/surprise/PublicTest_90005.png", "surprise")]
    flat, mostly = blanks
    assert flat["std"] == 0 and flat["mode_share"] == 1
    assert flat["index"] == index_of(splits["train"], "train/neutral/Training_90004.png")
    assert mostly["std"] > explore.BLANK_STD and mostly["mode_share"] == pytest.approx(1 - 96 / 2304, abs=1e-3)
    gradient = index_of(splits["train"], "train/neutral/Training_90006.png")
    assert gradient not in explore.near_blank(splits["train"].images)


def test_duplicates_find_the_planted_copies_inside_and_across_splits(planted):
    _, splits = planted
    groups = explore.describe_duplicates(splits)
    found = sorted(sorted(g.names) for g in groups)
    train = splits["train"]
    first_of = {e: str(train.names[explore.class_indices(train.labels, EMOTIONS.index(e))[0]]) for e in
                ("happy", "sad", "fear")}
    assert found == sorted([
        sorted([first_of["happy"], "train/happy/Training_90001.jpg"]),
        sorted([first_of["sad"], "test/sad/PublicTest_90002.jpg"]),
        sorted([first_of["fear"], "test/angry/PublicTest_90003.jpg"])])
    assert explore.duplicate_summary(groups) == {"groups": 3, "extra_copies": 3, "within_split": 1,
                                                 "across_splits": 2, "conflicting_labels": 1}
    (conflict,) = [g for g in groups if g.conflicting_labels]
    assert sorted(conflict.labels) == ["angry", "fear"] and conflict.splits == {"train", "val"}
    rows = explore.duplicate_rows(groups)
    assert sorted((r["copies"], r["splits"], r["labels"]) for r in rows) == [
        (2, "train", "happy"), (2, "train, val", "angry, fear"), (2, "train, val", "sad")]


def test_duplicate_groups_are_largest_first_and_hash_the_decoded_pixels():
    a, b = np.full((48, 48), 1, np.uint8), np.full((48, 48), 2, np.uint8)
    splits = {"train": hand_split([a, b, a, b, a], [0] * 5), "val": hand_split([b, np.eye(48) * 255, b], [1, 1, 1])}
    assert explore.duplicate_groups(splits) == [[("train", 1), ("train", 3), ("val", 0), ("val", 2)],
                                                [("train", 0), ("train", 2), ("train", 4)]]
    assert explore.image_digest(a) == explore.image_digest(a.copy()) != explore.image_digest(b)


# ---- misclassified faces


def test_misclassified_lists_wrong_predictions_most_confident_first():
    probs = np.full((5, 7), 0.05, np.float32)
    for row, (label, p) in enumerate([(0, 0.7), (3, 0.6), (3, 0.5), (6, 0.9), (1, 0.4)]):
        probs[row, label] = p
    labels = np.array([0, 4, 3, 2, 1])
    found = explore.misclassified(probs, labels)
    assert list(found.index) == [3, 1] and found.total == 5 and len(found) == 2
    assert list(found.true) == [2, 4] and list(found.pred) == [6, 3]
    assert list(found.confidence) == pytest.approx([0.9, 0.6])
    assert found.caption(0) == "fear → neutral (90%)"
    assert list(found.of_class(4)) == [1] and list(found.of_class(None)) == [0, 1]
    assert explore.confusion_counts(found, labels).tolist() == metrics(probs, labels)["confusion_matrix"]


def test_misclassified_with_the_shipped_model_agrees_with_evaluate(planted):
    _, splits = planted
    val = splits["val"]
    rec = EmotionRecognizer(detector="haar")
    probs = explore.classify_in_batches(rec.classify, val.images, batch_size=5)
    assert probs.shape == (len(val), 7)
    assert np.allclose(probs, rec.classify(val.images), atol=1e-5)
    found = explore.misclassified(probs, val.labels)
    assert (found.pred != found.true).all() and np.array_equal(found.true, val.labels[found.index])
    assert (np.diff(found.confidence) <= 0).all()
    cm = explore.confusion_counts(found, val.labels)
    assert cm.tolist() == metrics(probs, val.labels)["confusion_matrix"]
    assert len(found) == len(val) - np.trace(cm)


def test_classify_in_batches_of_nothing_is_empty():
    assert explore.classify_in_batches(None, np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)


# ---- the source stamp that keys the page's cache


def test_source_stamp_changes_when_images_are_added(tmp_path):
    data = make_kaggle(tmp_path / "fer", counts={"train": [1] * 7}, seed=2)
    before = explore.source_stamp(data.path)
    assert before == explore.source_stamp(data.path)
    cv2.imwrite(str(data.path / "train/happy/Training_999.jpg"), np.zeros((48, 48), np.uint8))
    os.utime(data.path / "train/happy", ns=(0, os.stat(data.path / "train/happy").st_mtime_ns + 10**9))
    assert explore.source_stamp(data.path) != before
    assert explore.source_stamp(tmp_path / "missing.zip") == ""


# ---- the real FER2013 (env FER2013_PATH)


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory):
    if not os.environ.get("FER2013_PATH"):
        pytest.skip("FER2013_PATH is not set")
    cache = tmp_path_factory.getbasetemp() / "fer_cache_real"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_CACHE_DIR", str(cache))
        dataset = FER2013(os.environ["FER2013_PATH"])
        splits = {s: dataset.load(s) for s in ("train", "val")}
    return dataset, splits


@pytest.mark.dataset
@pytest.mark.slow
def test_fer2013_counts_are_the_published_ones(fer2013):
    dataset, _ = fer2013
    fig = explore.distribution_figure(dataset.counts())
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars["train"] == FER_TRAIN and bars["val"] == FER_VAL
    assert sum(bars["train"]) == 28709 and sum(bars["val"]) == 3589
    assert explore.page_count(dataset.counts()["train"]["happy"]) == 226


@pytest.mark.dataset
@pytest.mark.slow
def test_fer2013_fingerprint_is_the_one_the_shipped_models_record(fer2013):
    dataset, _ = fer2013
    assert find_card(None)["name"] in explore.matching_models(dataset.fingerprint(), read_cards())


@pytest.mark.dataset
@pytest.mark.slow
def test_fer2013_mean_faces_and_histograms_are_consistent(fer2013):
    _, splits = fer2013
    train = splits["train"]
    means = explore.mean_faces(train)
    weights = np.array(FER_TRAIN, np.float64)[:, None, None]
    overall = (means * weights).sum(0) / weights.sum()
    assert np.allclose(overall, train.images.mean(0, dtype=np.float64), atol=1e-3)
    assert all(h.sum() == n * 2304 for h, n in zip(explore.histograms_by_class(train).values(), FER_TRAIN))


@pytest.mark.dataset
@pytest.mark.slow
def test_fer2013_flags_every_constant_face_and_finds_duplicates(fer2013):
    _, splits = fer2013
    blanks = explore.blank_faces(splits)
    flagged = {(b["split"], b["index"]) for b in blanks}
    constant = {(s, int(i)) for s, x in splits.items() for i in np.flatnonzero(np.ptp(x.images, axis=(1, 2)) == 0)}
    assert len(constant) == 12 and constant <= flagged
    assert all(b["mode_share"] >= explore.BLANK_MODE_SHARE for b in blanks)
    groups = explore.describe_duplicates(splits)
    summary = explore.duplicate_summary(groups)
    everything = np.concatenate([x.images for x in splits.values()]).reshape(28709 + 3589, -1)
    distinct = len(np.unique(everything.view(np.dtype((np.void, everything.shape[1]))).ravel()))
    assert summary["extra_copies"] == len(everything) - distinct > 0
    assert summary["across_splits"] > 0 and summary["within_split"] > 0
    assert set(groups[0].members) == constant  # the blank faces are all the same grey: one group of 12


@pytest.mark.dataset
@pytest.mark.slow
def test_fer2013_misclassified_val_faces_match_the_cards_confusion_matrix(fer2013):
    _, splits = fer2013
    rec = EmotionRecognizer(detector="haar", backend="torch")  # the card's metrics are the fp32 model's
    val = splits["val"]
    found = explore.misclassified(explore.classify_in_batches(rec.classify, val.images), val.labels)
    card = rec.card["metrics"]["fer2013"]["val"]
    assert explore.confusion_counts(found, val.labels).tolist() == card["confusion_matrix"]
    assert found.total == card["n"] == 3589
    assert 1 - len(found) / found.total == pytest.approx(card["accuracy"], abs=5e-5)
