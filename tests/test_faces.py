"""fer_core.data.faces: Haar and YuNet on a real photo, boxes in original pixels, the `auto` choice
with its offline fallback and sha256 check, and thread safety."""
import hashlib
import logging
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from fer_core.data import faces
from fer_core.data.faces import HaarDetector, YuNetDetector, create_detector, reading_order, yunet_model_path
from fer_core.inference.live import iou

try:
    from helpers_images import astronaut_bgr, montage, yunet_model
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr, montage, yunet_model

FACE_REGION = (150, 40, 150, 160)  # x 150-300, y 40-200: Eileen Collins's face in the 512x512 photo
BIG = 4000

def needs_yunet(test):
    """A test of the YuNet detector: marked `dataset`, skipped without its model file."""
    skip = pytest.mark.skipif(yunet_model() is None,
                              reason="no YuNet model (set FER_YUNET_MODEL or provide /work/shared/models)")
    return pytest.mark.dataset(skip(test))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test: its own empty cache, no env model, and a fresh 'download failed' flag."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FER_YUNET_MODEL", raising=False)
    monkeypatch.delenv("FER_OFFLINE", raising=False)
    monkeypatch.setattr(faces, "_download_failed", False)


@pytest.fixture(scope="module")
def photo():
    return astronaut_bgr()


