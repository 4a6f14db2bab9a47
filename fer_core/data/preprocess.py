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
    """Square crop around `box` (x, y, w, h) of a BGR or grey image -> 48x48 uint8 grey."""
    import cv2
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * MARGIN)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    pad = max(0, -x0, -y0, x0 + s - gray.shape[1], y0 + s - gray.shape[0])
    if pad:  # the square leaves the picture: extend it by replicating the border
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = gray[y0:y0 + s, x0:x0 + s]
    interp = cv2.INTER_AREA if s > FACE_SIZE else cv2.INTER_LINEAR
    return cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=interp)


def faces_to_tensor(faces, device="cpu") -> "torch.Tensor":
    """uint8 [N, 48, 48] (numpy or torch) -> normalised float32 [N, 1, 48, 48] on `device`."""
    import torch
    t = torch.as_tensor(faces)
    if t.dtype != torch.uint8 or t.ndim != 3 or tuple(t.shape[1:]) != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}], got {t.dtype} {tuple(t.shape)}")
    t = t.to(device, non_blocking=True).unsqueeze(1).float()
    return (t / 255.0 - MEAN) / STD
