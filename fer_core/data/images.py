"""Turn whatever a user hands us into a BGR uint8 picture, or an InvalidImageError that says why.

Accepts a path, bytes, a PIL image or a numpy array (BGR, as OpenCV gives; grey, BGRA, 16-bit
and float arrays too). Applies EXIF orientation, takes the first frame of animations, converts
CMYK, palette, 16-bit and alpha images, and refuses pictures over MAX_PIXELS before decoding them.
Reads what Pillow reads (JPEG, PNG, WebP, BMP, GIF, TIFF, AVIF) and HEIC/HEIF, iPhones' photos, through
pillow-heif, imported the first time such a file comes.
"""
import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InvalidImageError

MAX_PIXELS = 50_000_000  # larger pictures are refused (decompression bombs)
MAX_BYTES = 100 * 1024 * 1024  # and so are files over 100 MB
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}  # its `ftyp` box's brands
JPEG_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}  # OpenCV's flags for a JPEG decoded at 1/k of its size


def load_image(source) -> np.ndarray:
    """path | bytes | PIL.Image | ndarray -> BGR uint8 [H, W, 3]."""
    return _load(source)[0]


def load_image_reduced(source, min_side: int) -> tuple:
    """(BGR picture, (width, height) of the whole picture): as `load_image`, but a plain JPEG larger than needed
    is decoded straight at 1/2, 1/4 or 1/8 of its size (libjpeg's scaled decode: a 12-MP photo in 11 ms instead
    of 36 ms) as long as its longer side keeps at least `min_side` pixels. Anything else comes whole. Multiply
    the picture's coordinates by width / its width for the whole picture's."""
    return _load(source, min_side)


def _load(source, min_side=None) -> tuple:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), "the uploaded data", min_side)
    if isinstance(source, (str, os.PathLike)):
        return _from_bytes(_read_file(Path(source)), Path(source).name, min_side)
    if isinstance(source, np.ndarray):
        bgr = _from_array(source)
    elif isinstance(source, Image.Image):
        bgr = _from_pil(source)
    else:
        raise InvalidImageError(f"cannot read an image from a {type(source).__name__}; "
                                "give a file path, bytes, a PIL image or a numpy array")
    return bgr, _size(bgr)


def _size(bgr: np.ndarray) -> tuple:
    return bgr.shape[1], bgr.shape[0]


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise InvalidImageError(f"{path}: no such file")
    if path.stat().st_size > MAX_BYTES:
        raise InvalidImageError(f"{path.name}: the file is over {MAX_BYTES // 2**20} MB")
    try:
        return path.read_bytes()
    except OSError as e:
        raise InvalidImageError(f"{path.name}: cannot be read ({e.strerror or e})") from None


def _from_bytes(data: bytes, what: str, min_side=None) -> tuple:
    if not data:
        raise InvalidImageError(f"{what} is empty, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(data)  # reads the header only
            _check_size(img.size, what)
            if _plain_jpeg(img, data):
                return _from_jpeg(data, img, min_side)
            bgr = _from_pil(img, what)
            return bgr, _size(bgr)
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise InvalidImageError(f"{what} is not an image we can read "
                                    "(JPEG, PNG, WebP, BMP, GIF, TIFF, AVIF, HEIC)") from None
        raise InvalidImageError(f"{what} is too large to open safely") from None
    except Exception as e:  # truncated or corrupt files raise many kinds of errors inside Pillow
        raise InvalidImageError(f"{what} is damaged or not a complete image ({type(e).__name__})") from None


def _open(data: bytes) -> Image.Image:
    """Pillow's lazy image, with HEIF's reader registered first when `data` is a HEIF file."""
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        _read_heif()
    return Image.open(io.BytesIO(data))


def _read_heif():
    """Teach Pillow to read HEIC/HEIF (pillow-heif; registering again is harmless). It also applies the photo's
    rotation and sets its EXIF orientation to 1, so the picture is not turned twice."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        raise InvalidImageError("HEIC/HEIF photos need the pillow-heif package (pip install pillow-heif), "
                                "or save the photo as JPEG") from None
    register_heif_opener()


def _plain_jpeg(img: Image.Image, data: bytes) -> bool:
    """A complete JPEG (it ends with its end-of-image marker) in colour or grey: what phones and cameras give."""
    return img.format == "JPEG" and img.mode in ("RGB", "L") and data.rstrip(b"\0").endswith(b"\xff\xd9")


def _from_jpeg(data: bytes, img: Image.Image, min_side=None) -> tuple:
    """OpenCV's decoder, which applies the EXIF orientation as Pillow's path does and gives BGR directly: a 12-MP
    photo in 40 ms, where Pillow's decode and its copy into numpy took 130 ms. Pillow's path when it fails.
    Decoded at 1/`reduction(...)` of its size; returns (picture, the whole picture's oriented size)."""
    factor = reduction(img.size, min_side)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), JPEG_REDUCED[factor])
    if bgr is None:
        bgr, factor = _from_pil(img), 1
    if factor == 1:
        return bgr, _size(bgr)
    return bgr, img.size if _orientation(img) < 5 else img.size[::-1]


