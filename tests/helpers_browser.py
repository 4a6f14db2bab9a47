"""Builders for the end-to-end browser tests: a `streamlit run` server on a free port, headless Chromium
settings (Debian's /usr/bin/chromium, driven by Playwright; no browser is ever downloaded) and the y4m
clip that Chromium's fake camera plays.

The y4m is written here (header + planar I420 frames from OpenCV), so no ffmpeg is needed: from the clip
in env FER_FACE_CLIP when it is set and readable, else from scikit-image's astronaut photo.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = Path(os.environ.get("FER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage"]
# CONTRACT with the webcam page: its counter reads exactly like this (U+00B7 middle dot between the parts).
COUNTER_RE = re.compile(r"Processed frames: (\d+) \u00b7 with a face: (\d+)")
CAMERA_SIZE = (640, 480)
CAMERA_FPS = 30  # a typical webcam
# A webcam stream with no processed frame this long after START is stopped and started once more, as a person
# would (test_browser's webcam test says why); the restart is recorded.
FIRST_FRAME_S = 30


def fake_camera_args(y4m: Path) -> list:
    """Chromium flags that grant camera access without a prompt and play `y4m` (in a loop) as the camera."""
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run app.py` in `repo` on a free localhost port, its output in `log`."""

    def __init__(self, repo: Path, log: Path, env=None):
        self.repo, self.log, self.port = Path(repo), Path(log), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.proc = None

    def start(self, timeout=120.0):
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.repo, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"streamlit was not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self):
        """Ends the server and its children (its own process group, started above)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, chars=6000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-chars:]


# --- the fake camera's clip ------------------------------------------------------------------------------

def letterbox(bgr: np.ndarray, size=CAMERA_SIZE) -> np.ndarray:
    """`bgr` scaled to fit `size` (w, h), centred on black."""
    import cv2
    w, h = size
    scale = min(w / bgr.shape[1], h / bgr.shape[0])
    nw, nh = max(2, int(round(bgr.shape[1] * scale))), max(2, int(round(bgr.shape[0] * scale)))
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y:y + nh, x:x + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas


def write_y4m(frames, path: Path, fps=CAMERA_FPS) -> Path:
    """Frames (BGR uint8, all of one even size) as a YUV4MPEG2 file, 4:2:0, the format Chromium's fake
    capture reads."""
    import cv2
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for bgr in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    return Path(path)


def clip_frames(clip: Path, max_frames=150) -> list:
    """Up to `max_frames` frames of a video file, letterboxed to CAMERA_SIZE; [] if it cannot be read."""
    import cv2
    cap = cv2.VideoCapture(str(clip))
    frames = []
    try:
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(letterbox(frame))
    finally:
        cap.release()
    return frames


def astronaut_frames(n=50) -> list:
    """scikit-image's astronaut (one frontal face) drifting slowly left and right, letterboxed."""
    from skimage import data
    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    frames = []
    for i in range(n):
        shift = int(round(24 * np.sin(2 * np.pi * i / n)))
        frames.append(np.roll(letterbox(bgr), shift, axis=1))
    return frames


def face_clip_y4m(path: Path) -> tuple:
    """(y4m path, source description): FER_FACE_CLIP's video when readable, else the astronaut."""
    clip = os.environ.get("FER_FACE_CLIP")
    frames = clip_frames(Path(clip)) if clip and Path(clip).is_file() else []
    source = clip if frames else "skimage astronaut"
    return write_y4m(frames or astronaut_frames(), path), source


# --- geometry of what a page draws (bounding boxes as Playwright gives them: x, y, width, height) --------

def overlap(a: dict, b: dict) -> tuple:
    """(width, height) of the intersection of two boxes; a side is <= 0 when they do not meet."""
    w = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return w, h


def overlapping_pairs(named_boxes, tolerance=1.0) -> list:
    """(name, name) of every two boxes in [(name, box)] that intersect by more than `tolerance` px both ways
    (a shared edge or a one-pixel anti-aliasing fringe is not an overlap)."""
    pairs = []
    for i, (name_a, a) in enumerate(named_boxes):
        for name_b, b in named_boxes[i + 1:]:
            w, h = overlap(a, b)
            if w > tolerance and h > tolerance:
                pairs.append((name_a, name_b))
    return pairs


def outside(inner: dict, outer: dict, tolerance=1.0) -> bool:
    """Whether `inner` reaches past any side of `outer` by more than `tolerance` px."""
    return (inner["x"] < outer["x"] - tolerance or inner["y"] < outer["y"] - tolerance
            or inner["x"] + inner["width"] > outer["x"] + outer["width"] + tolerance
            or inner["y"] + inner["height"] > outer["y"] + outer["height"] + tolerance)
