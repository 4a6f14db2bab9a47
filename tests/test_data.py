"""FER2013 reading: every layout, the splits, errors a user can act on, and the decoded-array cache."""
import os
import time
import zipfile

import cv2
import numpy as np
import pytest

import fer_core.data.fer2013 as data_mod
from fer_core.data.fer2013 import FER2013, dataset_path
from fer_core.data.emotions import EMOTIONS
from fer_core.errors import DatasetError
from helpers_data import (UNPREFIXED_TEST, UNPREFIXED_TRAIN, UNPREFIXED_VAL, bump_mtime, csv_row, face_image,
                          make_csv, make_kaggle, make_unprefixed)

ALL_LAYOUTS = ["kaggle_folder", "kaggle_zip", "kaggle_zip_prefixed", "fer_csv"]


def _label_of_name(name: str) -> int:
    """The class folder in a path like [fer2013/]train/happy/Training_3.jpg."""
    return EMOTIONS.index(name.split("/")[-2])


# ----------------------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("fixture", ALL_LAYOUTS)
def test_every_layout_parses_with_the_written_counts(fixture, request):
    ds = request.getfixturevalue(fixture)
    src = FER2013(ds.path)
    assert src.layout == {"fer_csv": "csv", "kaggle_folder": "folder"}.get(fixture, "zip")
    assert src.splits == ("train", "val", "test")
    assert src.counts() == ds.counts
    assert src.problems == []
    for split in src.splits:
        s = src.load(split)
        assert s.counts() == ds.counts[split]  # decoded == listed
        assert s.images.dtype == np.uint8 and s.images.shape == (len(s), 48, 48)
        assert s.labels.dtype == np.int64 and len(s.names) == len(s)


@pytest.mark.parametrize("fixture", ["kaggle_folder", "kaggle_zip", "kaggle_zip_prefixed"])
def test_image_layouts_split_by_file_prefix_and_label_by_folder(fixture, request):
    src = FER2013(request.getfixturevalue(fixture).path)
    prefix = {"train": "Training_", "val": "PublicTest_", "test": "PrivateTest_"}
    for split, p in prefix.items():
        s = src.load(split)
        assert all(n.rsplit("/", 1)[-1].startswith(p) for n in s.names), split
        assert [_label_of_name(n) for n in s.names] == s.labels.tolist()
    # val and test images both live in test/: only the prefix tells them apart
    assert all("/test/" in f"/{n}" for n in src.load("val").names)


