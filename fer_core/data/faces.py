"""Face detectors: `haar` (OpenCV's bundled cascade) and `yunet` (OpenCV zoo's YuNet, run by ONNX Runtime). Both
return boxes as (x, y, w, h) in the original picture's pixels, sorted left to right.

`create_detector("auto")` picks YuNet when its model is available: from env FER_YUNET_MODEL,
else a cached copy of the official opencv_zoo file, downloaded once and checked against its
sha256. Offline, it falls back to Haar with a logged warning. Large pictures are downscaled for
detection and the boxes mapped back to original pixels.
"""
import hashlib
import logging
import os
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from ..atomic import write_bytes_atomic
from ..ort_options import DETECTOR_SPIN_US, session_options, usable_cpus
from .detectors import DETECTORS
from .fer2013 import cache_dir
from .images import downscale

log = logging.getLogger(__name__)

ROW_SHARE = 0.5  # reading_order: a face is in a row when its centre is this share of a face or less below it
HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_MAX_SIDE = 1024  # detect on at most this many pixels per side
HAAR_MIN_FACE = 0.05  # smallest face, as a share of the picture's shorter side (at least 24 px)
HAAR_NEIGHBORS = 6  # higher = fewer false faces
YUNET_MAX_SIDE = 1280  # detect on at most this many pixels per side: a face of 5% of a 12-MP photo's height is
# then 48 px, which YuNet finds (300 real faces: 97% at 1280, 77% at 960, 5% at 640; `python -m fer_core recall`)
YUNET_CLOSE_SIDE = 320  # and again at this size when it read more than twice it: a face over about 60% of the
# picture's width escapes YuNet at 1280 px (a close selfie); at 320 px it is found up to the whole width
YUNET_CLOSE_FACE = 1 / 3  # from that pass, only faces at least this share of the picture's shorter side
YUNET_SCORE = 0.7  # smallest face score kept
YUNET_NMS = 0.3  # boxes overlapping a better one by more than this IoU are dropped
YUNET_TOP_K = 5000  # at most this many boxes enter suppression
YUNET_STRIDES = (8, 16, 32)  # its three output scales, in pixels per grid cell
YUNET_URL = ("https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
             "face_detection_yunet_2023mar.onnx")
YUNET_SIZE = 232589
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
_download_failed = False  # try the network once per process


def _clip_box(x, y, w, h, width, height):
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


class HaarDetector:
    name = "haar"
    max_side = HAAR_MAX_SIDE  # larger pictures are downscaled to this before detection

    def __init__(self):
        self._cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, HAAR_FILE))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's {HAAR_FILE} is missing; install opencv-python-headless>=4.10,<5")
        self._lock = threading.Lock()

    def detect(self, bgr: np.ndarray, min_face: float = HAAR_MIN_FACE) -> list:
        """Boxes of faces at least `min_face` of the picture's shorter side (and 24 px) wide."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        small, scale = downscale(gray, self.max_side)
        side = max(24, int(min_face * min(small.shape)))
        # Equalised first (fewer false faces in busy pictures), then, when that finds none, as it is: a global
        # equalisation lets a large plain background wash a face out (a 24-MP photo whose face spans 11% of its
        # height had none). On 200 real val photos of wild_photos: 183 with a face equalised, 186 as they are.
        with self._lock:
            for picture in (cv2.equalizeHist(small), small):
                found = self._cascade.detectMultiScale(picture, scaleFactor=1.1, minNeighbors=HAAR_NEIGHBORS,
                                                       minSize=(side, side))
                if len(found):
                    break
        boxes = [_clip_box(*(v / scale for v in b), bgr.shape[1], bgr.shape[0]) for b in np.asarray(found)]
        return sorted(b for b in boxes if b)


class YuNetDetector:
    """YuNet run by ONNX Runtime and decoded as cv2.FaceDetectorYN decodes it (the same boxes to 1e-3 px): twice as
    fast as OpenCV's DNN module on 2 cores, 1.1 against 1.9-3.3 ms for a 320x240 webcam copy and 16-24 against
    35-42 ms at 1280 px (docs/speed.md). Safe to share between threads."""
    name = "yunet"
    max_side = YUNET_MAX_SIDE  # larger pictures are downscaled to this before detection

    def __init__(self, model_path):
        import onnxruntime as ort
        self.model_path = Path(model_path)
        # Spinning briefly (ort_options): the classifier's session runs next, and two sessions spinning without
        # bound on 2 cores slowed a webcam frame from 3.1 to 7.5 ms (AVX2 code paths; docs/speed.md)
        options = session_options(usable_cpus(), DETECTOR_SPIN_US)
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{head}_{stride}" for head in ("cls", "obj", "bbox") for stride in YUNET_STRIDES]
        missing = set(self._outputs) - {o.name for o in self._session.get_outputs()}
        if missing:
            raise ValueError(f"{model_path} is not a YuNet model: it has no output {', '.join(sorted(missing))}")

    def detect(self, bgr: np.ndarray, min_face: float = 0.0) -> list:
        """Boxes of faces at least `min_face` of the picture's shorter side wide. A picture read at more than
        twice YUNET_CLOSE_SIDE is also read at that size for close-ups, which YuNet misses at large sizes."""
        small, scale = downscale(bgr, self.max_side)
        found = self.rows(small)[:, :4] / scale
        if max(small.shape[:2]) > 2 * YUNET_CLOSE_SIDE:
            found = _add_new(found, self._close_ups(small) / scale)
        boxes = [_clip_box(*_square(*row), bgr.shape[1], bgr.shape[0]) for row in found]
        smallest = min_face * min(bgr.shape[:2])
        return sorted(b for b in boxes if b and b[2] >= smallest)

    def _close_ups(self, bgr: np.ndarray) -> np.ndarray:
        """Boxes (x, y, w, h) in `bgr`'s pixels of faces at least YUNET_CLOSE_FACE of its shorter side, found on a
        YUNET_CLOSE_SIDE copy."""
        close, scale = downscale(bgr, YUNET_CLOSE_SIDE)
        boxes = self.rows(close)[:, :4] / scale
        return boxes[boxes[:, 2] >= YUNET_CLOSE_FACE * min(bgr.shape[:2])]

    def rows(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet's faces in `bgr` as it is (no downscaling): rows (x, y, w, h, score), YuNet's own boxes."""
        return yunet_decode(self._session.run(self._outputs, {self._input: yunet_blob(bgr)}), bgr.shape)