def reduction(size, min_side=None) -> int:
    """The largest of 8, 4 and 2 that a JPEG of `size` can be divided by with its longer side still at least
    `min_side` pixels (libjpeg rounds up), else 1."""
    if not min_side:
        return 1
    return next((k for k in (8, 4, 2) if -(-max(size) // k) >= min_side), 1)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8; 5 to 8 swap width and height), 1 when there is none or it is not a number."""
    value = img.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_size(size, what="the image"):
    w, h = size
    if w <= 0 or h <= 0:
        raise InvalidImageError(f"{what} has no pixels ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise InvalidImageError(f"{what} is {w}x{h} = {w * h / 1e6:.0f} megapixels; "
                                f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels")


def _from_pil(img: Image.Image, what="the image") -> np.ndarray:
    _check_size(img.size, what)
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animations: the first frame
    img = ImageOps.exif_transpose(img) if img.getexif() else img
    if img.mode.startswith("I;16"):  # 16-bit: scale by the format's range, not the picture's
        return _from_array((np.asarray(img).astype(np.float32) * (255 / 65535)).round().astype(np.uint8))
    if img.mode in ("I", "F"):
        return _from_array(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    rgb = np.asarray(img.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # a fresh contiguous array, ~10x faster than rgb[:, :, ::-1]


def _from_array(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape[:2]:
        raise InvalidImageError(f"an image array must be HxW, HxWx3 or HxWx4, got shape {a.shape}")
    _check_size((a.shape[1], a.shape[0]))
    a = _to_uint8(a)
    if a.ndim == 2:
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if a.shape[2] == 4:  # BGRA: composite over white
        alpha = a[:, :, 3:4].astype(np.float32) / 255
        a = (a[:, :, :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32))
        peak = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        return np.clip(a / peak * 255, 0, 255).round().astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        peak = 255 if a.max(initial=0) <= 255 else (65535 if a.max() <= 65535 else int(a.max()))
        return np.clip(a.astype(np.float64) / peak * 255, 0, 255).round().astype(np.uint8)
    raise InvalidImageError(f"unsupported image array type {a.dtype}")


def downscale(image: np.ndarray, max_side: int) -> tuple:
    """(picture downscaled to at most `max_side` pixels per side, scale factor); never upscales.

    Fast on 12 MP photos: exact 2x2 averaging (OpenCV's fast INTER_AREA path) while the picture is at least
    twice too large, then one bilinear step of less than 2x (too small a step to alias visibly). 4000x3000 to
    1280 px: 2.5 ms here, where one INTER_AREA resize took 17 ms.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, 1.0
    small = image
    while max(small.shape[:2]) >= 2 * max_side:
        even = small[:small.shape[0] // 2 * 2, :small.shape[1] // 2 * 2]
        small = cv2.resize(even, (even.shape[1] // 2, even.shape[0] // 2), interpolation=cv2.INTER_AREA)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR), scale


DARK_LEVEL = 35  # pictures whose mean level (0-255) is below this are "dark": YuNet finds fewer faces (docs/speed.md)


def brightness(image: np.ndarray) -> float:
    """The mean level (0-255) of a uint8 picture, grey or colour (all channels), read on a grid of about
    100x100 pixels, so that every webcam frame can afford it."""
    step = max(1, max(image.shape[:2]) // 100)
    return float(image[::step, ::step].mean())


def faces_level(picture: np.ndarray, crops) -> float:
    """How bright the faces are: the mean level of their crops (48x48 grey), or of the whole picture when
    none was found. A bright face in a dark picture (a stage, a night street) is not dark."""
    return float(np.mean([c.mean() for c in crops])) if len(crops) else brightness(picture)


def dark_note(level) -> str | None:
    """The pages' note on a picture of mean `level` (brightness) that is dark; None when it is not (or unknown)."""
    if level is None or level >= DARK_LEVEL:
        return None
    return (f"The picture is dark (mean level {level:.0f} of 255): faces are found less often and their emotions "
            "read less surely; more light on the face helps.")
