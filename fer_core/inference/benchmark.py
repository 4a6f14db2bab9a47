"""`python -m fer_core benchmark`: how fast a shipped model and the face detectors run on this CPU.

Reports per-face classification latency at batch 1 and 16 (median and p95), per-frame latency at
640x480 for the webcam's detect + classify with each detector on real frames (a video, else a photo), the time
the upload page takes for a 12-megapixel photo (decode, detect, classify, draw), the model's load
time and the process's peak RSS, with the machine (CPU model, cores, SIMD flags) and the backend (int8 or torch)
beside every figure. `--write-card` stores the per-face figures in the
model's card (the dashboard and the README table read them from there).
"""
import os
import resource
import time

import cv2
import numpy as np
import torch

from ..data.faces import yunet_model_path
from ..data.images import load_image
from ..data.preprocess import crop_face
from ..errors import FerError
from ..models import cards
from ..models.speed import cpu_name, latency_ms, machine, machine_line
from .annotate import UPLOAD_TTA, analyse
from .live import LiveProcessor
from .recognizer import EmotionRecognizer

FRAME_SIZE = (640, 480)  # width, height of a webcam frame
FRAMES = 60  # frames timed per detector
PHOTO_SIZE = (4000, 3000)  # the upload figure: a 12-megapixel phone photo
PHOTO_RUNS = 5
WARMUP = 5


def frames_from(video=None, image=None, count=None) -> list:
    """`count` 640x480 BGR frames: from a video (looped), a photo, env FER_FACE_CLIP, or scikit-image's astronaut."""
    count = count or FRAMES
    video = video or (None if image else os.environ.get("FER_FACE_CLIP"))
    if video:
        frames = _read_frames(video, count)
        if not frames:
            raise FerError(f"{video}: no frames could be read (not a video OpenCV can decode)")
        return [frames[i % len(frames)] for i in range(count)]  # a short video is looped
    if image:
        photo = load_image(image)
    else:
        try:
            from skimage import data
        except ImportError:
            raise FerError("no frames: pass --video or --image (or set FER_FACE_CLIP)") from None
        photo = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    return [_fit(photo)] * count


def _read_frames(video, count) -> list:
    """Up to `count` frames of a video, fitted to 640x480."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(_fit(frame))
    cap.release()
    return frames


def _fit(bgr):
    """Letterbox a picture into a 640x480 frame, the way a webcam frame is shaped."""
    w, h = FRAME_SIZE
    scale = min(w / bgr.shape[1], h / bgr.shape[0])
    small = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


def _stats(ms) -> dict:
    return {"median": round(float(np.median(ms)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


@torch.inference_mode()
def frame_latency(recognizer, frames) -> dict:
    """Milliseconds per frame for the webcam's detect + crop + classify (fer_core.inference.live: detection on a
    downscaled copy, faces from live.MIN_FACE up), and how many frames had a face."""
    live = LiveProcessor(recognizer, adaptive=False)
    times, with_face = [], 0
    for i, frame in enumerate(frames[:WARMUP] + frames):
        t = time.perf_counter()
        boxes = live.detect_faces(frame)
        if boxes:
            recognizer.classify(np.stack([crop_face(frame, b) for b in boxes]))
        if i >= WARMUP:
            times.append((time.perf_counter() - t) * 1000)
            with_face += bool(boxes)
    return {**_stats(times), "frames": len(frames), "frames_with_face": with_face,
            "detect_side": live.detect_max_side, "min_face": live.min_face}


def photo_jpeg(frame, size=PHOTO_SIZE) -> bytes:
    """A phone-sized JPEG (12 megapixels by default) made from a frame's picture."""
    big = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return data.tobytes()


def photo_latency(recognizer, data: bytes, runs=PHOTO_RUNS) -> dict:
    """Milliseconds for what the upload page does with a photo: decode, detect, classify (with the page's
    default TTA), draw."""
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        result = analyse(recognizer, "photo.jpg", data, tta=UPLOAD_TTA)
        if i:  # the first run warms up
            times.append((time.perf_counter() - t) * 1000)
    return {**_stats(times), "megapixels": round(result.size[0] * result.size[1] / 1e6, 1), "faces": len(result.faces)}


def run(model=None, detectors=("yunet", "haar"), video=None, image=None, frames=None, backend="int8") -> dict:
    t = time.perf_counter()
    rec = EmotionRecognizer(model, "haar", backend=backend)  # the network as the app runs it
    load_s = time.perf_counter() - t
    card = rec.card
    frames = frames_from(video, image, frames or FRAMES)
    result = {
        "model": card["name"], "backend": rec.backend_used, "machine": machine(), "cpu": cpu_name(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "load_s": round(load_s, 3),
        "per_face_ms": {"batch1": latency_ms(rec.net, 1), "batch16": latency_ms(rec.net, 16, runs=30)},
        "per_frame_ms": {},
    }
    photo = photo_jpeg(frames[0])
    result["photo_12mp_ms"] = {}
    for name in detectors:
        if name == "yunet" and yunet_model_path() is None:
            skipped = {"skipped": "no YuNet model (set FER_YUNET_MODEL)"}
            result["per_frame_ms"][name] = result["photo_12mp_ms"][name] = skipped
            continue
        recognizer = EmotionRecognizer(card["name"], name, backend=backend)
        result["per_frame_ms"][name] = frame_latency(recognizer, frames)
        result["photo_12mp_ms"][name] = photo_latency(recognizer, photo)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def write_card(result: dict):
    """Store the measured per-face latency in the model's card: in its int8 block when int8 was timed."""
    card = cards.find_card(result["model"])
    figures = {**result["per_face_ms"], "torch": result["torch"], **result["machine"],
               "source": f"python -m fer_core benchmark --backend {result['backend']}"}
    if result["backend"] == "int8":
        card["int8"] = {**card["int8"], "cpu_ms_per_face": {**card["int8"]["cpu_ms_per_face"], **figures}}
    else:
        card["cpu_ms_per_face"] = figures
    cards.write_card(card)


def format_result(r: dict) -> str:
    lines = [f"{r['model']} on {machine_line(r['machine'])}; backend {r['backend']}, torch {r['torch']}",
             f"model load {r['load_s'] * 1000:.0f} ms; peak RSS {r['peak_rss_mb']:.0f} MB"]
    for k, v in r["per_face_ms"].items():
        lines.append(f"per face ({r['backend']}), {k:<8} median {v['median']:.3f} ms  p95 {v['p95']:.3f} ms")
    for k, v in r["per_frame_ms"].items():
        if "skipped" in v:
            lines.append(f"640x480 frame, {k}: skipped ({v['skipped']})")
        else:
            lines.append(f"640x480 frame, {k:<5} detect+classify median {v['median']:.2f} ms  p95 {v['p95']:.2f} ms "
                         f"({v['frames_with_face']}/{v['frames']} frames with a face; detection at "
                         f"{v['detect_side']} px, faces from {v['min_face']:.0%} of the height)")
    for k, v in r.get("photo_12mp_ms", {}).items():
        if "skipped" not in v:
            lines.append(f"{v['megapixels']} MP photo, {k:<5} decode+detect+classify+draw median {v['median']:.0f} ms  "
                         f"p95 {v['p95']:.0f} ms ({v['faces']} faces)")
    return "\n".join(lines)
