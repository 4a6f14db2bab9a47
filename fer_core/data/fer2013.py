"""FER2013 in its public forms: the Kaggle image layout (a folder or the .zip as downloaded)
and the original `fer2013.csv` (emotion,pixels,Usage).

Splits follow the dataset: Training -> train, PublicTest -> val, PrivateTest -> test, read
from the CSV's Usage column or the file-name prefix. Files without a prefix take their split
from the folder (`train/`, `val/`, `test/`); when nothing is marked val, val is a seeded,
stratified 10% of train. Decoded arrays are cached on disk, keyed by the source's path,
size and modification time, so only the first load pays for decoding.
"""
import csv
import hashlib
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..atomic import write_atomic
from ..errors import DatasetError
from .emotions import EMOTIONS
from .preprocess import FACE_SIZE

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
NAMED_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
FOLDER_SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".webp")
VAL_FRACTION = 0.1  # share of train held out as val when the source marks no val split
VAL_SEED = 2013  # fixed, so the held-out val is the same on every machine
CACHE_VERSION = 1
ENTRY_RE = re.compile(r"(?:^|/)([^/]+)/([^/]+)/([^/]+)$")  # <split folder>/<class folder>/<file>


def cache_dir() -> Path:
    return Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "fer_studio"))


def dataset_path(path=None) -> Path:
    """The dataset path from the argument or env FER2013_PATH, with a helpful error when neither."""
    path = path or os.environ.get("FER2013_PATH")
    if not path:
        raise DatasetError(
            "no dataset given: pass --data PATH or set FER2013_PATH to the FER2013 .zip, "
            "its extracted folder, or fer2013.csv (download it from Kaggle: "
            "https://www.kaggle.com/datasets/msambare/fer2013)")
    return Path(path).expanduser()


@dataclass
class Split:
    """One decoded split: uint8 images [N, 48, 48], int64 labels [N], and where each came from."""
    images: np.ndarray
    labels: np.ndarray
    names: np.ndarray

    def __len__(self):
        return len(self.labels)

    def counts(self) -> dict:
        return counts_dict(self.labels)


@dataclass
class Entry:
    name: str  # path inside the source, or "line N" for the CSV
    split: str
    label: int
    pixels: str = ""  # CSV only: the undecoded pixel string


class SplitSource:
    """What FER2013 and a real-photo set share: splits and counts from their entries (no decoding), and
    `load(split)` / `fingerprint()` from `_read()`, which decodes once."""

    @property
    def splits(self) -> tuple:
        present = {e.split for e in self.entries}
        return tuple(s for s in SPLITS if s in present)

    def counts(self) -> dict:
        """{split: {emotion: count}} from names/labels only."""
        return {s: counts_dict([e.label for e in self.entries if e.split == s]) for s in self.splits}

    def load(self, split: str) -> Split:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split not in self.splits:
            raise DatasetError(f"split {split!r} is not in {self.path.name}; it has: {', '.join(self.splits)}")
        return self._decoded()[split]

    def fingerprint(self) -> str:
        """sha256 over every decoded split's pixels and labels (independent of where it is stored)."""
        return self._decoded()["fingerprint"]

    def _decoded(self) -> dict:
        if getattr(self, "_cache", None) is None:
            self._cache = self._read()
        return self._cache


@dataclass
class FER2013(SplitSource):
    """A FER2013 source on disk. `splits`, `counts()` need no decoding; `load(split)` decodes."""
    path: Path
    layout: str = ""  # "zip", "folder" or "csv"
    entries: list = field(default_factory=list, repr=False)
    problems: list = field(default_factory=list, repr=False)  # rows/files skipped, with why

    def __post_init__(self):
        self.path = Path(self.path).expanduser()
        if not self.path.exists():
            raise DatasetError(f"dataset not found: {self.path}")
        self.layout, self.entries = _scan(self.path, self.problems)
        if not self.entries:
            raise DatasetError(f"no FER2013 faces found in {self.path}" + _problem_hint(self.problems))
        _assign_val(self.entries)
        for p in self.problems:
            log.warning("%s: %s", self.path.name, p)

    def _read(self) -> dict:
        return _load_or_decode(self)


