"""A peer to measure ours against on real photos: OpenCV zoo's facial expression model.

`facial_expression_recognition_mobilefacenet_2022july_int8.onnx` (MobileFaceNet trained on RAF-DB,
Apache-2.0, from github.com/opencv/opencv_zoo) reads a colour face aligned by YuNet's five landmarks
to 112x112. It is not ours and was trained on other data (RAF-DB: about 15,000 in-the-wild web faces),
so it is offered only for comparison: `evaluate --peer PATH` reads the same photos, with the same
YuNet, beside our models. The file is checked against its published sha256 before it is used.
"""
import hashlib
from pathlib import Path

import cv2
import numpy as np

from ..data.emotions import EMOTIONS
from ..errors import WeightsError

NAME = "opencv_zoo_fer (MobileFaceNet, RAF-DB, int8)"
SHA256 = "f0d7093aff10e2638c734c5f18a6a7eabd2b9239b20bdb9b8090865a6f69a1ed"
ORDER = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # the model's outputs, renamed
SIZE = 112
# Where the eyes, nose tip and mouth corners of a frontal face sit in a 112x112 crop (the ArcFace template,
# left to right in the picture), which the five landmarks are mapped onto by a similarity transform.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def _ordered(points: np.ndarray) -> np.ndarray:
    """YuNet's five points (two eyes, nose, two mouth corners) with each pair sorted left to right."""
    eyes, nose, mouth = points[:2], points[2:3], points[3:5]
    return np.concatenate([eyes[np.argsort(eyes[:, 0])], nose, mouth[np.argsort(mouth[:, 0])]]).astype(np.float32)


def align(bgr: np.ndarray, landmarks) -> np.ndarray:
    """The face whose five landmarks are given, warped to the 112x112 template (BGR)."""
    m, _ = cv2.estimateAffinePartial2D(_ordered(np.asarray(landmarks, np.float32).reshape(5, 2)), TEMPLATE,
                                       method=cv2.LMEDS)
    if m is None:
        raise ValueError("the five landmarks do not determine a similarity transform")
    return cv2.warpAffine(bgr, m, (SIZE, SIZE), borderMode=cv2.BORDER_CONSTANT)


class ZooFER:
    """The OpenCV zoo model, read by cv2.dnn. `probabilities(bgr, landmarks)` -> [7] in EMOTIONS order."""
    name = NAME

    def __init__(self, path):
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"peer model not found: {path}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != SHA256:
            raise WeightsError(f"{path} is not OpenCV zoo's facial expression model (sha256 {digest[:12]}..., "
                               f"expected {SHA256[:12]}...)")
        self.net = cv2.dnn.readNet(str(path))
        self._to_ours = [ORDER.index(e) for e in EMOTIONS]

    def probabilities(self, bgr: np.ndarray, landmarks) -> np.ndarray:
        face = cv2.cvtColor(align(bgr, landmarks), cv2.COLOR_BGR2RGB).astype(np.float32)
        blob = ((face / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        self.net.setInput(np.ascontiguousarray(blob))
        logits = self.net.forward().reshape(-1).astype(np.float64)
        p = np.exp(logits - logits.max())
        return (p / p.sum())[self._to_ours]


class LandmarkDetector:
    """YuNet returning the largest face's five landmarks, chosen as faces.YuNetDetector chooses the face."""

    def __init__(self, model_path):
        from ..data.faces import YUNET_MAX_SIDE, YUNET_NMS, YUNET_SCORE, YUNET_TOP_K
        self.max_side = YUNET_MAX_SIDE
        self.net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), YUNET_SCORE, YUNET_NMS, YUNET_TOP_K)

    def largest(self, bgr: np.ndarray):
        """Landmarks [5, 2] in the picture's pixels of the widest face, or None."""
        from ..data.images import downscale
        small, scale = downscale(bgr, self.max_side)
        self.net.setInputSize((small.shape[1], small.shape[0]))
        _, found = self.net.detect(small)
        if found is None or not len(found):
            return None
        row = max(found, key=lambda r: r[2])
        return row[4:14].reshape(5, 2) / scale


def photo_probabilities(peer: ZooFER, photos, split: str, detector: LandmarkDetector):
    """(probabilities [N, 7], labels [N], names of photos with no face) of the peer on a PhotoSet's split."""
    probs, labels, no_face = [], [], []
    for e, bgr in photos.photos(split):
        points = detector.largest(bgr) if bgr is not None else None
        if points is None:
            no_face.append(e.name)
            continue
        probs.append(peer.probabilities(bgr, points))
        labels.append(e.label)
    return np.asarray(probs).reshape(-1, len(EMOTIONS)), np.asarray(labels, dtype=np.int64), no_face
