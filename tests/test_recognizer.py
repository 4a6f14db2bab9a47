"""EmotionRecognizer with a tiny seeded model: results, ordering, the shared preprocessing path,
input checks, thread safety, tampered weights, and the package's light import."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fer_core
from fer_core import EMOTIONS, EmotionRecognizer, InvalidImageError
from fer_core.errors import WeightsError
from fer_core.data.preprocess import FACE_SIZE, crop_face
from fer_core.inference.recognizer import FaceResult

try:
    from helpers_images import TINY_MODEL, astronaut_bgr, astronaut_rgb, encode, make_tiny_weights, montage
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import TINY_MODEL, astronaut_bgr, astronaut_rgb, encode, make_tiny_weights, montage

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def rec(weights):
    return EmotionRecognizer(weights_dir=weights, detector="haar")


@pytest.fixture(scope="module")
def photo():
    return astronaut_bgr()


def check_result(r, image_shape):
    assert isinstance(r, FaceResult)
    assert isinstance(r.box, tuple) and len(r.box) == 4 and all(type(v) is int for v in r.box)
    x, y, w, h = r.box
    assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= image_shape[1] and y + h <= image_shape[0]
    assert r.label in EMOTIONS
    assert list(r.scores) == list(EMOTIONS)
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in r.scores.values())
    assert abs(sum(r.scores.values()) - 1.0) < 1e-4
    assert r.confidence == max(r.scores.values())
    assert r.label == max(r.scores, key=r.scores.get)
    assert r.label == EMOTIONS[int(np.argmax([r.scores[e] for e in EMOTIONS]))]


def test_recognizer_uses_the_card(rec):
    assert rec.name == TINY_MODEL
    assert rec.detector_name == "haar"
    assert rec.card["arch"] == "mini_xception"
    assert not rec.model.training


def test_predict_on_a_photo(rec, photo):
    results = rec.predict(photo)
    assert len(results) == 1
    check_result(results[0], photo.shape)
    x, y, w, h = results[0].box
    assert 150 <= x + w / 2 <= 300 and 40 <= y + h / 2 <= 200  # on Eileen Collins's face


@pytest.mark.slow
def test_predict_every_input_kind_gives_the_same_result(rec, photo, tmp_path):
    png = encode(Image.fromarray(astronaut_rgb()), "PNG")
    path = tmp_path / "astronaut.png"
    path.write_bytes(png)
    expected = rec.predict(photo)
    for source in (str(path), path, png, Image.fromarray(astronaut_rgb())):
        got = rec.predict(source)
        assert len(got) == 1
        assert got[0].box == expected[0].box
        assert got[0].label == expected[0].label
        np.testing.assert_allclose(list(got[0].scores.values()), list(expected[0].scores.values()), atol=1e-6)


def test_predict_on_a_large_jpeg_gives_boxes_in_its_own_pixels(rec, tmp_path):
    """A 12-MP JPEG (a path, as `predict` on the command line gets it) is decoded at half size for the detector;
    the box still comes in the photo's own pixels, where the whole picture's decode puts it."""
    import cv2
    big = cv2.resize(astronaut_rgb(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.jpg"
    path.write_bytes(encode(Image.fromarray(big), "JPEG", quality=92))
    whole, = rec.predict(np.ascontiguousarray(big[:, :, ::-1]))
    got, = rec.predict(path)
    assert got.label == whole.label and np.abs(np.subtract(got.box, whole.box)).max() <= 12
    x, y, w, h = got.box
    assert 1000 < x and x + w <= 4000 and w > 400  # not the half-size picture's pixels
    assert FaceResult((1999, 10, 1, 5), "happy", 1.0, {}).scaled(2.0, (4000, 3000)).box == (3998, 20, 2, 10)
    assert FaceResult((1999, 10, 3, 5), "happy", 1.0, {}).scaled(2.0, (4000, 3000)).box == (3998, 20, 2, 10)


def test_to_dict_is_json_ready(rec, photo):
    import json
    d = rec.predict(photo)[0].to_dict()
    assert set(d) == {"box", "label", "confidence", "scores"}
    assert isinstance(d["box"], list) and len(d["box"]) == 4
    assert json.loads(json.dumps(d)) == d


def test_results_are_left_to_right(rec, photo):
    row = montage(photo, 1, 3)
    results = rec.predict(row)
    assert len(results) == 3
    xs = [r.box[0] for r in results]
    assert xs == sorted(xs)
    assert [x // 512 for x in xs] == [0, 1, 2]  # one face per tile
    for r in results:
        check_result(r, row.shape)


def test_results_of_a_group_in_rows_are_in_reading_order(rec, photo):
    """Two rows of three: the top row left to right, then the bottom row, as the upload page numbers them."""
    grid = montage(photo, 2, 3)
    tiles = [(r.box[1] // 512, r.box[0] // 512) for r in rec.predict(grid)]
    assert tiles == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_no_face_gives_empty_list(rec):
    assert rec.predict(np.full((480, 640, 3), 128, np.uint8)) == []
    assert rec.predict(np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)) == []


@pytest.mark.slow
def test_detect_matches_predict_boxes(rec, photo):
    row = montage(photo, 1, 3)
    assert sorted(rec.detect(row)) == [r.box for r in rec.predict(row)]  # one row: reading order is left to right


@pytest.mark.parametrize("bad", [b"", b"not an image at all", "no/such/file.jpg", 7, np.zeros((5, 5, 7), np.uint8)])
def test_invalid_input(rec, bad):
    with pytest.raises(InvalidImageError):
        rec.predict(bad)
    with pytest.raises(InvalidImageError):
        rec.detect(bad)


# --- classify and the single preprocessing path --------------------------------------------------

def test_classify_shapes_and_probabilities(rec):
    faces = np.random.default_rng(0).integers(0, 256, (5, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    probs = rec.classify(faces)
    assert probs.shape == (5, len(EMOTIONS))
    assert np.issubdtype(probs.dtype, np.floating)
    assert (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(probs[0], probs[1])  # different faces, different outputs
    one = rec.classify(faces[2])  # a single [48, 48] face
    assert one.shape == (1, len(EMOTIONS))
    np.testing.assert_allclose(one[0], probs[2], atol=1e-5)
    assert rec.classify(np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8)).shape == (0, len(EMOTIONS))


def test_classify_matches_predict(rec, photo):
    row = montage(photo, 1, 3)
    results = rec.predict(row)
    crops = np.stack([crop_face(row, r.box) for r in results])
    assert crops.shape == (3, FACE_SIZE, FACE_SIZE) and crops.dtype == np.uint8
    probs = rec.classify(crops)
    for r, p in zip(results, probs):
        np.testing.assert_allclose([r.scores[e] for e in EMOTIONS], p, atol=1e-6)
        assert r.label == EMOTIONS[int(p.argmax())]
    # the mirrored tile really is a different face to the model
    assert not np.allclose(probs[0], probs[1], atol=1e-6)


def test_flip_tta_is_the_geometric_mean_of_the_face_and_its_mirror(photo):
    """Averaging two views' logits and applying softmax = the normalised geometric mean of their probabilities
    (a shipped model: the tiny one's outputs are all close to 1/7)."""
    rec = EmotionRecognizer("mini_xception", detector="haar")
    result, = rec.predict(photo, tta="flip")
    face = crop_face(photo, result.box)
    alone, mirrored = rec.classify(np.stack([face, face[:, ::-1]]))
    expected = np.sqrt(alone * mirrored)
    expected /= expected.sum()
    np.testing.assert_allclose(rec.classify(face, tta="flip")[0], expected, atol=1e-5)
    np.testing.assert_allclose([result.scores[e] for e in EMOTIONS], expected, atol=1e-5)
    assert np.abs(expected - alone).max() > 0.01
    plain, = rec.predict(photo)
    np.testing.assert_allclose([plain.scores[e] for e in EMOTIONS], alone, atol=1e-5)
    ten = rec.classify(face, tta="tencrop")
    assert ten.shape == (1, len(EMOTIONS)) and np.abs(ten[0] - expected).max() > 0.001
    with pytest.raises(ValueError, match="tta must be one of none, flip, tencrop"):
        rec.classify(face, tta="mirror")


@pytest.mark.parametrize("bad", [
    np.zeros((2, FACE_SIZE, FACE_SIZE), np.float32),
    np.zeros((2, FACE_SIZE, FACE_SIZE), np.int64),
    np.zeros((2, 64, 64), np.uint8),
    np.zeros((2, FACE_SIZE, FACE_SIZE, 3), np.uint8),
    np.zeros((FACE_SIZE,), np.uint8),
])
def test_classify_rejects_wrong_dtype_or_shape(rec, bad):
    with pytest.raises(ValueError, match="uint8"):
        rec.classify(bad)


# --- threads ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_concurrent_predict_matches_sequential(rec, photo):
    images = [photo, montage(photo, 1, 3), photo[:, ::-1].copy(), np.full((200, 200, 3), 90, np.uint8)]
    expected = [rec.predict(img) for img in images]
    jobs = [i % len(images) for i in range(12)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: rec.predict(images[i]), jobs))
    for i, results in zip(jobs, got):
        assert [r.box for r in results] == [r.box for r in expected[i]]
        assert [r.label for r in results] == [r.label for r in expected[i]]
        for a, b in zip(results, expected[i]):
            np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-6)


