"""Builders of small FER2013-like datasets (Kaggle folder/zip layout, fer2013.csv, unprefixed folders).

Every face is a synthetic 48x48 grey picture: an oval face with eyes and a mouth whose shape depends
on the class, on a shaded background, plus noise, so the classes are learnable and no two images are
equal. The builders return the counts they wrote, {split: {emotion: n}}, for the tests to compare.
"""
import json
import os
import subprocess
import sys
import zipfile
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np

from fer_core.data.emotions import EMOTIONS

Dataset = namedtuple("Dataset", "path counts")
REPO = Path(__file__).resolve().parent.parent

# per split, per class (EMOTIONS order) - different numbers per class so a label mix-up shows
KAGGLE_COUNTS = {"train": [6, 3, 5, 8, 4, 7, 5], "val": [2, 1, 3, 2, 1, 2, 2], "test": [1, 2, 1, 3, 2, 1, 1]}
# unprefixed folder: val is 10% of train per class (no count here has a 10% ending in .5)
UNPREFIXED_TRAIN = [20, 6, 14, 31, 11, 27, 9]
UNPREFIXED_VAL = [2, 1, 1, 3, 1, 3, 1]  # round(10%)
UNPREFIXED_TEST = [3, 1, 2, 4, 2, 3, 2]
PREFIX = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
USAGE = PREFIX  # the CSV's Usage values are the same words
MOUTH_CURVE = {0: -3, 1: -2, 2: -1, 3: 5, 4: -5, 5: 0, 6: 0}


def face_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 uint8 grey 'face' whose mouth/brows depend on `label`."""
    yy, xx = np.mgrid[0:48, 0:48]
    img = 60 + 40 * (xx / 47.0) * rng.uniform(0.5, 1.5) + rng.normal(0, 4, (48, 48))
    cx, cy = 24 + rng.integers(-2, 3), 24 + rng.integers(-2, 3)
    cv2.ellipse(img, (int(cx), int(cy)), (15, 19), 0, 0, 360, float(rng.integers(150, 210)), -1)
    for ex in (cx - 7, cx + 7):
        cv2.circle(img, (int(ex), int(cy - 5)), 2 + (label == 5), 30.0, -1)  # surprise: wide eyes
    mouth_y = int(cy + 9)
    curve = MOUTH_CURVE[label]  # >0 smile, <0 frown
    if label == 5:  # surprise: open mouth
        cv2.circle(img, (int(cx), mouth_y), 4, 40.0, -1)
    else:
        cv2.ellipse(img, (int(cx), mouth_y - curve // 2), (6 + label % 3, abs(curve) + 1), 0,
                    0 if curve >= 0 else 180, 180 if curve >= 0 else 360, 40.0, 2)
    if label in (0, 1):  # angry/disgust: slanted brows
        cv2.line(img, (int(cx - 10), int(cy - 10 - label)), (int(cx - 3), int(cy - 7)), 20.0, 2)
        cv2.line(img, (int(cx + 10), int(cy - 10 - label)), (int(cx + 3), int(cy - 7)), 20.0, 2)
    img += rng.normal(0, 6, (48, 48))
    return np.clip(img, 0, 255).astype(np.uint8)


def _expected(counts: dict) -> dict:
    return {s: dict(zip(EMOTIONS, n)) for s, n in counts.items()}


def make_kaggle(root, counts=None, seed=0, ext=".jpg") -> Dataset:
    """train/<emotion>/Training_N.jpg, test/<emotion>/PublicTest_N.jpg and test/<emotion>/PrivateTest_N.jpg."""
    counts = counts or KAGGLE_COUNTS
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = 0
    for split, per_class in counts.items():
        folder = "train" if split == "train" else "test"
        for label, k in enumerate(per_class):
            d = root / folder / EMOTIONS[label]
            d.mkdir(parents=True, exist_ok=True)
            for _ in range(k):
                n += 1
                assert cv2.imwrite(str(d / f"{PREFIX[split]}_{n}{ext}"), face_image(label, rng))
    return Dataset(root, _expected(counts))


def zip_folder(folder, zip_path, prefix="") -> Path:
    """Zip every file under `folder`, named `prefix` + its relative path (with directory entries, like Kaggle's)."""
    folder, zip_path = Path(folder), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        if prefix:
            z.writestr(prefix.rstrip("/") + "/", b"")
        for p in sorted(folder.rglob("*")):
            arc = prefix + p.relative_to(folder).as_posix()
            if p.is_dir():
                z.writestr(arc + "/", b"")
            else:
                z.write(p, arc)
    return zip_path


def csv_row(label, img, usage) -> str:
    return f'{label},"{" ".join(map(str, img.ravel().tolist()))}",{usage}\n'


def make_csv(path, counts=None, seed=0, extra_lines=()) -> tuple:
    """fer2013.csv with `emotion,pixels,Usage`; rows interleave classes and splits like the original.

    Returns (Dataset, rows) where rows[i] = (label, image, split) of line i + 2 (line 1 is the header).
    `extra_lines` are appended verbatim after the good rows."""
    counts = counts or KAGGLE_COUNTS
    path = Path(path)
    rng = np.random.default_rng(seed)
    rows = [(label, face_image(label, rng), split)
            for split, per_class in counts.items() for label, k in enumerate(per_class) for _ in range(k)]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    with open(path, "w", newline="") as f:
        f.write("emotion,pixels,Usage\n")
        for label, img, split in rows:
            f.write(csv_row(label, img, USAGE[split]))
        for line in extra_lines:
            f.write(line)
    return Dataset(path, _expected(counts)), rows


def make_unprefixed(root, train=None, test=None, seed=0, ext=".png") -> Dataset:
    """train/<emotion>/imgN.png and test/<emotion>/imgN.png: no Training_/PublicTest_ prefix."""
    train, test = train or UNPREFIXED_TRAIN, test or UNPREFIXED_TEST
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = 0
    for folder, per_class in (("train", train), ("test", test)):
        for label, k in enumerate(per_class):
            d = root / folder / EMOTIONS[label]
            d.mkdir(parents=True, exist_ok=True)
            for _ in range(k):
                n += 1
                assert cv2.imwrite(str(d / f"img{n}{ext}"), face_image(label, rng))
    return Dataset(root, _expected({"train": train, "test": test}))


def bump_mtime(path, seconds=5):
    """Move a file's modification time forward (a later edit, whatever the file system's timestamp resolution)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + int(seconds * 1e9)))


def cli_env(**extra) -> dict:
    """Environment for `python -m fer_core` subprocesses: this process's (with its FER_CACHE_DIR), the repo
    importable, one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fresh_python_json(code: str, timeout=300) -> dict:
    """Run `code` in a bare interpreter (only the repository importable: nothing this test process loaded, one
    thread, offline) and return the JSON object its last printed line holds."""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                              "FER_OFFLINE": "1", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(*args, env=None, timeout=120, **kwargs):
    return subprocess.run([sys.executable, "-m", "fer_core", *map(str, args)], cwd=REPO, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout, **kwargs)