def _add_new(boxes: np.ndarray, more: np.ndarray) -> np.ndarray:
    """`boxes` and those of `more` that overlap none of them by more than YUNET_NMS (IoU)."""
    new = [b for b in more if all(iou(b, a) <= YUNET_NMS for a in boxes)]
    return np.concatenate([boxes, np.reshape(new, (-1, 4))]) if new else boxes


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def yunet_blob(bgr: np.ndarray) -> np.ndarray:
    """YuNet's input: the BGR picture as float [1, 3, H, W], zero-padded right and down to multiples of 32."""
    h, w = bgr.shape[:2]
    blob = np.zeros((1, 3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
    return blob


def yunet_decode(outputs, shape) -> np.ndarray:
    """Rows (x, y, w, h, score) from YuNet's outputs (cls, obj and bbox, each for strides 8, 16 and 32, in that
    order) for a picture of `shape`: score sqrt(cls * obj) of at least YUNET_SCORE, then non-maximum suppression
    (IoU YUNET_NMS) over the integer boxes, as OpenCV does."""
    grid_w = -(-shape[1] // 32) * 32
    rows = []
    for i, stride in enumerate(YUNET_STRIDES):
        cls, obj, box = outputs[i][0, :, 0], outputs[i + 3][0, :, 0], outputs[i + 6][0]
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= YUNET_SCORE)
        row, col = np.divmod(keep, grid_w // stride)
        w, h = np.exp(box[keep, 2]) * stride, np.exp(box[keep, 3]) * stride
        cx, cy = (col + box[keep, 0]) * stride, (row + box[keep, 1]) * stride
        rows.append(np.stack([cx - w / 2, cy - h / 2, w, h, score[keep]], axis=1))
    found = np.concatenate(rows)
    if len(found) > 1:
        keep = cv2.dnn.NMSBoxes(found[:, :4].astype(np.int32).tolist(), found[:, 4].tolist(), YUNET_SCORE,
                                YUNET_NMS, 1.0, YUNET_TOP_K)
        found = found[np.asarray(keep, dtype=int).ravel()]
    return found


def reading_order(boxes) -> list:
    """Boxes (x, y, w, h) in reading order: rows of faces from the top, each row left to right, as people
    count a group photo. Taken from the top, a box joins the last row when its centre is at most ROW_SHARE of
    that row's mean face height below the row's mean centre, so a line-up whose heads sit a little higher or
    lower stays one row, left to right."""
    rows = []
    for box in sorted(boxes, key=_centre_y):
        if rows and _centre_y(box) - np.mean([_centre_y(b) for b in rows[-1]]) <= ROW_SHARE * _height(rows[-1]):
            rows[-1].append(box)
        else:
            rows.append([box])
    return [box for row in rows for box in sorted(row)]


def _centre_y(box):
    return box[1] + box[3] / 2


def _height(row):
    return np.mean([b[3] for b in row])


def _square(x, y, w, h):
    """YuNet's boxes run from brow to chin; a square of the face's width around the same centre
    frames the face like Haar's boxes (and FER2013's crops) do."""
    return x, y + (h - w) / 2, w, w


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def yunet_model_path():
    """The YuNet ONNX file to use, or None when there is none and it cannot be downloaded."""
    global _download_failed
    env = os.environ.get("FER_YUNET_MODEL")
    if env:
        if Path(env).is_file():
            return Path(env)
        log.warning("FER_YUNET_MODEL=%s does not exist", env)
        return None
    cached = cache_dir() / YUNET_URL.rsplit("/", 1)[-1]
    if cached.is_file() and cached.stat().st_size == YUNET_SIZE and _sha256(cached) == YUNET_SHA256:
        return cached
    if _download_failed or os.environ.get("FER_OFFLINE") == "1":
        return None
    try:
        with urllib.request.urlopen(YUNET_URL, timeout=10) as r:
            data = r.read(YUNET_SIZE + 1)
        if len(data) != YUNET_SIZE or hashlib.sha256(data).hexdigest() != YUNET_SHA256:
            raise ValueError("the downloaded file does not match the expected size and sha256")
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cached, data)
        return cached
    except Exception as e:  # offline, proxy, HTTP error, bad file: all mean "use Haar"
        _download_failed = True
        log.warning("could not download the YuNet face detector (%s)", e)
        return None


def create_detector(name: str = "auto"):
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if name == "haar":
        return HaarDetector()
    path = yunet_model_path()
    if path is not None:
        try:
            return YuNetDetector(path)
        except Exception as e:  # not an ONNX file, or not YuNet's: ONNX Runtime's own error types
            log.warning("YuNet model %s could not be loaded: %s", path, e)
    log.warning("YuNet is not available; falling back to the Haar cascade detector")
    return HaarDetector()
