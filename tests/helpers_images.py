"""Shared builders for the image, face, recognizer and predict-CLI tests.

Real photos come from scikit-image's bundled samples (no network); the tiny model is a
seeded, untrained mini_xception saved through fer_core.models.cards.save_weights, so the tests check
the plumbing (shapes, probabilities, ordering, consistency), not accuracy.
"""
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

YUNET_SHARED = Path("/work/shared/models/face_detection_yunet_2026may.onnx")
TINY_MODEL = "tiny"


def astronaut_rgb() -> np.ndarray:
    """scikit-image's astronaut (Eileen Collins): 512x512 RGB uint8, one frontal face."""
    from skimage import data
    return data.astronaut()


def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(astronaut_rgb()[:, :, ::-1])


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def montage(bgr: np.ndarray, rows: int, cols: int, vary: bool = True) -> np.ndarray:
    """rows x cols copies of a picture; with `vary`, every other copy is mirrored and the
    brightness changes a little from tile to tile (a crude "group photo")."""
    tiles = []
    for r in range(rows):
        row = []
        for c in range(cols):
            t = bgr
            if vary:
                k = r * cols + c
                t = t[:, ::-1] if k % 2 else t
                t = np.clip(t.astype(np.int16) + (k % 3 - 1) * 12, 0, 255).astype(np.uint8)
            row.append(t)
        tiles.append(np.hstack(row))
    return np.ascontiguousarray(np.vstack(tiles))




def yunet_model():
    """Path of a YuNet ONNX file to test with, or None (then YuNet tests skip)."""
    env = os.environ.get("FER_YUNET_MODEL")
    if env and Path(env).is_file():
        return Path(env)
    return YUNET_SHARED if YUNET_SHARED.is_file() else None


def make_tiny_weights(directory, name=TINY_MODEL, seed=0, default=True) -> Path:
    """A seeded, untrained mini_xception saved as NAME.pt + NAME.json in `directory`."""
    import torch

    from fer_core.models.cards import save_weights, set_default
    from fer_core.models.registry import create_model

    try:
        from helpers_cards import v2_card
    except ImportError:
        from tests.helpers_cards import v2_card

    torch.manual_seed(seed)
    model = create_model("mini_xception")
    save_weights(model, v2_card(name, "mini_xception", accuracy=0.0, temperature=1.0), directory)
    if default:
        set_default(name, directory)
    return Path(directory)
