"""fer_core.data.preprocess.crop_face, the one face crop of training, evaluation, upload and webcam: it turns only
the face's square grey, and gives what the plain recipe gives (the whole picture grey, its border repeated
outward, the square cut out and resized) bit for bit, for boxes inside, across and beyond the picture's edges."""
import cv2
import numpy as np
import pytest

from fer_core.data.preprocess import FACE_SIZE, MARGIN, crop_face

try:
    from helpers_images import astronaut_bgr
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr


def plain_recipe(image, box):
    """The reference: the whole picture grey, padded by repeating its border, then the square cut and resized."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * MARGIN)
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    s = max(1, int(round(side)))
    pad = max(0, -x0, -y0, x0 + s - gray.shape[1], y0 + s - gray.shape[0])
    gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = gray[y0 + pad:y0 + pad + s, x0 + pad:x0 + pad + s]
    interp = cv2.INTER_AREA if s > FACE_SIZE else cv2.INTER_LINEAR
    return cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=interp)


def pictures():
    bgr = astronaut_bgr()
    return {"photo": bgr, "grey photo": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
            "small crop": np.ascontiguousarray(bgr[180:210, 200:217]),  # smaller than most squares
            "noise": np.random.default_rng(1).integers(0, 256, (37, 91, 3), dtype=np.uint8)}


@pytest.mark.parametrize("name", list(pictures()))
def test_crop_face_is_the_plain_recipe_bit_for_bit(name):
    image = pictures()[name]
    height, width = image.shape[:2]
    rng = np.random.default_rng(0)
    for _ in range(500):
        w = rng.uniform(1, 1.5 * max(height, width))
        box = (rng.uniform(-0.6 * width, 1.2 * width), rng.uniform(-0.6 * height, 1.2 * height),
               w, w * rng.uniform(0.7, 1.3))
        got = crop_face(image, box)
        assert got.shape == (FACE_SIZE, FACE_SIZE) and got.dtype == np.uint8
        assert np.array_equal(got, plain_recipe(image, box)), box


def test_a_square_beyond_the_edge_repeats_the_border():
    """A box in the top-left corner of a picture whose first row and column are white: what lies outside is white
    too, and the face itself is kept."""
    image = np.zeros((200, 300), np.uint8)
    image[0, :] = image[:, 0] = 255
    image[40:80, 40:80] = 128
    crop = crop_face(image, (-30, -30, 100, 100))  # a 120-px square from (-40, -40) at 0.4 scale: 16 px outside
    assert (crop[:15, :] == 255).all() and (crop[:, :15] == 255).all()
    assert (crop[18:31, 18:31] == 0).all() and (crop[34:, 34:] == 128).all()
