"""Haar on very large pictures (issue 21): a 24-MP photo whose face spans about 11% of its shorter side."""
import cv2
import numpy as np
import pytest

from fer_core.data.faces import HaarDetector

try:
    from helpers_images import astronaut_bgr
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr


@pytest.mark.parametrize("background", [30, 120, 230])
def test_haar_finds_an_11_percent_face_in_24_megapixels(background):
    """The astronaut's face (93 px of 512) scaled 4.7x is 437 px: 11% of a 6000x4000 picture's 4000-px side.
    On a plain background, a global histogram equalisation used to hide it (no face found for 120 and 230)."""
    big = cv2.resize(astronaut_bgr(), None, fx=4.7, fy=4.7, interpolation=cv2.INTER_CUBIC)
    photo = np.full((4000, 6000, 3), background, np.uint8)
    photo[500:500 + big.shape[0], 1500:1500 + big.shape[1]] = big
    boxes = HaarDetector().detect(photo)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 0.09 <= w / 4000 <= 0.14  # about the face's 11%
    cx, cy = x + w / 2, y + h / 2  # on her face: (224, 114) in the 512-px picture
    assert abs(cx - (1500 + 224 * 4.7)) < 100 and abs(cy - (500 + 114 * 4.7)) < 100