@pytest.fixture(scope="module")
def big_photo(photo):
    return cv2.resize(photo, (BIG, BIG), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def group(photo):
    return montage(photo, 2, 3)


@pytest.fixture(scope="module")
def haar():
    return HaarDetector()


@pytest.fixture(scope="module")
def yunet():
    path = yunet_model()
    if path is None:
        pytest.skip("no YuNet model")
    return YuNetDetector(path)


def overlaps_face(box, region=FACE_REGION) -> bool:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    rx, ry, rw, rh = region
    return rx <= cx <= rx + rw and ry <= cy <= ry + rh and iou(box, region) > 0.2


def assert_boxes(boxes, image):
    H, W = image.shape[:2]
    for b in boxes:
        assert isinstance(b, tuple) and len(b) == 4 and all(isinstance(v, int) for v in b)
        x, y, w, h = b
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= W and y + h <= H


# --- Haar ---------------------------------------------------------------------------------------

def test_reading_order_counts_rows_from_the_top_each_left_to_right():
    back = [(420, 80, 100, 100), (120, 100, 100, 100), (270, 70, 100, 100)]  # heads 20-30 px apart in height
    front = [(340, 190, 110, 110), (30, 200, 110, 110), (190, 185, 110, 110)]  # 110 px lower: another row
    assert reading_order(front + back) == sorted(back) + sorted(front)
    line_up = [(100 * i, 40 * i % 90, 100, 100) for i in range(8)]  # heads up to 80 px apart, no two rows
    assert reading_order(line_up[::-1]) == line_up
    slope = [(100 * i, 12 * i, 100, 100) for i in range(8)]  # a tilted line-up, 84 px from end to end
    assert reading_order(slope[::-1]) == slope
    assert reading_order([]) == [] and reading_order([(5, 5, 10, 10)]) == [(5, 5, 10, 10)]


def test_haar_finds_the_one_face(haar, photo):
    boxes = haar.detect(photo)
    assert_boxes(boxes, photo)
    assert len(boxes) == 1
    assert overlaps_face(boxes[0])
    assert 60 <= boxes[0][2] <= 160  # a face-sized box, not the whole picture


def test_haar_on_a_big_picture_returns_original_pixel_boxes(haar, photo, big_photo):
    small = haar.detect(photo)
    big = haar.detect(big_photo)
    assert_boxes(big, big_photo)
    assert len(big) == 1
    scale = BIG / photo.shape[1]  # 7.8125
    scaled_small = tuple(v * scale for v in small[0])
    assert iou(big[0], scaled_small) > 0.5
    assert 0.7 * scale < big[0][2] / small[0][2] < 1.3 * scale
    assert overlaps_face(big[0], tuple(v * scale for v in FACE_REGION))


def test_haar_group_photo(haar, group):
    boxes = haar.detect(group)
    assert_boxes(boxes, group)
    assert 5 <= len(boxes) <= 7
    # one face per tile, and the tiles' faces all lie in the upper part of their tile
    tiles = {(b[1] // 512, b[0] // 512) for b in boxes}
    assert len(tiles) >= 5
    assert all((b[1] % 512) < 256 for b in boxes)


@pytest.mark.parametrize("kind", ["noise", "grey", "black"])
def test_haar_no_face(haar, kind):
    img = {"noise": np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8),
           "grey": np.full((480, 640, 3), 128, np.uint8),
           "black": np.zeros((480, 640, 3), np.uint8)}[kind]
    assert haar.detect(img) == []


def test_haar_tiny_picture(haar):
    assert haar.detect(np.full((10, 12, 3), 200, np.uint8)) == []


# --- YuNet --------------------------------------------------------------------------------------

@needs_yunet
def test_yunet_finds_the_one_face(yunet, haar, photo):
    boxes = yunet.detect(photo)
    assert_boxes(boxes, photo)
    assert len(boxes) == 1
    assert overlaps_face(boxes[0])
    assert iou(boxes[0], haar.detect(photo)[0]) > 0.4


@needs_yunet
def test_yunet_big_picture_in_original_pixels(yunet, photo, big_photo):
    small, big = yunet.detect(photo), yunet.detect(big_photo)
    assert len(small) == 1 and len(big) == 1
    assert_boxes(big, big_photo)
    scale = BIG / photo.shape[1]
    assert iou(big[0], tuple(v * scale for v in small[0])) > 0.5


def close_up(photo, share, size=(3000, 4000)):
    """A portrait photo (3:4) cut around the astronaut's face so that its box is `share` of the width: a selfie
    held close, at a phone's 12 MP."""
    x, y, w, h = 178, 75, 90, 90  # YuNet's box on the astronaut
    width = int(w / share)
    top, left = y + h // 2 - width * 2 // 3 + 600, x + w // 2 - width // 2 + 600
    padded = cv2.copyMakeBorder(photo, 600, 600, 600, 600, cv2.BORDER_REFLECT)
    return cv2.resize(padded[top:top + width * 4 // 3, left:left + width], size, interpolation=cv2.INTER_CUBIC)


@needs_yunet
@pytest.mark.parametrize("share", [0.3, 0.7, 1.0])
def test_yunet_finds_a_close_selfie_whose_face_fills_the_photo(yunet, photo, share):
    """At 1280 px YuNet missed any face over about 60% of the width; a 320-px pass finds it, as one box."""
    big = close_up(photo, share)
    boxes = yunet.detect(big)
    assert_boxes(boxes, big)
    (x, y, w, h), = boxes
    assert abs(w / big.shape[1] - share) < 0.15 and abs(x + w / 2 - 1500) < 300


@needs_yunet
def test_the_close_up_pass_runs_only_on_pictures_read_above_640_px(yunet, photo, monkeypatch):
    calls = []
    monkeypatch.setattr(YuNetDetector, "_close_ups", lambda self, bgr: calls.append(bgr.shape) or np.zeros((0, 4)))
    yunet.detect(cv2.resize(photo, (640, 480)))  # a webcam frame: its own 320-px copy is detected already
    assert calls == []
    assert len(yunet.detect(cv2.resize(photo, (1280, 960)))) == 1 and calls == [(960, 1280, 3)]


def test_add_new_keeps_the_first_boxes_and_adds_only_those_that_overlap_none():
    boxes = np.array([[0, 0, 100, 100], [300, 0, 100, 100]], float)
    more = np.array([[10, 10, 100, 100], [600, 0, 400, 400]], float)  # the first is the same face again
    assert faces._add_new(boxes, more).tolist() == [[0, 0, 100, 100], [300, 0, 100, 100], [600, 0, 400, 400]]
    assert faces._add_new(boxes, np.zeros((0, 4))) is boxes


@needs_yunet
def test_yunet_group_photo(yunet, group):
    boxes = yunet.detect(group)
    assert_boxes(boxes, group)
    assert 5 <= len(boxes) <= 7


@needs_yunet
def test_yunet_no_face(yunet):
    assert yunet.detect(np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []
    assert yunet.detect(np.full((480, 640, 3), 128, np.uint8)) == []


@needs_yunet
@pytest.mark.parametrize("size", [(512, 512), (333, 250), (1280, 853)])
def test_yunet_reads_as_opencvs_face_detector(yunet, group, size):
    """ONNX Runtime's run decoded here gives what cv2.FaceDetectorYN gives on the same model: the same faces,
    boxes and scores, on sizes that are not multiples of 32 (padding) and with six faces (suppression)."""
    from fer_core.data.faces import YUNET_NMS, YUNET_SCORE, YUNET_TOP_K
    picture = cv2.resize(group, size, interpolation=cv2.INTER_AREA)
    opencv = cv2.FaceDetectorYN.create(str(yunet.model_path), "", size, YUNET_SCORE, YUNET_NMS, YUNET_TOP_K)
    expected = opencv.detect(picture)[1][:, [0, 1, 2, 3, 14]]
    ours = yunet.rows(picture)
    assert len(expected) >= 5
    order = np.lexsort(ours.T[:2][::-1]), np.lexsort(expected.T[:2][::-1])
    np.testing.assert_allclose(ours[order[0]], expected[order[1]], atol=1e-3)


def test_a_model_that_is_not_yunet_falls_back_to_haar(monkeypatch, tmp_path, caplog):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    monkeypatch.setenv("FER_YUNET_MODEL", str(path))
    with caplog.at_level(logging.WARNING):
        assert isinstance(create_detector("auto"), HaarDetector)
    assert "is not a YuNet model" in caplog.text and "cls_8" in caplog.text


# --- create_detector ----------------------------------------------------------------------------

def test_create_haar():
    d = create_detector("haar")
    assert isinstance(d, HaarDetector) and d.name == "haar"


@pytest.mark.parametrize("name", ["retinaface", "", None])
def test_unknown_detector_name(name):
    with pytest.raises(ValueError, match="unknown detector"):
        create_detector(name)


@needs_yunet
@pytest.mark.parametrize("name", ["auto", "yunet"])
def test_auto_uses_yunet_from_env(monkeypatch, name):
    monkeypatch.setenv("FER_YUNET_MODEL", str(yunet_model()))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    d = create_detector(name)
    assert isinstance(d, YuNetDetector) and d.name == "yunet"
    assert d.model_path == yunet_model()


def test_env_model_that_does_not_exist_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("FER_YUNET_MODEL", str(tmp_path / "missing.onnx"))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        d = create_detector("auto")
    assert isinstance(d, HaarDetector)
    assert "missing.onnx" in caplog.text and "Haar" in caplog.text


def test_env_model_that_is_not_onnx_falls_back(monkeypatch, tmp_path, caplog):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    monkeypatch.setenv("FER_YUNET_MODEL", str(bad))
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        d = create_detector("auto")
    assert isinstance(d, HaarDetector)
    assert "could not be loaded" in caplog.text


def _no_network(*args, **kwargs):
    raise AssertionError("the network must not be used here")


def test_offline_falls_back_to_haar_with_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("FER_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert not (tmp_path / "cache").exists()  # an empty cache
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        d = create_detector("auto")
    assert isinstance(d, HaarDetector)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Haar" in r.getMessage() for r in warnings)
    assert yunet_model_path() is None


def test_download_failure_falls_back_and_is_not_retried(monkeypatch, tmp_path, caplog):
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        first = create_detector("auto")
    assert isinstance(first, HaarDetector)
    assert calls == [faces.YUNET_URL]
    assert "could not download" in caplog.text and "Network is unreachable" in caplog.text
    assert "Haar" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        second = create_detector("auto")
    assert isinstance(second, HaarDetector)
    assert len(calls) == 1  # the network was tried once per process
    assert "Haar" in caplog.text
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


class _FakeResponse:
    def __init__(self, data):
        self._data = data

    def read(self, n=-1):
        return self._data if n is None or n < 0 else self._data[:n]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_downloaded_file_with_wrong_sha_is_rejected(monkeypatch, tmp_path, caplog):
    fake = b"\0" * faces.YUNET_SIZE  # right size, wrong content
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _FakeResponse(fake))
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        d = create_detector("auto")
    assert isinstance(d, HaarDetector)
    assert "sha256" in caplog.text
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # nothing bad was cached


def test_cached_file_with_wrong_sha_is_ignored(monkeypatch, tmp_path, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / faces.YUNET_URL.rsplit("/", 1)[-1]
    cached.write_bytes(b"\1" * faces.YUNET_SIZE)
    monkeypatch.setenv("FER_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert yunet_model_path() is None
    with caplog.at_level(logging.WARNING, logger="fer_core.data.faces"):
        assert isinstance(create_detector("auto"), HaarDetector)


@needs_yunet
def test_good_download_is_cached_and_used(monkeypatch, tmp_path):
    """With the expected size/sha256 pointed at a real model, a download is verified, written to
    the cache, used, and the next call reads the cache without the network."""
    data = yunet_model().read_bytes()
    monkeypatch.setattr(faces, "YUNET_SIZE", len(data))
    monkeypatch.setattr(faces, "YUNET_SHA256", hashlib.sha256(data).hexdigest())
    calls = []

    def serve(url, *args, **kwargs):
        calls.append(url)
        return _FakeResponse(data)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    d = create_detector("auto")
    assert isinstance(d, YuNetDetector)
    cached = tmp_path / "cache" / faces.YUNET_URL.rsplit("/", 1)[-1]
    assert d.model_path == cached and cached.read_bytes() == data
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp file left behind

    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setenv("FER_OFFLINE", "1")
    again = create_detector("auto")
    assert isinstance(again, YuNetDetector) and again.model_path == cached
    assert len(calls) == 1


# --- threads ------------------------------------------------------------------------------------

def _concurrent(detector, images, n=20):
    # OpenCV's Haar cascade returns its boxes in a run-dependent order (it detects in parallel
    # internally), even from one thread; the boxes themselves must be identical.
    expected = [sorted(detector.detect(img)) for img in images]
    jobs = [images[i % len(images)] for i in range(n)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(detector.detect, jobs))
    for i, boxes in enumerate(got):
        assert sorted(boxes) == expected[i % len(images)]
    return expected


@pytest.mark.slow
def test_haar_is_thread_safe(haar, photo, group):
    one = cv2.resize(photo, (320, 320))
    expected = _concurrent(haar, [one, cv2.resize(group, (600, 400)), one[:, ::-1].copy()])
    assert len(expected[0]) == 1 and len(expected[1]) >= 5


@pytest.mark.slow
@needs_yunet
def test_yunet_is_thread_safe(yunet, photo, group):
    # different input sizes from different threads: setInputSize must not race with detect
    expected = _concurrent(yunet, [photo, cv2.resize(group, (600, 400)), cv2.resize(photo, (300, 300))])
    assert len(expected[0]) == 1 and len(expected[1]) >= 5
