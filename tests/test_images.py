"""fer_core.data.images.load_image: every input kind -> BGR uint8 HxWx3, or a readable InvalidImageError."""
import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.errors import InvalidImageError
from fer_core.data.images import (DARK_LEVEL, MAX_PIXELS, brightness, dark_note, faces_level, load_image,
                                  load_image_reduced, reduction)

try:
    from helpers_images import astronaut_rgb, encode
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_rgb, encode


@pytest.fixture(scope="module")
def rgb():
    return astronaut_rgb()


@pytest.fixture(scope="module")
def bgr(rgb):
    return np.ascontiguousarray(rgb[:, :, ::-1])


def mad(a, b) -> float:
    """Mean absolute difference of two uint8 arrays."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_bgr_image(out, shape):
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape == shape
    assert out.flags["C_CONTIGUOUS"]


# --- formats and colour order ------------------------------------------------------------------

@pytest.mark.parametrize("fmt,kwargs,tolerance", [
    ("PNG", {}, 0.0),
    ("BMP", {}, 0.0),
    ("TIFF", {}, 0.0),
    ("JPEG", {"quality": 90}, 5.0),
    ("WEBP", {"quality": 90}, 5.0),
    ("GIF", {}, 6.0),  # 256-colour quantisation
    ("AVIF", {"quality": 90}, 5.0),
])
def test_formats_decode_to_bgr_matching_the_source(rgb, bgr, fmt, kwargs, tolerance):
    data = encode(Image.fromarray(rgb), fmt, **kwargs)
    assert Image.open(io.BytesIO(data)).format == fmt
    out = load_image(data)
    assert_bgr_image(out, (512, 512, 3))
    assert mad(out, bgr) <= tolerance
    # the channel order really is BGR: against the unswapped RGB source the error is large
    assert mad(out, rgb) > 20


def heic(image: Image.Image, **kwargs) -> bytes:
    """An HEIC file, as iPhones save photos (pillow-heif's encoder)."""
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(image).save(buf, quality=90, **kwargs)
    return buf.getvalue()


def test_heic_decodes_to_bgr_matching_the_source(rgb, bgr):
    data = heic(Image.fromarray(rgb))
    assert data[4:12] == b"ftypheic"
    out = load_image(data)
    assert_bgr_image(out, (512, 512, 3))
    assert mad(out, bgr) <= 5.0 and mad(out, rgb) > 20


def test_heic_orientation_is_applied_once(rgb):
    raw = rgb[:200, :300]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = load_image(heic(Image.fromarray(raw), exif=exif.tobytes()))
    assert_bgr_image(out, (300, 200, 3))
    assert mad(out, np.rot90(raw[:, :, ::-1], k=-1)) < 5 < mad(out, np.rot90(raw[:, :, ::-1], k=1))


def test_heic_without_pillow_heif_says_what_to_install(rgb, monkeypatch):
    data = heic(Image.fromarray(rgb))
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    with pytest.raises(InvalidImageError, match=r"pillow-heif .*or save the photo as JPEG"):
        load_image(data)


def test_png_is_exact_and_channels_are_swapped(rgb, bgr):
    out = load_image(encode(Image.fromarray(rgb), "PNG"))
    np.testing.assert_array_equal(out, bgr)
    np.testing.assert_array_equal(out[:, :, 2], rgb[:, :, 0])  # red lands in channel 2


@pytest.mark.parametrize("as_type", [str, Path])
def test_path_input(tmp_path, rgb, bgr, as_type):
    p = tmp_path / "astronaut.png"
    Image.fromarray(rgb).save(p)
    np.testing.assert_array_equal(load_image(as_type(p)), bgr)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_input(rgb, bgr, wrap):
    data = encode(Image.fromarray(rgb), "PNG")
    np.testing.assert_array_equal(load_image(wrap(data)), bgr)


def test_pil_image_input(rgb, bgr):
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), bgr)


def test_pil_grey_and_rgba_input(rgb):
    grey = Image.fromarray(rgb).convert("L")
    out = load_image(grey)
    assert_bgr_image(out, (512, 512, 3))
    g = np.asarray(grey)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


# --- numpy arrays -------------------------------------------------------------------------------

def test_ndarray_bgr_passes_through(bgr):
    out = load_image(bgr)
    assert_bgr_image(out, bgr.shape)
    np.testing.assert_array_equal(out, bgr)


