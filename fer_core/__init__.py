"""FER Studio's engine: data, models, training, evaluation, face detection and EmotionRecognizer.

One sub-package per layer, each importing only those below it: app -> inference -> models -> data, and
training -> models -> data (docs/architecture.md; tests/test_layout.py keeps it so).

Importing it loads no model and downloads nothing; heavy modules load on first use.
"""
from .data.emotions import EMOTIONS
from .errors import DatasetError, FerError, InvalidImageError, WeightsError

__all__ = ["EMOTIONS", "EmotionRecognizer", "InvalidImageError", "DatasetError", "WeightsError", "FerError",
           "create_model", "list_models"]


def __getattr__(name):
    if name == "EmotionRecognizer":
        from .inference.recognizer import EmotionRecognizer
        return EmotionRecognizer
    if name in ("create_model", "list_models"):
        from .models import registry
        return getattr(registry, name)
    raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