def test_folder_and_zip_decode_to_the_same_pixels_near_the_originals(kaggle_folder, kaggle_zip, kaggle_zip_prefixed):
    folder = FER2013(kaggle_folder.path)
    for split in ("train", "val", "test"):
        a = folder.load(split)
        for other in (kaggle_zip, kaggle_zip_prefixed):
            b = FER2013(other.path).load(split)
            assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
        # decoded as OpenCV reads the file
        img = cv2.imread(str(kaggle_folder.path / a.names[0]), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(a.images[0], img)
    # the fingerprint depends on the pixels and labels, not on where they are stored
    fingerprints = {FER2013(d.path).fingerprint() for d in (kaggle_zip, kaggle_zip_prefixed)}
    assert fingerprints == {folder.fingerprint()}


def test_lossless_files_load_pixel_exact(tmp_path):
    ds = make_unprefixed(tmp_path / "p", train=[1] * 7, test=[1] * 7, seed=4)
    rng = np.random.default_rng(4)  # make_unprefixed draws train/angry/img1.png first, then train/disgust/img2.png
    first, second = face_image(0, rng), face_image(1, rng)
    src = FER2013(ds.path)
    loaded = {n: img for s in src.splits for n, img in zip(src.load(s).names, src.load(s).images)}
    assert np.array_equal(loaded["train/angry/img1.png"], first)
    assert np.array_equal(loaded["train/disgust/img2.png"], second)


def test_csv_rows_keep_their_pixels_labels_and_usage(tmp_path):
    ds, rows = make_csv(tmp_path / "fer2013.csv")
    src = FER2013(ds.path)
    for split in ("train", "val", "test"):
        want = [(label, img) for label, img, s in rows if s == split]
        got = src.load(split)
        assert got.labels.tolist() == [label for label, _ in want]
        assert np.array_equal(got.images, np.stack([img for _, img in want]))  # CSV pixels are exact
    # names are CSV line numbers: row i is on line i + 2
    first_train = next(i for i, r in enumerate(rows) if r[2] == "train")
    assert src.load("train").names[0] == f"line {first_train + 2}"


def test_csv_inside_a_folder_is_found(tmp_path):
    (tmp_path / "dl").mkdir()
    ds, _ = make_csv(tmp_path / "dl" / "fer2013.csv")
    src = FER2013(tmp_path / "dl")
    assert src.layout == "csv" and src.counts() == ds.counts


def test_csv_without_usage_is_all_train_and_val_is_carved_out(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "train.csv"
    with open(path, "w") as f:
        f.write("emotion,pixels\n")
        for label, n in enumerate(UNPREFIXED_TRAIN):
            for _ in range(n):
                f.write(f'{label},"{" ".join(map(str, face_image(label, rng).ravel()))}"\n')
    src = FER2013(path)
    assert src.splits == ("train", "val")
    assert list(src.counts()["val"].values()) == UNPREFIXED_VAL
    assert [a + b for a, b in zip(src.counts()["train"].values(), UNPREFIXED_VAL)] == UNPREFIXED_TRAIN


# ------------------------------------------------------------------------------- unprefixed: seeded val

def test_unprefixed_folder_test_is_test_and_val_is_a_stratified_tenth_of_train(unprefixed_folder):
    src = FER2013(unprefixed_folder.path)
    assert src.splits == ("train", "val", "test")
    counts = src.counts()
    assert list(counts["test"].values()) == UNPREFIXED_TEST
    assert list(counts["val"].values()) == UNPREFIXED_VAL  # round(10%) of each class
    assert [counts["train"][e] + counts["val"][e] for e in EMOTIONS] == UNPREFIXED_TRAIN
    train, val, test = (src.load(s) for s in ("train", "val", "test"))
    assert set(train.names).isdisjoint(val.names)
    assert all(n.startswith("train/") for n in val.names)  # carved out of train/, not test/
    assert all(n.startswith("test/") for n in test.names)
    assert [_label_of_name(n) for n in val.names] == val.labels.tolist()
    assert val.counts() == counts["val"] and train.counts() == counts["train"]


def test_unprefixed_val_is_the_same_on_every_load(unprefixed_folder, tmp_path, monkeypatch):
    first = FER2013(unprefixed_folder.path).load("val")
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "other-cache"))  # decode again from scratch
    again = FER2013(unprefixed_folder.path)
    assert sorted(e.name for e in again.entries if e.split == "val") == sorted(first.names)
    second = again.load("val")
    assert second.names.tolist() == first.names.tolist()
    assert np.array_equal(second.images, first.images)
    # and a copy of the same files elsewhere (another machine) holds out the same files
    copy = make_unprefixed(tmp_path / "copy")
    assert FER2013(copy.path).load("val").names.tolist() == first.names.tolist()


def test_unprefixed_val_is_not_just_the_first_files(tmp_path):
    src = FER2013(make_unprefixed(tmp_path / "p", train=[40] * 7, test=[1] * 7).path)
    val = src.load("val")
    assert len(val) == 28
    firsts = {e.name for e in sorted(src.entries, key=lambda e: e.name) if e.split in ("train", "val")}
    assert set(val.names) != set(sorted(firsts)[:28])


def test_a_marked_val_is_kept_as_is(tmp_path):
    """Files carrying the PublicTest prefix are val: nothing is carved out of train then."""
    ds = make_kaggle(tmp_path / "k", counts={"train": [10] * 7, "val": [1] * 7})
    assert FER2013(ds.path).counts() == ds.counts


# -------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("fixture", ["fer_csv", "unprefixed_folder"])
def test_unknown_split_name_is_refused(fixture, request):
    with pytest.raises(DatasetError, match="unknown split 'dev'; choose one of train, val, test"):
        FER2013(request.getfixturevalue(fixture).path).load("dev")


def test_absent_split_names_the_existing_ones(tmp_path):
    ds = make_kaggle(tmp_path / "k", counts={"train": [3] * 7, "val": [1] * 7})  # no PrivateTest files
    src = FER2013(ds.path)
    assert src.splits == ("train", "val")
    with pytest.raises(DatasetError, match=r"split 'test' is not in k; it has: train, val$"):
        src.load("test")
    ds, _ = make_csv(tmp_path / "f.csv", counts={"train": [2] * 7, "val": [1] * 7})
    with pytest.raises(DatasetError, match=r"split 'test' is not in f.csv; it has: train, val$"):
        FER2013(ds.path).load("test")