def counts_dict(labels) -> dict:
    n = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(EMOTIONS))
    return {e: int(n[i]) for i, e in enumerate(EMOTIONS)}


def _problem_hint(problems) -> str:
    return f" ({len(problems)} problems, first: {problems[0]})" if problems else ""


def _scan(path: Path, problems: list):
    if path.is_dir():
        csvs = sorted(path.glob("*.csv"))
        if not any((path / d).is_dir() for d in FOLDER_SPLITS) and csvs:
            return "csv", _scan_csv(csvs[0], problems)
        names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        return "folder", _scan_names(names, path, problems)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist() if not i.is_dir()]
        return "zip", _scan_names(names, path, problems)
    if path.suffix.lower() == ".csv":
        return "csv", _scan_csv(path, problems)
    raise DatasetError(
        f"unknown dataset layout: {path} is neither a folder, a .zip nor a .csv "
        "(expected FER2013 as train/<emotion>/*.jpg + test/<emotion>/*.jpg, or fer2013.csv)")


def _scan_names(names, root: Path, problems: list) -> list:
    entries = []
    for name in sorted(names):
        base = name.rsplit("/", 1)[-1]
        if base.startswith(".") or "__MACOSX" in name:
            continue
        m = ENTRY_RE.search(name)
        if not m or m.group(1).lower() not in FOLDER_SPLITS:
            if name.lower().endswith(IMAGE_EXTS):
                problems.append(f"{name}: not inside <split>/<emotion>/ (skipped)")
            continue
        folder, cls, fname = m.groups()
        if cls.lower() not in EMOTIONS:
            raise DatasetError(
                f"unknown class folder {cls!r} in {root.name}/{name.rsplit('/', 1)[0]}: "
                f"class folders must be one of {', '.join(EMOTIONS)}")
        if not fname.lower().endswith(IMAGE_EXTS):
            problems.append(f"{name}: not an image file (skipped)")
            continue
        prefix = fname.split("_", 1)[0].lower() if "_" in fname else ""
        split = NAMED_SPLITS.get(prefix) or FOLDER_SPLITS[folder.lower()]
        entries.append(Entry(name, split, EMOTIONS.index(cls.lower())))
    return entries


def _scan_csv(path: Path, problems: list) -> list:
    entries = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if "emotion" not in header or "pixels" not in header:
            raise DatasetError(f"{path.name}: the header must name 'emotion' and 'pixels' columns, got {header}")
        ie, ip = header.index("emotion"), header.index("pixels")
        iu = header.index("usage") if "usage" in header else None
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            why = _csv_row_problem(row, len(header), ie, iu)
            if why:
                problems.append(f"line {line}: {why} (skipped)")
                continue
            split = NAMED_SPLITS[row[iu].strip().lower()] if iu is not None else "train"
            entries.append(Entry(f"line {line}", split, int(row[ie]), row[ip]))
    return entries


def _csv_row_problem(row, ncols, ie, iu):
    if len(row) != ncols:
        return f"expected {ncols} fields, found {len(row)}"
    if not row[ie].strip().isdigit() or int(row[ie]) >= len(EMOTIONS):
        return f"emotion must be an integer 0-{len(EMOTIONS) - 1}, got {row[ie]!r}"
    if iu is not None and row[iu].strip().lower() not in NAMED_SPLITS:
        return f"Usage must be Training, PublicTest or PrivateTest, got {row[iu]!r}"
    return None


def _assign_val(entries: list):
    """When nothing is val, move a seeded, stratified VAL_FRACTION of train into val."""
    if any(e.split == "val" for e in entries):
        return
    rng = np.random.default_rng(VAL_SEED)
    for label in range(len(EMOTIONS)):
        pool = sorted((e for e in entries if e.split == "train" and e.label == label), key=lambda e: e.name)
        k = int(round(len(pool) * VAL_FRACTION))
        for i in rng.permutation(len(pool))[:k]:
            pool[i].split = "val"


