"""Real-photo datasets: a folder or .zip of ordinary photos, read through the app's own face path.

Labels come from a `labels.csv` (columns file, emotion and optionally split; `file` relative to the
CSV's folder) or from class folders (`<split>/<emotion>/*.jpg` or `<emotion>/*.jpg`). Every photo goes
through what the upload page does: the app's detector finds the faces, the largest is cropped by the
one `preprocess.crop_face`. A photo where no face is found is kept out of the faces and listed by
name in `no_face[split]`, so every report can say how many there were. Crops are made once and
cached on disk like FER2013's, keyed by the source, the detector and the crop settings.
"""
import csv
import hashlib
import io
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..atomic import write_atomic
from ..errors import DatasetError
from . import fer2013
from .emotions import EMOTIONS
from .preprocess import MARGIN, crop_face

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: YuNet runs in ONNX Runtime (2 of 12,249 wild_photos crops moved by a pixel)
LABELS_FILE = "labels.csv"
SYNONYMS = {"anger": "angry", "happiness": "happy", "sadness": "sad", "fearful": "fear", "surprised": "surprise",
            "disgusted": "disgust", "neutrality": "neutral"}  # other datasets' spellings of the seven classes


@dataclass
class Photo:
    name: str  # path inside the source
    split: str
    label: int


@dataclass
class PhotoSet(fer2013.SplitSource):
    """Labelled photos on disk. `splits`, `counts()` need no decoding; `load(split)` detects and crops."""
    path: Path
    detector: str = "auto"  # a name for faces.create_detector
    layout: str = ""  # "zip" or "folder"
    entries: list = field(default_factory=list, repr=False)
    problems: list = field(default_factory=list, repr=False)
    no_face: dict = field(default_factory=dict, repr=False)  # split -> names of photos with no face found

    def __post_init__(self):
        self.path = Path(self.path).expanduser()
        if not self.path.exists():
            raise DatasetError(f"dataset not found: {self.path}")
        self.layout, names = _list_files(self.path)
        self.entries = _scan(self.path, names, self.problems)
        if not self.entries:
            raise DatasetError(f"no labelled photos found in {self.path}" + fer2013._problem_hint(self.problems))
        fer2013._assign_val(self.entries)
        for p in self.problems:
            log.warning("%s: %s", self.path.name, p)

    def _read(self) -> dict:
        return _load_or_crop(self)

    def photos(self, split, flags=cv2.IMREAD_COLOR):
        """(Photo, decoded picture or None when it cannot be decoded) for each photo of `split`, read one at a
        time, not cropped."""
        read = _reader(self.path)
        for entry in (e for e in self.entries if e.split == split):
            yield entry, _decode(read(entry.name), flags)


def is_photo_set(path) -> bool:
    """True when `path` holds ordinary photos (a labels.csv, or images that are not 48x48 crops)."""
    path = Path(path)
    if path.suffix.lower() == ".csv" or not (path.is_dir() or zipfile.is_zipfile(path)):
        return False
    _, names = _list_files(path)
    if any(n.rsplit("/", 1)[-1] == LABELS_FILE for n in names):
        return True
    first = next((n for n in sorted(names) if n.lower().endswith(fer2013.IMAGE_EXTS)), None)
    if first is None:
        return False
    img = _decode(_reader(path)(first), cv2.IMREAD_GRAYSCALE)
    return img is not None and img.shape != (fer2013.FACE_SIZE, fer2013.FACE_SIZE)