def test_ndarray_non_contiguous_view(bgr):
    view = bgr[::2, ::2]
    out = load_image(view)
    assert_bgr_image(out, (256, 256, 3))
    np.testing.assert_array_equal(out, view)


def test_ndarray_grey_2d_and_hw1(rgb):
    g = rgb[:, :, 1].copy()
    for a in (g, g[:, :, None]):
        out = load_image(a)
        assert_bgr_image(out, (512, 512, 3))
        assert (out == g[:, :, None]).all()


def test_ndarray_bgra_composited_on_white():
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = 10, 20, 30
    a[0, :, 3] = 255  # opaque
    a[1, :, 3] = 0  # transparent -> white
    a[2, :, 3] = 128  # half
    out = load_image(a)
    assert_bgr_image(out, (4, 4, 3))
    np.testing.assert_array_equal(out[0], [[10, 20, 30]] * 4)
    np.testing.assert_array_equal(out[1], [[255, 255, 255]] * 4)
    half = np.round(np.array([10, 20, 30]) * 128 / 255 + 255 * (1 - 128 / 255))
    np.testing.assert_allclose(out[2, 0], half, atol=1)


def test_ndarray_uint16_scaled_to_8_bit(rgb, bgr):
    a16 = bgr.astype(np.uint16) * 257  # 0..255 -> 0..65535
    out = load_image(a16)
    assert_bgr_image(out, bgr.shape)
    np.testing.assert_array_equal(out, bgr)


def test_ndarray_float_0_to_1(bgr):
    f = bgr.astype(np.float32) / 255
    out = load_image(f)
    assert_bgr_image(out, bgr.shape)
    assert np.abs(out.astype(int) - bgr).max() <= 1
    ramp = np.linspace(0, 1, 11, dtype=np.float64)[None, :].repeat(2, 0)
    np.testing.assert_array_equal(load_image(ramp)[0, :, 0], np.round(np.linspace(0, 255, 11)))


def test_ndarray_bool_mask():
    m = np.zeros((3, 3), bool)
    m[1, 1] = True
    out = load_image(m)
    assert out[1, 1].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 0, 0]


# --- special files ------------------------------------------------------------------------------

