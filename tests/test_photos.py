"""Real-photo datasets (fer_core/data/photos.py): a small photo set made here from scikit-image's astronaut
(a real portrait), in both layouts, read through the app's detector and crop_face."""
import zipfile

import cv2
import numpy as np
import pytest

from fer_core.data import photos
from fer_core.data.fer2013 import FER2013, open_dataset
from fer_core.errors import DatasetError
from fer_core.data.faces import HaarDetector
from fer_core.data.preprocess import crop_face
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


@pytest.mark.slow
def test_evaluate_on_a_photo_set_side_by_side_and_into_the_cards(tmp_path):
    """`evaluate --data PHOTOS` reads the photos like the upload page, names the faceless one, compares models
    side by side and, with --write-card, stores the metrics and the set's fingerprint in each card."""
    import json

    from fer_core.models import card_schema
    from helpers_data import cli_env, run_cli
    from helpers_images import make_tiny_weights
    make_tiny_weights(tmp_path / "w")
    make_tiny_weights(tmp_path / "w", name="tiny2", seed=1, default=False)
    photos_dir = make_folder_set(tmp_path / "set")
    env = cli_env(FER_CACHE_DIR=tmp_path / "cache", FER_WEIGHTS_DIR=tmp_path / "w", FER_YUNET_MODEL="",
                  FER_OFFLINE="1")
    result = run_cli("evaluate", "--model", "tiny", "tiny2", "--data", photos_dir, "--tta", "flip", "--write-card",
                     env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"tiny", "tiny2"} and rows["tiny"][1:3] == ["2", "1"]  # 2 faces read, 1 photo without one
    for name in ("tiny", "tiny2"):
        card = json.loads((tmp_path / "w" / f"{name}.json").read_text())
        assert card_schema.validate(card) == []
        assert card["metrics"]["set"]["val_tta"]["n"] == 2 and card["metrics"]["set"]["val_tta"]["no_face"] == 1
        assert card["datasets"]["set"]["source"] == "set" and card["datasets"]["set"]["no_face"] == {"val": 1}
    result = run_cli("evaluate", "--model", "tiny", "--data", photos_dir, "--peer", tmp_path / "w" / "tiny.pt",
                     env=env)
    assert result.returncode == 2 and "is not OpenCV zoo's facial expression model" in result.stderr