def test_csv_with_training_and_privatetest_only_carves_val_from_train(tmp_path):
    ds, _ = make_csv(tmp_path / "f.csv", counts={"train": [10] * 7, "test": [2] * 7})
    counts = FER2013(ds.path).counts()
    assert counts["test"] == ds.counts["test"]
    assert list(counts["val"].values()) == [1] * 7 and list(counts["train"].values()) == [9] * 7


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="dataset not found: .*nope.zip"):
        FER2013(tmp_path / "nope.zip")


def test_no_path_anywhere_explains_where_to_get_it(monkeypatch):
    monkeypatch.delenv("FER2013_PATH", raising=False)
    with pytest.raises(DatasetError, match="FER2013_PATH.*kaggle"):
        dataset_path(None)
    monkeypatch.setenv("FER2013_PATH", "/some/where.zip")
    assert str(dataset_path(None)) == "/some/where.zip"
    assert str(dataset_path("x.csv")) == "x.csv"


def test_unknown_layout(tmp_path):
    txt = tmp_path / "fer2013.txt"
    txt.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DatasetError, match="unknown dataset layout: .*fer2013.txt"):
        FER2013(txt)


def test_folder_without_faces(tmp_path):
    (tmp_path / "empty" / "docs").mkdir(parents=True)
    (tmp_path / "empty" / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match="no FER2013 faces found"):
        FER2013(tmp_path / "empty")


def test_unknown_class_folder_is_named(kaggle_folder):
    bad = kaggle_folder.path / "train" / "happyish"
    bad.mkdir()
    cv2.imwrite(str(bad / "Training_999.jpg"), face_image(3, np.random.default_rng(0)))
    with pytest.raises(DatasetError, match=r"class folder 'happyish' in fer2013/train/happyish.*angry, disgust"):
        FER2013(kaggle_folder.path)


def test_unknown_class_folder_in_a_zip_is_named(tmp_path):
    path = tmp_path / "f.zip"
    with zipfile.ZipFile(path, "w") as z:
        jpg = cv2.imencode(".jpg", face_image(0, np.random.default_rng(0)))[1].tobytes()
        z.writestr("fer2013/train/angry/Training_1.jpg", jpg)
        z.writestr("fer2013/train/contempt/Training_2.jpg", b"x")
    with pytest.raises(DatasetError, match="'contempt' in f.zip/fer2013/train/contempt"):
        FER2013(path)


