"""EmotionRecognizer: faces and their emotions in a picture, from a shipped model."""
import logging
import threading
from dataclasses import dataclass, replace

import numpy as np

from ..data.emotions import EMOTIONS
from ..data.faces import create_detector, reading_order
from ..data.images import load_image, load_image_reduced
from ..data.preprocess import FACE_SIZE, crop_face
from ..errors import FerError
from ..models.cards import find_card
from . import int8_runtime

log = logging.getLogger(__name__)
BACKENDS = ("int8", "torch")


@dataclass
class FaceResult:
    box: tuple  # (x, y, w, h) in the original picture's pixels
    label: str
    confidence: float
    scores: dict  # {emotion: probability}, EMOTIONS order

    def scaled(self, factor: float, size: tuple) -> "FaceResult":
        """This face with its box multiplied by `factor` and kept inside a picture of `size` (width, height)."""
        if factor == 1:
            return self
        x, y, w, h = self.box
        x0, y0 = round(x * factor), round(y * factor)
        x1, y1 = min(size[0], round((x + w) * factor)), min(size[1], round((y + h) * factor))
        return replace(self, box=(x0, y0, x1 - x0, y1 - y0))

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "confidence": round(self.confidence, 4),
                "scores": {k: round(v, 4) for k, v in self.scores.items()}}


class EmotionRecognizer:
    """Detect faces and classify their emotion. Safe to share between threads.

    model: a shipped model name (see `python -m fer_core models`), None for the default.
    detector: "auto" (YuNet when available, else Haar), "yunet" or "haar".
    backend: "int8" (the card's ONNX Runtime int8 file, fer_core.inference.int8; where it is missing, corrupt or
    stale, or the device is not the CPU, a logged warning names the problem and the fp32 PyTorch model is used) or
    "torch".
    `backend_used` says which one classifies; `model` is always the PyTorch model (Grad-CAM's), loaded on first use.
    The int8 backend runs without PyTorch (`int8_runtime`): it is imported only for the fp32 model.
    """

    def __init__(self, model=None, detector="auto", device="cpu", weights_dir=None, backend="int8"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.device, self.weights_dir = device, weights_dir
        self.card = find_card(model, weights_dir)
        self._model, self._net, self._lock = None, None, threading.Lock()
        self.runtime = self._int8() if backend == "int8" else None  # int8_runtime's net: no PyTorch needed
        self.backend_used = "torch" if self.runtime is None else "int8"
        if self.runtime is None:
            self._net = self.model
        self.temperature = float(self.card.get("temperature", 1.0))
        self.detector = create_detector(detector)

    def _int8(self):
        """The int8 net, or None after a warning naming why it cannot be used."""
        on_cpu = str(self.device).split(":")[0] == "cpu"
        why = int8_runtime.problem(self.card, self.weights_dir) if on_cpu else "int8 runs on the CPU only"
        if why is None:
            try:
                return int8_runtime.load(self.card, self.weights_dir)
            except (FerError, ImportError) as e:  # an unreadable file, or no onnxruntime installed
                why = str(e)
        log.warning("%s: using the fp32 PyTorch model instead of int8: %s", self.name, why)
        return None

    @property
    def model(self):
        """The fp32 PyTorch model, BatchNorm folded and channels-last (faster on a CPU): what Grad-CAM reads and
        what classifies with backend="torch". PyTorch is imported here, on first use."""
        with self._lock:
            if self._model is None:
                from ..models.cards import load_model
                from ..models.registry import for_inference
                self._model = for_inference(load_model(self.name, self.weights_dir, self.device)[0])
        return self._model

    @property
    def net(self):
        """The classifying network as a torch module, for what takes one (`benchmark` times it): the fp32 model, or
        this recognizer's own int8 session in `int8.Int8Model` (PyTorch imported on first use)."""
        with self._lock:
            if self._net is None:
                from .int8 import Int8Model
                self._net = Int8Model(self.runtime)
        return self._net

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def detector_name(self) -> str:
        return self.detector.name

    def detect(self, image, min_face=None) -> list:
        """Face boxes (x, y, w, h) in a picture (anything `predict` accepts); `min_face`: the smallest face
        to find, as a share of the picture's shorter side (None: the detector's own default)."""
        bgr = load_image(image)
        return self.detector.detect(bgr) if min_face is None else self.detector.detect(bgr, min_face=min_face)

    def classify(self, faces, tta="none") -> np.ndarray:
        """uint8 faces [N, 48, 48] (or one [48, 48]) -> probabilities [N, 7] in EMOTIONS order.
        `tta`: "none", "flip" (also the face's mirror image) or "tencrop" (fer_core.models.evaluate.tta_views):
        the logits averaged over those views, as the card's val_tta figure was measured. The int8 backend runs
        "none" and "flip" without PyTorch and ten-crop through it (the same int8 file)."""
        faces = np.asarray(faces)
        if faces.ndim == 2:
            faces = faces[None]
        if faces.ndim != 3 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE) or faces.dtype != np.uint8:
            raise ValueError(f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}], got {faces.dtype} {faces.shape}")
        if self.runtime is not None and tta in int8_runtime.TTA:
            return int8_runtime.softmax(int8_runtime.predict_logits(self.runtime, faces, tta), self.temperature)
        from ..models.evaluate import predict_logits, softmax  # PyTorch: the fp32 backend, or ten-crop's crops
        return softmax(predict_logits(self.net, faces, self.device, tta=tta), self.temperature)

    def predict(self, image, tta="none") -> list:
        """Every face in `image` in reading order (rows from the top, each left to right: `faces.reading_order`),
        as FaceResult with its box in the picture's pixels; `tta` as in `classify`. A large JPEG is decoded at the
        fraction of its size the detector reads whole (`images.load_image_reduced`), as the upload page does."""
        bgr, size = load_image_reduced(image, self.detector.max_side)
        boxes = reading_order(self.detector.detect(bgr))
        if not boxes:
            return []
        probs = self.classify(np.stack([crop_face(bgr, b) for b in boxes]), tta=tta)
        return [self._result(b, p).scaled(size[0] / bgr.shape[1], size) for b, p in zip(boxes, probs)]

    @staticmethod
    def _result(box, probs) -> FaceResult:
        i = int(np.argmax(probs))
        return FaceResult(tuple(int(v) for v in box), EMOTIONS[i], float(probs[i]),
                          {e: float(p) for e, p in zip(EMOTIONS, probs)})
