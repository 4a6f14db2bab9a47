"""Fuzzing the image-loading entry point with hypothesis: random bytes and mutations (flipped, inserted,
deleted bytes, truncation, spliced headers) of real JPEG, PNG, GIF and WebP files give a BGR picture or an
InvalidImageError, never another exception, and never take long."""
import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage import data

from fer_core import InvalidImageError
from fer_core.data.images import load_image

SECONDS_PER_INPUT = 2.0  # a hang shows up as a slow example


def _encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _real_files():
    face = Image.fromarray(data.astronaut()).resize((96, 96))
    frames = [face, face.rotate(90)]
    return {
        "jpeg": _encode(face, "JPEG", quality=85),
        "progressive jpeg": _encode(face.convert("L"), "JPEG", progressive=True),
        "png": _encode(face, "PNG"),
        "png rgba": _encode(face.convert("RGBA"), "PNG"),
        "gif": _encode(frames[0].convert("P"), "GIF", save_all=True, append_images=[frames[1].convert("P")]),
        "webp": _encode(face, "WEBP", quality=80),
    }


REAL = _real_files()


@st.composite
def mutated(draw):
    data_ = bytearray(REAL[draw(st.sampled_from(sorted(REAL)))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]))
        at = draw(st.integers(0, max(0, len(data_) - 1)))
        if op == "flip" and data_:
            data_[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data_[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data_[at:at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data_[at:]
        else:  # large or odd dimensions, chunk lengths, palette sizes: overwrite with extreme values
            data_[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))
    return bytes(data_)


def _check(payload):
    t = time.perf_counter()
    try:
        bgr = load_image(payload)
    except InvalidImageError as e:
        assert str(e)
    else:
        assert isinstance(bgr, np.ndarray) and bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3
    assert time.perf_counter() - t < SECONDS_PER_INPUT


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(mutated())
def test_mutated_real_images(payload):
    _check(payload)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=4096))
def test_random_bytes(payload):
    _check(payload)


@pytest.mark.parametrize("name", sorted(REAL))
def test_the_unmutated_files_load(name):
    assert load_image(REAL[name]).shape == (96, 96, 3)