def test_csv_header_must_name_the_columns(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("label,image\n0,1 2 3\n")
    with pytest.raises(DatasetError, match="header must name 'emotion' and 'pixels'"):
        FER2013(path)


def test_malformed_csv_rows_are_skipped_and_reported_by_line(tmp_path):
    rng = np.random.default_rng(5)
    good = " ".join(["128"] * 2304)
    bad_lines = [
        ("fields", f'3,"{good}"\n'),  # no Usage field
        ("emotion 9", f'9,"{good}",Training\n'),
        ("emotion text", f'happy,"{good}",Training\n'),
        ("pixel count", '3,"1 2 3",Training\n'),
        ("non-numeric", '3,"' + " ".join(["x"] * 2304) + '",Training\n'),
        ("out of range", '3,"' + " ".join(["300"] * 2304) + '",Training\n'),
        ("usage", f'3,"{good}",Validation\n'),
    ]
    extra = [line for _, line in bad_lines] + [csv_row(4, face_image(4, rng), "Training")]
    ds, rows = make_csv(tmp_path / "fer2013.csv", extra_lines=extra)
    first_bad = len(rows) + 2
    bad_at = {why: first_bad + i for i, (why, _) in enumerate(bad_lines)}

    src = FER2013(ds.path)
    train = src.load("train")
    problems = "\n".join(src.problems)
    assert len(src.problems) == len(bad_lines), problems
    for why, line in bad_at.items():
        assert f"line {line}:" in problems, why
    assert f"line {bad_at['fields']}: expected 3 fields, found 2" in problems
    assert f"line {bad_at['emotion 9']}: emotion must be an integer 0-6, got '9'" in problems
    assert f"line {bad_at['pixel count']}: pixels must hold 2304 values, found 3" in problems
    assert f"line {bad_at['usage']}: Usage must be Training, PublicTest or PrivateTest" in problems
    # every good row loads, including the one after the bad ones
    want = dict(ds.counts["train"], sad=ds.counts["train"]["sad"] + 1)
    assert train.counts() == want
    assert train.names[-1] == f"line {first_bad + len(bad_lines)}"
    assert src.load("val").counts() == ds.counts["val"]
    assert not any(n in (f"line {v}" for v in bad_at.values()) for n in train.names)


def test_malformed_rows_are_reported_on_a_cached_load_too(tmp_path):
    ds, rows = make_csv(tmp_path / "fer2013.csv", extra_lines=['3,"1 2 3",Training\n'])
    line = len(rows) + 2
    FER2013(ds.path).load("train")
    again = FER2013(ds.path)
    again.load("train")  # from the cache
    assert any(p.startswith(f"line {line}: pixels must hold") for p in again.problems), again.problems


def test_non_image_files_in_class_folders_are_reported_and_the_rest_loads(kaggle_folder):
    happy = kaggle_folder.path / "train" / "happy"
    (happy / "notes.txt").write_text("not a face")
    (happy / "Training_9001.jpg").write_bytes(b"this is no JPEG")  # right name, unreadable bytes
    (happy / ".DS_Store").write_bytes(b"\0\0")  # hidden files are ignored silently
    src = FER2013(kaggle_folder.path)
    train = src.load("train")
    assert train.counts() == kaggle_folder.counts["train"]
    problems = "\n".join(src.problems)
    assert "train/happy/notes.txt: not an image file (skipped)" in problems
    assert "train/happy/Training_9001.jpg: not a readable image (skipped)" in problems
    assert ".DS_Store" not in problems and len(src.problems) == 2
    assert src.load("val").counts() == kaggle_folder.counts["val"]


def test_images_outside_split_class_folders_are_reported(kaggle_folder):
    cv2.imwrite(str(kaggle_folder.path / "Training_777.jpg"), face_image(0, np.random.default_rng(0)))
    src = FER2013(kaggle_folder.path)
    assert src.counts() == kaggle_folder.counts
    assert src.problems == ["Training_777.jpg: not inside <split>/<emotion>/ (skipped)"]


def test_images_of_another_size_are_resized(tmp_path):
    ds = make_kaggle(tmp_path / "k", counts={"train": [1] * 7, "val": [1] * 7})
    big = ds.path / "train" / "angry" / "Training_500.png"
    cv2.imwrite(str(big), np.full((96, 96), 77, np.uint8))
    train = FER2013(ds.path).load("train")
    i = train.names.tolist().index("train/angry/Training_500.png")
    assert np.array_equal(train.images[i], np.full((48, 48), 77, np.uint8))


def test_all_rows_unreadable_is_an_error(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text('emotion,pixels,Usage\n3,"1 2",Training\n4,"5",PublicTest\n')
    src = FER2013(path)  # listing works: the pixels are only read on load
    with pytest.raises(DatasetError, match="no readable faces.*2 problems, first: line 2"):
        src.load("train")


# --------------------------------------------------------------------------------------------- cache

def _caches(cache_dir):
    return sorted(cache_dir.glob("fer2013-*.npz"))


@pytest.mark.parametrize("fixture", ALL_LAYOUTS + ["unprefixed_folder"])
def test_second_load_comes_from_the_disk_cache(fixture, request, cache_dir, monkeypatch):
    ds = request.getfixturevalue(fixture)
    assert _caches(cache_dir) == []
    first = FER2013(ds.path)
    splits = {s: first.load(s) for s in first.splits}
    fp = first.fingerprint()
    (cache,) = _caches(cache_dir)
    stamp = cache.stat().st_mtime_ns

    def no_decoding(src):
        raise AssertionError("decoded again instead of reading the cache")
    monkeypatch.setattr(data_mod, "_decode", no_decoding)
    t = time.perf_counter()
    second = FER2013(ds.path)
    for s, split in splits.items():
        again = second.load(s)
        assert np.array_equal(again.images, split.images)
        assert np.array_equal(again.labels, split.labels)
        assert again.names.tolist() == split.names.tolist()
    assert time.perf_counter() - t < 2.0
    assert second.fingerprint() == fp and len(fp) == 64
    assert _caches(cache_dir) == [cache] and cache.stat().st_mtime_ns == stamp


def _count_decodes(monkeypatch):
    calls = []
    real = data_mod._decode

    def counting(src):
        calls.append(src.path)
        return real(src)
    monkeypatch.setattr(data_mod, "_decode", counting)
    return calls


@pytest.mark.parametrize("fixture", ["kaggle_zip", "fer_csv"])
def test_touching_the_source_invalidates_the_cache(fixture, request, cache_dir, monkeypatch):
    ds = request.getfixturevalue(fixture)
    decodes = _count_decodes(monkeypatch)
    before = FER2013(ds.path).load("train")
    FER2013(ds.path).load("train")
    assert len(decodes) == 1
    bump_mtime(ds.path)
    after = FER2013(ds.path).load("train")
    assert len(decodes) == 2 and len(_caches(cache_dir)) == 2
    assert np.array_equal(after.images, before.images)  # same content, new key


def test_rewriting_the_csv_gives_the_new_rows(tmp_path, cache_dir):
    ds, _ = make_csv(tmp_path / "fer2013.csv", seed=0)
    old = FER2013(ds.path)
    old_train, old_fp = old.load("train"), old.fingerprint()
    make_csv(tmp_path / "fer2013.csv", seed=1, counts={"train": [1, 1, 1, 1, 1, 1, 9], "val": [1] * 7})
    new = FER2013(ds.path)
    new_train = new.load("train")
    assert new_train.counts()["neutral"] == 9 and len(new_train) == 15
    assert not np.array_equal(new_train.images[:5], old_train.images[:5])
    assert new.fingerprint() != old_fp
    assert len(_caches(cache_dir)) == 2


def test_editing_a_file_deep_inside_a_folder_invalidates_the_cache(kaggle_folder, cache_dir):
    src = FER2013(kaggle_folder.path)
    train = src.load("train")
    name = train.names[3]
    replaced = np.full((48, 48), 200, np.uint8)
    cv2.imwrite(str(kaggle_folder.path / name), replaced)
    bump_mtime(kaggle_folder.path / name)  # the folder's own mtime does not change
    again = FER2013(kaggle_folder.path).load("train")
    assert np.abs(again.images[3].astype(int) - 200).max() <= 2  # the new picture, not the cached one
    assert len(_caches(cache_dir)) == 2
    # and a file added to a class folder shows up
    cv2.imwrite(str(kaggle_folder.path / "train" / "fear" / "Training_4242.jpg"), replaced)
    third = FER2013(kaggle_folder.path).load("train")
    assert third.counts()["fear"] == kaggle_folder.counts["train"]["fear"] + 1


def test_an_unreadable_cache_is_ignored(fer_csv, cache_dir):
    first = FER2013(fer_csv.path).load("val")
    (cache,) = _caches(cache_dir)
    cache.write_bytes(b"garbage")
    again = FER2013(fer_csv.path).load("val")
    assert np.array_equal(again.images, first.images)


def test_fingerprint_is_stable_and_tracks_the_pixels(fer_csv, tmp_path, monkeypatch):
    a = FER2013(fer_csv.path).fingerprint()
    b = FER2013(fer_csv.path).fingerprint()  # from the cache
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "fresh"))
    c = FER2013(fer_csv.path).fingerprint()  # decoded again
    assert a == b == c
    other, _ = make_csv(tmp_path / "other.csv", seed=7)
    assert FER2013(other.path).fingerprint() != a


