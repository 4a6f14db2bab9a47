"""The one face-preprocessing path shared by training, evaluation, upload and webcam.

A face goes: BGR/grey picture + box -> `crop_face` (square crop with margin, grey, 48x48 uint8)
-> `faces_to_tensor` (float, normalised) -> model. The FER2013 images are already 48x48 grey
crops, so training and evaluation enter at `faces_to_tensor`.
"""
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NumPy, OpenCV and PyTorch load on first use: the app's first page reads the constants below
    import numpy as np
    import torch

FACE_SIZE = 48  # FER2013 resolution
MARGIN = 0.1  # extra context around the detector's box, per side, as a fraction of its size
MEAN, STD = 0.5, 0.25  # maps [0, 255] grey to about [-2, 2]


def crop_face(image: "np.ndarray", box) -> "np.ndarray":
    """Square crop around `box` (x, y, w, h) of a BGR or grey image -> 48x48 uint8 grey. Where the square leaves
    the picture, the picture's border is repeated. Only the square is turned grey, not the whole picture (a
    12-MP photo's faces, a webcam frame's on a busy CPU)."""
    import cv2
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * MARGIN)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    crop = image[_span(y0, s, image.shape[0])][:, _span(x0, s, image.shape[1])]
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)  # a view: OpenCV reads its strides
    interp = cv2.INTER_AREA if s > FACE_SIZE else cv2.INTER_LINEAR
    return cv2.resize(gray, (FACE_SIZE, FACE_SIZE), interpolation=interp)


def _span(start: int, length: int, size: int):
    """Indices start .. start + length - 1 of an axis of `size`: a slice inside it, else the indices clamped to it
    (which repeats the border, as OpenCV's BORDER_REPLICATE)."""
    import numpy as np
    if 0 <= start and start + length <= size:
        return slice(start, start + length)
    return np.clip(np.arange(start, start + length), 0, size - 1)


def faces_to_tensor(faces, device="cpu") -> "torch.Tensor":
    """uint8 [N, 48, 48] (numpy or torch) -> normalised float32 [N, 1, 48, 48] on `device`."""
    import torch
    t = torch.as_tensor(faces)
    if t.dtype != torch.uint8 or t.ndim != 3 or tuple(t.shape[1:]) != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}], got {t.dtype} {tuple(t.shape)}")
    t = t.to(device, non_blocking=True).unsqueeze(1).float()
    return (t / 255.0 - MEAN) / STD
