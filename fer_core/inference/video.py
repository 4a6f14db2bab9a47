"""Emotions along a video file: one row per analysed frame, for a timeline chart and a CSV.

`iter_rows` reads the file with cv2.VideoCapture, analyses one frame in `stride` (the others are
grabbed without being decoded into pictures) and yields a row per analysed frame: its time, index,
number of faces, the largest face's label and seven probabilities, and how bright that face is (the mean
level of its crop, 0-255; of the frame when there is no face). No frame is kept, so memory
stays flat whatever the video's length. Uploaded bytes go through `temp_video`, since OpenCV
reads from a path.
"""
import csv
import io
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.emotions import EMOTIONS
from ..data.images import faces_level
from ..data.preprocess import crop_face
from ..errors import FerError

VIDEO_TYPES = ("mp4", "avi", "mov", "webm", "mkv")
COLUMNS = ("time_s", "frame", "faces", "label", *EMOTIONS, "brightness")
MAX_ANALYSED = 300  # default bound on the frames analysed per video


class InvalidVideoError(FerError):
    """The file is not a video OpenCV can read."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # as the container reports it; 0 when unknown
    fps: float  # 0 when unknown
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


@contextmanager
def temp_video(data: bytes, filename: str = "video.mp4"):
    """Write `data` to a private temporary folder under the upload's own file name (so errors name
    it) and yield the path; the folder is removed afterwards."""
    name = Path(filename).name or "video.mp4"
    with tempfile.TemporaryDirectory(prefix="fer_video_") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path


@contextmanager
def open_video(path):
    """A cv2.VideoCapture opened on `path`, released on exit."""
    path = Path(path)
    if not path.is_file():
        raise InvalidVideoError(f"{path.name}: no such file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise _not_a_video(path)
        yield cap
    finally:
        cap.release()


def _not_a_video(path) -> InvalidVideoError:
    return InvalidVideoError(f"{Path(path).name} is not a video we can read ({', '.join(VIDEO_TYPES)})")


def info(cap) -> VideoInfo:
    """Frame count, frame rate and size of an open capture."""
    frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    fps = cap.get(cv2.CAP_PROP_FPS)
    return VideoInfo(frames=int(frames) if frames > 0 else 0, fps=float(fps) if 0 < fps < 1000 else 0.0,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def video_info(path) -> VideoInfo:
    """VideoInfo of a video file (InvalidVideoError when it is not one)."""
    with open_video(path) as cap:
        if not cap.grab():
            raise _not_a_video(path)
        return info(cap)


def auto_stride(frames: int, max_frames: int = MAX_ANALYSED) -> int:
    """The smallest stride that analyses at most `max_frames` of `frames` (1 when the count is unknown)."""
    return max(1, math.ceil(frames / max_frames)) if frames > 0 and max_frames > 0 else 1


def iter_rows(path, recognizer, stride: int = 1, progress=None):
    """Yield a row (dict with COLUMNS) for every `stride`-th frame of the video at `path`.

    progress: called as progress(frames_read, frames_total) after each analysed frame
    (frames_total is 0 when the container does not say).
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    with open_video(path) as cap:
        meta = info(cap)
        index = 0
        while True:
            if index % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                yield frame_row(recognizer, frame, index, _time_s(cap, index, meta.fps))
                if progress is not None:
                    progress(index + 1, meta.frames)
            elif not cap.grab():
                break
            index += 1
    if index == 0:
        raise _not_a_video(path)


def analyse_video(path, recognizer, max_frames: int = MAX_ANALYSED, progress=None) -> list:
    """All rows of a video, analysing at most about `max_frames` frames spread over its length."""
    stride = auto_stride(video_info(path).frames, max_frames)
    return list(iter_rows(path, recognizer, stride, progress))


def frame_row(recognizer, bgr: np.ndarray, index: int, time_s: float) -> dict:
    """One frame's row: the faces found, the largest face's emotion (None and NaN when no face) and how bright
    that face is (images.faces_level)."""
    boxes = recognizer.detect(bgr)
    row = {"time_s": round(time_s, 3), "frame": index, "faces": len(boxes), "label": None,
           **{e: math.nan for e in EMOTIONS}}
    crops = [crop_face(bgr, max(boxes, key=lambda b: b[2] * b[3]))] if boxes else []
    if crops:
        probs = recognizer.classify(crops[0][None])[0]
        row["label"] = EMOTIONS[int(np.argmax(probs))]
        row.update({e: float(p) for e, p in zip(EMOTIONS, probs)})
    row["brightness"] = round(faces_level(bgr, crops), 1)
    return row


def _time_s(cap, index, fps) -> float:
    if fps > 0:
        return index / fps
    return cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0


def summary(rows) -> dict:
    """Counts over the rows: analysed frames, frames with a face, how often each label won, and their mean
    brightness (None without rows)."""
    labels = [r["label"] for r in rows if r["label"]]
    counts = {e: labels.count(e) for e in EMOTIONS}
    return {"analysed": len(rows), "with_face": len(labels), "labels": counts,
            "top": max(counts, key=counts.get) if labels else None,
            "brightness": float(np.mean([r["brightness"] for r in rows])) if rows else None}


def rows_to_csv(rows) -> str:
    """Rows as CSV text with a header; probabilities to 4 decimals, empty where no face was found."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_csv_value(r[c]) for c in COLUMNS])
    return buf.getvalue()


def _csv_value(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return round(v, 4) if isinstance(v, float) else v


def timeline_figure(rows):
    """A plotly line chart of the main face's seven probabilities per analysed frame."""
    from .live import emotion_figure

    probs = [None if r["label"] is None else [r[e] for e in EMOTIONS] for r in rows]
    return emotion_figure([r["time_s"] for r in rows], probs, "time in the video (s)")
