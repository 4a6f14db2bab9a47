"""fer_core.inference.video on a short video the test writes with cv2.VideoWriter (5 blank frames, then 15 of the
smiling astronaut): per-frame rows with real probabilities, stride, progress, CSV, timeline, and files
that are not videos."""
import csv
import io
import math

import cv2
import numpy as np
import pytest

from fer_core import EMOTIONS, EmotionRecognizer, FerError
from fer_core.data.preprocess import crop_face
from fer_core.inference import video
from fer_core.inference.video import InvalidVideoError

try:
    from helpers_images import astronaut_bgr, yunet_model
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr, yunet_model

FPS, BLANK, FACE = 10, 5, 15
FRAMES = BLANK + FACE


@pytest.fixture(scope="module")
def rec():
    with pytest.MonkeyPatch.context() as mp:
        if yunet_model() is not None:
            mp.setenv("FER_YUNET_MODEL", str(yunet_model()))
        return EmotionRecognizer(detector="yunet" if yunet_model() is not None else "haar")


def face_frame() -> np.ndarray:
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 100:580] = cv2.resize(astronaut_bgr(), (480, 480), interpolation=cv2.INTER_AREA)
    return frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """An MJPG .avi, 640x480 at 10 fps: frames 0-4 plain grey, 5-19 the astronaut with a little noise."""
    path = tmp_path_factory.mktemp("video") / "astronaut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
    assert writer.isOpened()
    rng = np.random.default_rng(1)
    face = face_frame()
    for i in range(FRAMES):
        if i < BLANK:
            writer.write(np.full((480, 640, 3), 128, np.uint8))
        else:
            writer.write(np.clip(face + rng.normal(0, 3, face.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def test_video_info(clip):
    meta = video.video_info(clip)
    assert (meta.frames, meta.width, meta.height) == (FRAMES, 640, 480)
    assert meta.fps == pytest.approx(FPS)
    assert meta.duration_s == pytest.approx(FRAMES / FPS)


def test_rows_for_every_frame(clip, rec):
    calls = []
    rows = list(video.iter_rows(clip, rec, progress=lambda done, total: calls.append((done, total))))
    assert calls == [(i + 1, FRAMES) for i in range(FRAMES)]
    assert [r["frame"] for r in rows] == list(range(FRAMES))
    assert [r["time_s"] for r in rows] == pytest.approx([i / FPS for i in range(FRAMES)])
    for r in rows:
        assert tuple(r) == video.COLUMNS
    for r in rows[:BLANK]:
        assert r["faces"] == 0 and r["label"] is None and all(math.isnan(r[e]) for e in EMOTIONS)
    faces = rows[BLANK:]
    assert all(r["faces"] >= 1 for r in faces)  # 1 with YuNet; Haar may add a false face
    for r in faces:
        probs = [r[e] for e in EMOTIONS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == EMOTIONS[int(np.argmax(probs))]
    happy = [r["label"] for r in faces].count("happy")
    assert happy >= 0.8 * FACE, [r["label"] for r in faces]


def test_rows_match_the_recognizer(clip, rec):
    """A row holds the recognizer's own result for the largest face of that frame."""
    cap = cv2.VideoCapture(str(clip))
    for _ in range(BLANK + 3):
        ok, frame = cap.read()
    cap.release()
    found = rec.predict(frame)
    expected = max(found, key=lambda f: f.box[2] * f.box[3])
    row = video.frame_row(rec, frame, BLANK + 2, 0.7)
    assert row["label"] == expected.label and row["faces"] == len(found) >= 1
    assert [row[e] for e in EMOTIONS] == pytest.approx([expected.scores[e] for e in EMOTIONS], abs=1e-6)


def test_stride_and_frame_budget(clip, rec):
    rows = list(video.iter_rows(clip, rec, stride=3))
    assert [r["frame"] for r in rows] == [0, 3, 6, 9, 12, 15, 18]
    assert [r["time_s"] for r in rows] == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8])
    calls = []
    rows = video.analyse_video(clip, rec, max_frames=5, progress=lambda d, t: calls.append((d, t)))
    assert [r["frame"] for r in rows] == [0, 4, 8, 12, 16]  # stride ceil(20 / 5) = 4
    assert calls == [(1, 20), (5, 20), (9, 20), (13, 20), (17, 20)]
    assert video.auto_stride(0) == 1 and video.auto_stride(300) == 1 and video.auto_stride(301) == 2
    with pytest.raises(ValueError):
        list(video.iter_rows(clip, rec, stride=0))


def test_csv_summary_and_timeline(clip, rec):
    rows = list(video.iter_rows(clip, rec, stride=2))
    text = video.rows_to_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0]) == video.COLUMNS and len(parsed) == 10
    assert parsed[0]["label"] == "" and parsed[0]["happy"] == "" and parsed[0]["faces"] == "0"
    last = parsed[-1]
    assert last["frame"] == "18" and float(last["time_s"]) == pytest.approx(1.8)
    assert sum(float(last[e]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert last["label"] == rows[-1]["label"]

    assert float(parsed[0]["brightness"]) == pytest.approx(128, abs=3)  # the grey frames, through MJPG
    (box,) = rec.detect(face_frame())  # with a face, the row reads how bright the face is, not the frame
    assert float(last["brightness"]) == pytest.approx(crop_face(face_frame(), box).mean(), abs=3)

    s = video.summary(rows)
    assert s["analysed"] == 10 and s["with_face"] == sum(1 for r in rows if r["faces"])
    assert s["top"] == "happy" and sum(s["labels"].values()) == s["with_face"]
    assert s["brightness"] == pytest.approx(np.mean([r["brightness"] for r in rows])) and s["brightness"] > 35
    assert video.summary([])["brightness"] is None

    fig = video.timeline_figure(rows)
    assert [t.name for t in fig.data] == list(EMOTIONS)
    happy = fig.data[EMOTIONS.index("happy")]
    assert list(happy.x) == pytest.approx([r["time_s"] for r in rows])
    assert happy.y[0] is None and happy.y[-1] == pytest.approx(rows[-1]["happy"])


def test_temp_video_is_removed(clip, rec):
    with video.temp_video(clip.read_bytes(), "../holiday clip.avi") as path:
        assert path.name == "holiday clip.avi" and path.stat().st_size == clip.stat().st_size
        assert len(video.analyse_video(path, rec, max_frames=4)) == 4
    assert not path.exists() and not path.parent.exists()


@pytest.mark.parametrize("data, name", [(b"this is not a video\n" * 50, "notes.mp4"), (b"", "empty.webm"),
                                        (b"\x00\x01garbage" * 1000, "noise.mkv")])
def test_not_a_video(data, name, rec):
    with video.temp_video(data, name) as path:
        with pytest.raises(InvalidVideoError, match=f"^{name} is not a video we can read"):
            video.video_info(path)
        with pytest.raises(InvalidVideoError, match="not a video"):
            video.analyse_video(path, rec)
        with pytest.raises(FerError):
            list(video.iter_rows(path, rec))


def test_missing_file(tmp_path, rec):
    with pytest.raises(InvalidVideoError, match="no such file"):
        video.video_info(tmp_path / "nope.mp4")