def _cache_key(src: FER2013) -> str:
    st = src.path.stat()
    parts = [str(src.path.resolve()), str(st.st_size), str(st.st_mtime_ns), str(CACHE_VERSION)]
    if src.path.is_dir():  # a folder's own mtime misses edits deep inside: hash the listing
        parts += [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(src.path.rglob("*"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _load_or_decode(src: FER2013) -> dict:
    cache = cache_dir() / f"fer2013-{_cache_key(src)}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = dict(z)
            out = _unpack(arrays)
            for p in arrays.get("problems", ()):  # rows/files the decoding skipped: report them again
                src.problems.append(str(p))
                log.warning("%s: %s", src.path.name, p)
            return out
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable dataset cache %s (%s)", cache, e)
    arrays = _decode(src)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, lambda p: np.savez(p, **arrays))
    return _unpack(arrays)


def _unpack(arrays: dict) -> dict:
    out = {"fingerprint": str(arrays["fingerprint"])}
    for s in SPLITS:
        if f"{s}_images" in arrays:
            out[s] = Split(arrays[f"{s}_images"], arrays[f"{s}_labels"], arrays[f"{s}_names"])
    return out


def _decode(src: FER2013) -> dict:
    reader = _reader(src)
    kept = {s: ([], [], []) for s in SPLITS}
    skipped = []
    for e in src.entries:
        try:
            img = reader(e)
        except DatasetError as err:
            skipped.append(f"{e.name}: {err} (skipped)")
            src.problems.append(skipped[-1])
            log.warning("%s: %s: %s (skipped)", src.path.name, e.name, err)
            continue
        images, labels, names = kept[e.split]
        images.append(img), labels.append(e.label), names.append(e.name)
    arrays, digest = {}, hashlib.sha256()
    for s, (images, labels, names) in kept.items():
        if not labels:
            continue
        arrays[f"{s}_images"] = np.stack(images).astype(np.uint8)
        arrays[f"{s}_labels"] = np.asarray(labels, dtype=np.int64)
        arrays[f"{s}_names"] = np.asarray(names, dtype=str)
        digest.update(s.encode() + arrays[f"{s}_images"].tobytes() + arrays[f"{s}_labels"].tobytes())
    if not arrays:
        raise DatasetError(f"no readable faces in {src.path}" + _problem_hint(src.problems))
    arrays["fingerprint"] = np.asarray(digest.hexdigest())
    arrays["problems"] = np.asarray(skipped, dtype=str)
    return arrays


def _reader(src: FER2013):
    """A function Entry -> uint8 [48, 48] for this source's layout."""
    if src.layout == "csv":
        return lambda e: _pixels_from_csv(e.pixels)
    if src.layout == "zip":
        z = zipfile.ZipFile(src.path)
        return lambda e: _decode_image(z.read(e.name))
    return lambda e: _decode_image((src.path / e.name).read_bytes())


def _pixels_from_csv(text: str) -> np.ndarray:
    values = text.split()
    if len(values) != FACE_SIZE * FACE_SIZE:
        raise DatasetError(f"pixels must hold {FACE_SIZE * FACE_SIZE} values, found {len(values)}")
    try:
        a = np.asarray(values, dtype=np.int64)
    except ValueError:
        raise DatasetError("pixels must be integers 0-255") from None
    if a.min() < 0 or a.max() > 255:
        raise DatasetError("pixels must be integers 0-255")
    return a.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)


def _decode_image(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
    if img is None:
        raise DatasetError("not a readable image")
    if img.shape != (FACE_SIZE, FACE_SIZE):
        img = cv2.resize(img, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    return img


def open_dataset(path=None, detector="auto"):
    """FER2013 (48x48 crops) or a real-photo set (photos.PhotoSet), told apart by what `path` holds.
    `path` defaults to env FER2013_PATH; `detector` finds the faces in photos."""
    from .photos import PhotoSet, is_photo_set
    path = dataset_path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    return PhotoSet(path, detector) if is_photo_set(path) else FER2013(path)