def test_exif_orientation_6_is_applied(rgb):
    raw = rgb[:200, :300]  # 300 wide, 200 high, not symmetric
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.fromarray(raw), "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (300, 200)  # raw pixels
    out = load_image(data)
    assert_bgr_image(out, (300, 200, 3))  # width and height swapped
    cw = np.rot90(raw[:, :, ::-1], k=-1)
    ccw = np.rot90(raw[:, :, ::-1], k=1)
    assert mad(out, cw) < 5 < mad(out, ccw)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpegs_decode_through_opencv_as_pillow_would_for_every_orientation(rgb, mode, monkeypatch):
    """Complete colour and grey JPEGs take OpenCV's faster decoder: the same pixels and the same EXIF rotation or
    mirroring as Pillow's path gives, for all eight orientations; a JPEG cut short still goes to Pillow."""
    import cv2

    from fer_core.data import images
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    raw = Image.fromarray(rgb[:200, :300]).convert(mode)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(raw, "JPEG", quality=90, exif=exif.tobytes())
        fast = load_image(data)
        assert np.array_equal(fast, images._from_pil(Image.open(io.BytesIO(data)))), orientation
        assert fast.shape == ((300, 200, 3) if orientation >= 5 else (200, 300, 3))
    assert len(decoded) == 8
    cut = encode(raw, "JPEG", quality=90)
    with pytest.raises(InvalidImageError):
        load_image(cut[:len(cut) * 2 // 3])
    assert len(decoded) == 8  # not handed to OpenCV, which would return a partly grey picture


@pytest.mark.parametrize("size,min_side,factor", [
    ((4000, 3000), 1280, 2), ((6000, 4000), 1280, 4), ((2560, 1440), 1280, 2), ((2561, 1), 1280, 2),
    ((2559, 1440), 1280, 2), ((2558, 1440), 1280, 1), ((1280, 960), 1280, 1), ((12000, 9000), 1000, 8),
    ((4000, 3000), None, 1),
])
def test_reduction_keeps_the_longer_side_at_least_min_side(size, min_side, factor):
    assert reduction(size, min_side) == factor


def test_a_large_jpeg_is_decoded_reduced_with_its_whole_size_for_every_orientation(rgb):
    """libjpeg's scaled decode: the picture at 1/4 here (3000 px -> 750, at least 700), the same EXIF rotation or
    mirroring as the whole picture's decode, close to that picture shrunk, and the whole picture's oriented size."""
    import cv2
    raw = Image.fromarray(cv2.resize(rgb, (2999, 2000), interpolation=cv2.INTER_CUBIC))  # odd: libjpeg rounds up
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(raw, "JPEG", quality=90, exif=exif.tobytes())
        whole = load_image(data)
        small, size = load_image_reduced(data, 700)
        assert size == (whole.shape[1], whole.shape[0]) == ((2000, 2999) if orientation >= 5 else (2999, 2000))
        assert_bgr_image(small, (750, 500, 3) if orientation >= 5 else (500, 750, 3))
        assert mad(small, cv2.resize(whole, small.shape[1::-1], interpolation=cv2.INTER_AREA)) < 1.5, orientation


def test_what_cannot_be_decoded_reduced_comes_whole(rgb, bgr):
    """A PNG, a JPEG too small to shrink, a grey JPEG's colour copy, an array: whole, with their own size."""
    png = load_image_reduced(encode(Image.fromarray(rgb), "PNG"), 100)
    assert np.array_equal(png[0], bgr) and png[1] == (512, 512)
    jpeg, size = load_image_reduced(encode(Image.fromarray(rgb), "JPEG", quality=90), 300)
    assert jpeg.shape == (512, 512, 3) and size == (512, 512)
    grey, size = load_image_reduced(encode(Image.fromarray(rgb).convert("L").resize((2048, 2048)), "JPEG"), 512)
    assert grey.shape == (512, 512, 3) and size == (2048, 2048)
    assert np.array_equal(grey[:, :, 0], grey[:, :, 2])
    assert load_image_reduced(bgr, 100)[1] == (512, 512)
    with pytest.raises(InvalidImageError):
        load_image_reduced(b"not a picture", 100)


def test_exif_orientation_applied_to_pil_input(rgb):
    raw = rgb[:200, :300]
    exif = Image.Exif()
    exif[0x0112] = 6
    img = Image.open(io.BytesIO(encode(Image.fromarray(raw), "JPEG", exif=exif.tobytes())))
    assert load_image(img).shape == (300, 200, 3)


def test_16_bit_png(rgb):
    g = rgb[:, :, 0]
    img = Image.fromarray(g.astype(np.uint16) * 257)
    assert img.mode == "I;16"
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = load_image(data)
    assert_bgr_image(out, (512, 512, 3))
    assert (out == g[:, :, None]).all()


def test_rgba_png_transparent_pixels_become_white(rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:, :256, 3] = 0  # left half transparent
    out = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert_bgr_image(out, (512, 512, 3))
    assert (out[:, :256] == 255).all()
    np.testing.assert_array_equal(out[:, 256:], rgb[:, 256:, ::-1])


def test_cmyk_jpeg(rgb, bgr):
    img = Image.fromarray(rgb).convert("CMYK")
    data = encode(img, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = load_image(data)
    assert_bgr_image(out, (512, 512, 3))
    assert mad(out, bgr) < 5 < mad(out, rgb)


def test_palette_png_with_transparency():
    p = Image.new("P", (32, 32), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # 0: black (transparent), 1: red
    p.paste(1, (0, 0, 16, 32))
    data = encode(p, "PNG", transparency=0)
    assert Image.open(io.BytesIO(data)).info.get("transparency") == 0
    out = load_image(data)
    assert_bgr_image(out, (32, 32, 3))
    assert (out[:, :16] == [0, 0, 255]).all()  # red, in BGR
    assert (out[:, 16:] == 255).all()  # transparent black -> white, not black


def test_animated_gif_gives_first_frame():
    red = Image.new("RGB", (64, 48), (255, 0, 0))
    blue = Image.new("RGB", (64, 48), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    img = Image.open(io.BytesIO(data))
    assert img.n_frames == 2
    out = load_image(data)
    assert_bgr_image(out, (48, 64, 3))
    assert (out == [0, 0, 255]).all()
    img.seek(1)  # a PIL image left on a later frame still gives the first
    assert (load_image(img) == [0, 0, 255]).all()


def test_greyscale_png(rgb):
    g = rgb[:, :, 2].copy()
    out = load_image(encode(Image.fromarray(g, "L"), "PNG"))
    assert_bgr_image(out, (512, 512, 3))
    assert (out == g[:, :, None]).all()


# --- refusals -----------------------------------------------------------------------------------

def refused(source) -> str:
    with pytest.raises(InvalidImageError) as info:
        load_image(source)
    e = info.value
    assert isinstance(e, ValueError)
    msg = str(e)
    assert len(msg) > 10 and "Traceback" not in msg
    return msg


def test_invalid_image_error_is_value_error():
    assert issubclass(InvalidImageError, ValueError)


def test_text_file_refused(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not a picture\n" * 20)
    msg = refused(p)
    assert "notes.txt" in msg and "not an image" in msg


def test_empty_bytes_refused():
    assert "empty" in refused(b"")


def test_empty_file_refused(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert "empty.jpg" in refused(p)


def test_truncated_jpeg_refused(rgb):
    data = encode(Image.fromarray(rgb), "JPEG", quality=90)
    msg = refused(data[: len(data) // 2])
    assert "damaged" in msg or "complete" in msg


def test_truncated_png_refused(rgb):
    data = encode(Image.fromarray(rgb), "PNG")
    refused(data[: len(data) // 3])


def test_random_bytes_refused():
    refused(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def test_missing_file_refused(tmp_path):
    p = tmp_path / "no_such_picture.jpg"
    assert "no_such_picture.jpg" in refused(str(p))


def test_directory_refused(tmp_path):
    refused(tmp_path)


@pytest.fixture(scope="module")
def huge_png():
    """8000x7000 = 56 MP, bilevel: a few KB on disk, 56 MB (or more) if decoded."""
    return encode(Image.new("1", (8000, 7000)), "PNG")


def test_huge_png_refused_before_decoding(huge_png):
    assert len(huge_png) < 100_000
    assert 8000 * 7000 > MAX_PIXELS
    t = time.perf_counter()
    msg = refused(huge_png)
    assert time.perf_counter() - t < 2.0
    assert "8000x7000" in msg and "megapixels" in msg


def test_huge_png_path_refused(tmp_path, huge_png):
    p = tmp_path / "bomb.png"
    p.write_bytes(huge_png)
    t = time.perf_counter()
    msg = refused(p)
    assert time.perf_counter() - t < 2.0
    assert "bomb.png" in msg and "megapixels" in msg


def test_huge_pil_image_refused():
    assert "megapixels" in refused(Image.new("1", (8000, 7000)))


def test_just_under_the_limit_header_is_accepted_by_the_size_check():
    # 7000x7000 = 49 MP passes the limit check (we only look at the header here)
    from fer_core.data.images import _check_size
    _check_size((7000, 7000))
    with pytest.raises(InvalidImageError):
        _check_size((7072, 7071))


@pytest.mark.parametrize("shape", [(10, 10, 5), (10, 10, 2), (10,), (2, 10, 10, 3), (0, 10, 3)])
def test_bad_array_shape_refused(shape):
    assert "shape" in refused(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("value", [42, 3.5, None, ["a.jpg"]])
def test_unsupported_type_refused(value):
    msg = refused(value)
    assert type(value).__name__ in msg


def test_brightness_is_the_mean_level_read_on_a_grid(bgr):
    assert brightness(np.full((480, 640, 3), 77, np.uint8)) == 77.0
    assert brightness(np.full((3000, 4000), 12, np.uint8)) == 12.0  # grey, 12 MP
    assert brightness(bgr) == pytest.approx(bgr.mean(), abs=1.0)  # a real photo: the grid reads what every pixel says
    half = np.zeros((480, 640, 3), np.uint8)
    half[:, 320:] = 200
    assert brightness(half) == pytest.approx(100.0, abs=1.0)


def test_only_a_dark_picture_gets_a_note():
    assert dark_note(None) is None and dark_note(DARK_LEVEL) is None and dark_note(120.0) is None
    assert dark_note(DARK_LEVEL - 0.6) == ("The picture is dark (mean level 34 of 255): faces are found less often "
                                           "and their emotions read less surely; more light on the face helps.")


def test_faces_level_reads_the_faces_and_the_picture_only_without_them():
    night = np.full((480, 640, 3), 10, np.uint8)
    lit = [np.full((48, 48), 150, np.uint8), np.full((48, 48), 110, np.uint8)]
    assert faces_level(night, lit) == 130.0  # a lit face in a dark picture is not dark
    assert faces_level(night, []) == 10.0 and faces_level(night, np.zeros((0, 48, 48), np.uint8)) == 10.0