# ------------------------------------------------------------------------------------ the real dataset

REAL = os.environ.get("FER2013_PATH")
REAL_COUNTS = {  # Kaggle FER2013: Training / PublicTest
    "angry": (3995, 467), "disgust": (436, 56), "fear": (4097, 496), "happy": (7215, 895),
    "neutral": (4965, 607), "sad": (4830, 653), "surprise": (3171, 415),
}


@pytest.mark.dataset
@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="set FER2013_PATH to the FER2013 dataset to run")
def test_real_fer2013_counts_and_cached_reload(real_cache):
    src = FER2013(REAL)
    counts = src.counts()
    assert sum(counts["train"].values()) == 28709 and sum(counts["val"].values()) == 3589
    for emotion, (n_train, n_val) in REAL_COUNTS.items():
        assert counts["train"][emotion] == n_train, emotion
        assert counts["val"][emotion] == n_val, emotion
    train, val = src.load("train"), src.load("val")  # decodes once per session (shared cache)
    assert train.counts() == counts["train"] and val.counts() == counts["val"]
    t = time.perf_counter()
    again = FER2013(REAL)
    train2, val2 = again.load("train"), again.load("val")
    seconds = time.perf_counter() - t
    assert seconds < 2.0, f"a cached full load took {seconds:.1f} s"
    assert np.array_equal(train2.labels, train.labels) and np.array_equal(val2.images, val.images)