def _list_files(path: Path):
    if path.is_dir():
        return "folder", [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return "zip", [i.filename for i in z.infolist() if not i.is_dir()]
    raise DatasetError(f"a photo set must be a folder or a .zip, got {path}")


def _visible(name: str) -> bool:
    return "__MACOSX" not in name and not any(part.startswith(".") for part in name.split("/"))


def _emotion(text: str):
    t = text.strip().lower()
    t = SYNONYMS.get(t, t)
    return EMOTIONS.index(t) if t in EMOTIONS else None


def _scan(root: Path, names: list, problems: list) -> list:
    names = [n for n in names if _visible(n)]
    csvs = sorted((n for n in names if n.rsplit("/", 1)[-1] == LABELS_FILE), key=lambda n: n.count("/"))
    if csvs:
        return _scan_csv(root, csvs[0], set(names), problems)
    return _scan_folders(names, problems)


def _scan_csv(root: Path, csv_name: str, names: set, problems: list) -> list:
    base = csv_name.rsplit("/", 1)[0] + "/" if "/" in csv_name else ""
    rows = csv.DictReader(io.StringIO(_reader(root)(csv_name).decode("utf-8-sig")))
    if not rows.fieldnames or not {"file", "emotion"} <= {f.strip().lower() for f in rows.fieldnames}:
        raise DatasetError(f"{csv_name}: the header must name 'file' and 'emotion' columns, got {rows.fieldnames}")
    entries = []
    for row in rows:
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        where = f"{csv_name} line {rows.line_num}"
        label, split = _emotion(row["emotion"]), fer2013.FOLDER_SPLITS.get(row.get("split", "").lower(), "")
        if label is None:
            problems.append(f"{where}: unknown emotion {row['emotion']!r} (skipped)")
        elif row.get("split") and not split:
            problems.append(f"{where}: unknown split {row['split']!r} (skipped)")
        elif base + row["file"] not in names:
            problems.append(f"{where}: {row['file']} is not in the dataset (skipped)")
        else:
            entries.append(Photo(base + row["file"], split or "train", label))
    return entries


def _scan_folders(names: list, problems: list) -> list:
    entries = []
    for name in sorted(names):
        if not name.lower().endswith(fer2013.IMAGE_EXTS):
            continue
        parts = name.split("/")
        label = _emotion(parts[-2]) if len(parts) >= 2 else None
        if label is None:
            problems.append(f"{name}: not inside a folder named after an emotion (skipped)")
            continue
        split = fer2013.FOLDER_SPLITS.get(parts[-3].lower(), "train") if len(parts) >= 3 else "train"
        entries.append(Photo(name, split, label))
    return entries


def _reader(path: Path):
    if path.is_dir():
        return lambda name: (path / name).read_bytes()
    z = zipfile.ZipFile(path)
    return z.read


def _decode(raw: bytes, flags=cv2.IMREAD_COLOR):
    return cv2.imdecode(np.frombuffer(raw, np.uint8), flags) if raw else None


def _detector_id(detector) -> str:
    """Names the detector and, for YuNet, its model file's hash: other weights, other crops."""
    model = getattr(detector, "model_path", None)
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16] if model else ""
    return f"{detector.name}:{digest}"


def _cache_key(src: PhotoSet, detector_id: str) -> str:
    st = src.path.stat()
    parts = [str(src.path.resolve()), str(st.st_size), str(st.st_mtime_ns), detector_id, str(MARGIN),
             str(CACHE_VERSION)]
    if src.path.is_dir():
        parts += [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(src.path.rglob("*"))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _load_or_crop(src: PhotoSet) -> dict:
    from .faces import create_detector
    detector = create_detector(src.detector)
    det_id = _detector_id(detector)
    cache = fer2013.cache_dir() / f"photos-{_cache_key(src, det_id)}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return _unpack(src, dict(z))
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable dataset cache %s (%s)", cache, e)
    arrays = _crop_all(src, detector)
    arrays["detector"] = np.asarray(det_id)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, lambda p: np.savez(p, **arrays))
    return _unpack(src, arrays)


def _unpack(src: PhotoSet, arrays: dict) -> dict:
    out = {"fingerprint": str(arrays["fingerprint"]), "detector": str(arrays["detector"])}
    for s in fer2013.SPLITS:
        if f"{s}_labels" in arrays:
            out[s] = fer2013.Split(arrays[f"{s}_images"], arrays[f"{s}_labels"], arrays[f"{s}_names"])
        src.no_face[s] = [str(n) for n in arrays.get(f"{s}_no_face", ())]
    for p in arrays.get("problems", ()):
        if str(p) not in src.problems:
            src.problems.append(str(p))
    return out


def largest_face(image, detector):
    """The 48x48 crop of the largest face `detector` finds in `image`, or None when it finds none."""
    boxes = detector.detect(image)
    if not boxes:
        return None
    return crop_face(image, max(boxes, key=lambda b: b[2] * b[3]))


def _crop_all(src: PhotoSet, detector) -> dict:
    read = _reader(src.path)
    kept = {s: ([], [], [], []) for s in fer2013.SPLITS}  # images, labels, names, no-face names
    skipped = []
    for e in src.entries:
        image = _decode(read(e.name))
        if image is None:
            skipped.append(f"{e.name}: not a readable image (skipped)")
            continue
        face = largest_face(image, detector)
        images, labels, names, no_face = kept[e.split]
        if face is None:
            no_face.append(e.name)
            continue
        images.append(face), labels.append(e.label), names.append(e.name)
    src.problems.extend(skipped)
    arrays, digest = {}, hashlib.sha256()
    for s, (images, labels, names, no_face) in kept.items():
        if labels:
            arrays[f"{s}_images"] = np.stack(images).astype(np.uint8)
            arrays[f"{s}_labels"] = np.asarray(labels, dtype=np.int64)
            arrays[f"{s}_names"] = np.asarray(names, dtype=str)
            digest.update(s.encode() + arrays[f"{s}_images"].tobytes() + arrays[f"{s}_labels"].tobytes())
        if no_face:
            arrays[f"{s}_no_face"] = np.asarray(no_face, dtype=str)
    if not any(k.endswith("_labels") for k in arrays):
        raise DatasetError(f"no face found in any photo of {src.path}" + fer2013._problem_hint(src.problems + skipped))
    arrays["fingerprint"] = np.asarray(digest.hexdigest())
    arrays["problems"] = np.asarray(skipped, dtype=str)
    return arrays