# --- weights ------------------------------------------------------------------------------------

def test_weights_dir_from_env(weights, photo):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_WEIGHTS_DIR", str(weights))
        rec = EmotionRecognizer(detector="haar")
        assert rec.name == TINY_MODEL
        assert len(rec.predict(photo)) == 1
        rec2 = EmotionRecognizer(model=TINY_MODEL, detector="haar")
        assert rec2.name == TINY_MODEL


def test_unknown_model_name(weights):
    with pytest.raises(WeightsError, match=f"shipped: {TINY_MODEL}"):
        EmotionRecognizer(model="nope", weights_dir=weights, detector="haar")


def test_empty_weights_dir(tmp_path):
    with pytest.raises(WeightsError, match="no shipped models"):
        EmotionRecognizer(weights_dir=tmp_path, detector="haar")


def test_tampered_weights_are_refused(tmp_path):
    d = make_tiny_weights(tmp_path / "w")
    pt = d / f"{TINY_MODEL}.pt"
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    pt.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        EmotionRecognizer(weights_dir=d, detector="haar")


def test_missing_weights_file_is_refused(tmp_path):
    d = make_tiny_weights(tmp_path / "w")
    (d / f"{TINY_MODEL}.pt").unlink()
    with pytest.raises(WeightsError, match="missing"):
        EmotionRecognizer(weights_dir=d, detector="haar")


def test_same_seed_same_model(weights, tmp_path):
    """The fixture is reproducible: the same seed saves byte-identical weights."""
    again = make_tiny_weights(tmp_path / "w")
    assert (again / f"{TINY_MODEL}.pt").read_bytes() == (weights / f"{TINY_MODEL}.pt").read_bytes()


# --- the package's surface ------------------------------------------------------------------------

def test_public_names():
    assert fer_core.EmotionRecognizer is EmotionRecognizer
    assert fer_core.EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert issubclass(InvalidImageError, ValueError)
    assert issubclass(WeightsError, ValueError)
    with pytest.raises(AttributeError):
        fer_core.NoSuchThing  # noqa: B018


@pytest.mark.slow
def test_import_is_light():
    code = ("import fer_core, sys; "
            "print('fer_core.inference.recognizer' in sys.modules, 'torch' in sys.modules, 'cv2' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False"]
