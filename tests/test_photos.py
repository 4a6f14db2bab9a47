"""Real-photo datasets (fer_core/photos.py): a small photo set made here from scikit-image's astronaut
(a real portrait), in both layouts, read through the app's detector and crop_face."""
import zipfile

import cv2
import numpy as np
import pytest

from fer_core import photos
from fer_core.data import FER2013, open_dataset
from fer_core.errors import DatasetError
from fer_core.faces import HaarDetector
from fer_core.preprocess import crop_face
from helpers_images import astronaut_bgr


def _variant(i: int) -> np.ndarray:
    """The astronaut, mirrored every other time, brighter or darker, and shrunk to at most 160 px like the
    shared real-photo set."""
    img = astronaut_bgr()[:, ::-1 if i % 2 else 1]
    img = np.clip(img.astype(np.int16) + (i % 3 - 1) * 15, 0, 255).astype(np.uint8)
    return cv2.resize(img, (160, 160), interpolation=cv2.INTER_AREA)


def _write(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def make_folder_set(root):
    """train/happy (3), train/neutral (2), val/happy (2), and one photo without a face in val/sad."""
    for split, emotion, n in (("train", "happy", 3), ("train", "neutral", 2), ("val", "happy", 2)):
        for i in range(n):
            _write(root / split / emotion / f"{emotion}_{i}.jpg", _variant(i))
    _write(root / "val" / "sad" / "wall.jpg", np.full((120, 160, 3), 128, np.uint8))
    return root


def make_csv_zip(tmp_path):
    """A .zip holding set/labels.csv (file, emotion, split) and set/img/*.jpg, with two bad rows."""
    root = tmp_path / "csvset"
    rows = ["file,emotion,split"]
    for i in range(4):
        _write(root / "set" / "img" / f"p{i}.jpg", _variant(i))
        rows.append(f"img/p{i}.jpg,{'happiness' if i < 3 else 'neutral'},{'train' if i < 2 else 'val'}")
    rows += ["img/p0.jpg,contempt,train", "img/missing.jpg,happy,train"]
    (root / "set" / "labels.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "csvset.zip"
    with zipfile.ZipFile(path, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(root).as_posix())
    return path


def test_folder_set_crops_the_largest_face_like_the_upload_page(tmp_path):
    ds = photos.PhotoSet(make_folder_set(tmp_path / "set"), detector="haar")
    assert ds.layout == "folder" and ds.splits == ("train", "val")
    assert ds.counts()["train"]["happy"] == 3 and ds.counts()["val"]["sad"] == 1
    train, val = ds.load("train"), ds.load("val")
    assert train.images.shape == (5, 48, 48) and train.images.dtype == np.uint8
    assert val.counts()["happy"] == 2 and val.counts()["sad"] == 0  # the wall has no face ...
    assert ds.no_face == {"train": [], "val": ["val/sad/wall.jpg"], "test": []}  # ... and is named, not lost
    img = cv2.imread(str(tmp_path / "set" / "train" / "happy" / "happy_1.jpg"))
    boxes = HaarDetector().detect(img)
    want = crop_face(img, max(boxes, key=lambda b: b[2] * b[3]))
    i = list(train.names).index("train/happy/happy_1.jpg")
    assert np.array_equal(train.images[i], want)


def test_labels_csv_in_a_zip_with_synonyms_and_bad_rows(tmp_path):
    ds = photos.PhotoSet(make_csv_zip(tmp_path), detector="haar")
    assert ds.layout == "zip"
    assert ds.counts() == {"train": {**dict.fromkeys(("angry", "disgust", "fear", "sad", "surprise", "neutral"), 0),
                                     "happy": 2},
                           "val": {**dict.fromkeys(("angry", "disgust", "fear", "sad", "surprise"), 0),
                                   "happy": 1, "neutral": 1}}
    assert any("unknown emotion 'contempt'" in p for p in ds.problems)
    assert any("img/missing.jpg is not in the dataset" in p for p in ds.problems)
    assert list(ds.load("val").names) == ["set/img/p2.jpg", "set/img/p3.jpg"]


def test_crops_are_cached_and_the_cache_follows_the_detector(tmp_path, monkeypatch):
    path = make_folder_set(tmp_path / "set")
    first = photos.PhotoSet(path, detector="haar")
    fingerprint = first.fingerprint()
    monkeypatch.setattr(photos, "largest_face", lambda *a: pytest.fail("cropped again despite the cache"))
    again = photos.PhotoSet(path, detector="haar")
    assert again.fingerprint() == fingerprint and again.no_face["val"] == ["val/sad/wall.jpg"]
    assert np.array_equal(again.load("train").images, first.load("train").images)


def test_open_dataset_tells_photos_from_fer2013(tmp_path, kaggle_zip):
    assert isinstance(open_dataset(kaggle_zip.path), FER2013)
    assert isinstance(open_dataset(make_folder_set(tmp_path / "set")), photos.PhotoSet)
    assert photos.is_photo_set(make_csv_zip(tmp_path))


def test_bad_photo_sets_say_why(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        photos.PhotoSet(tmp_path / "nowhere")
    (tmp_path / "loose").mkdir()
    _write(tmp_path / "loose" / "a.jpg", _variant(0))
    with pytest.raises(DatasetError, match="no labelled photos.*not inside a folder named after an emotion"):
        photos.PhotoSet(tmp_path / "loose")
    bad = tmp_path / "badcsv"
    bad.mkdir()
    (bad / "labels.csv").write_text("name,label\nx.jpg,happy\n")
    with pytest.raises(DatasetError, match="'file' and 'emotion'"):
        photos.PhotoSet(bad)
    empty = tmp_path / "faceless"
    _write(empty / "train" / "happy" / "wall.jpg", np.full((100, 100, 3), 90, np.uint8))
    with pytest.raises(DatasetError, match="no face found in any photo"):
        photos.PhotoSet(empty, detector="haar").load("train")
