"""Live video: per-face tracking with smoothed emotions, an adaptive frame-skipping policy, drawing,
and `LiveProcessor`, the per-session object that streamlit-webrtc calls on every webcam frame.

A frame goes: BGR ndarray -> (on "analysed" frames) detect faces, classify each crop, match the
boxes to the tracks of earlier frames by IoU and blend the new probabilities into each track's
exponential moving average -> draw every visible track (box and label as fer_core.inference.annotate draws
them on uploads, plus small probability bars). On
"skipped" frames the last tracks are drawn again without running the detector or the model;
`SkipPolicy` decides how many frames to skip from the measured cost of both kinds of frame so
the stream holds its target frame rate.

`LiveProcessor.__call__` runs on streamlit-webrtc's worker thread; the UI thread reads its
counters and the main face's recent history through `snapshot()`, under a lock. A frame whose
processing fails comes back unannotated and is counted in `errors`; the stream goes on.
"""
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.emotions import EMOTIONS
from ..data.faces import iou
from ..data.images import dark_note, faces_level
from ..data.preprocess import crop_face
from .annotate import EMOTION_COLORS, draw_faces, emotion_bgr

log = logging.getLogger(__name__)

TARGET_FPS = 25.0  # frames per second the skip policy holds the processing to
HISTORY_S = 30.0  # how much of the main face's history snapshots keep
FPS_WINDOW_S = 2.0  # recent fps is measured over this many seconds
DETECT_MAX_SIDE = 320  # detect on a copy of at most this many pixels per side (a 640x480 frame: 320x240)
MIN_FACE = 0.15  # the smallest face found live: 15% of the frame's height (72 px at 480), about 2 m away
ERROR_LOG_EVERY = 100  # log the first failed frame with its traceback, then one in this many
BAR_W, BAR_H, BAR_GAP, BAR_TEXT_W = 50, 8, 2, 26  # probability bars beside each face, in pixels


def ema(previous, new, alpha: float) -> np.ndarray:
    """Exponential moving average step: alpha * new + (1 - alpha) * previous."""
    return alpha * np.asarray(new, np.float64) + (1.0 - alpha) * np.asarray(previous, np.float64)


@dataclass
class Track:
    """One face followed across frames: its latest box and its smoothed probabilities."""
    id: int
    box: tuple
    probs: np.ndarray  # smoothed, EMOTIONS order
    hits: int = 1  # analysed frames in which it was detected
    missed: int = 0  # analysed frames in a row in which it was not

    @property
    def label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))

    @property
    def area(self) -> int:
        return int(self.box[2]) * int(self.box[3])


class FaceTracker:
    """Match each analysed frame's faces to existing tracks by IoU and smooth their probabilities.

    alpha: weight of the newest probabilities in the moving average (1 = no smoothing).
    iou_threshold: the least overlap for a box to continue a track.
    max_missed: a track unseen for more than this many analysed frames is forgotten.
    """

    def __init__(self, alpha=0.35, iou_threshold=0.3, max_missed=8):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.tracks = []
        self._next_id = 1

    def update(self, boxes, probs) -> list:
        """Faces of one analysed frame -> their tracks, in the order of `boxes`."""
        matches = self._match(boxes)
        visible = []
        for i, (box, p) in enumerate(zip(boxes, probs)):
            track = matches.get(i)
            if track is None:
                track = Track(self._next_id, tuple(int(v) for v in box), np.asarray(p, np.float64))
                self._next_id += 1
                self.tracks.append(track)
            else:
                track.box, track.probs = tuple(int(v) for v in box), ema(track.probs, p, self.alpha)
                track.hits, track.missed = track.hits + 1, 0
            visible.append(track)
        seen = {t.id for t in visible}
        for t in self.tracks:
            if t.id not in seen:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return visible

    def _match(self, boxes) -> dict:
        """Greedy matching, best overlap first: {box index: track}."""
        pairs = sorted(((iou(b, t.box), i, k) for i, b in enumerate(boxes) for k, t in enumerate(self.tracks)),
                       reverse=True)
        matches, used = {}, set()
        for overlap, i, k in pairs:
            if overlap < self.iou_threshold:
                break
            if i not in matches and k not in used:
                matches[i] = self.tracks[k]
                used.add(k)
        return matches


class SkipPolicy:
    """Which frames to analyse so the average cost per frame stays within the target frame rate.

    It keeps moving averages of the seconds an analysed frame and a skipped frame take, and
    analyses one frame in `interval`, the smallest interval whose average cost
    (full + (interval - 1) * skip) / interval fits in `headroom / target_fps` seconds.
    With adaptive=False every frame is analysed.
    """

    def __init__(self, target_fps=TARGET_FPS, headroom=0.8, max_interval=8, alpha=0.2, adaptive=True):
        self.budget = headroom / target_fps
        self.max_interval = max_interval
        self.alpha = alpha
        self.adaptive = adaptive
        self.full_s = None
        self.skip_s = 0.0
        self.interval = 1
        self._since_analysed = None  # frames since the last analysed one; None before the first

    def should_analyse(self) -> bool:
        return self._since_analysed is None or self._since_analysed + 1 >= self.interval

    def record(self, analysed: bool, seconds: float):
        """Account for one frame that took `seconds`, and update the interval."""
        if analysed:
            self.full_s = seconds if self.full_s is None else float(ema(self.full_s, seconds, self.alpha))
            self._since_analysed = 0
        else:
            self.skip_s = float(ema(self.skip_s, seconds, self.alpha))
            self._since_analysed += 1
        if self.adaptive and self.full_s is not None:
            self.interval = skip_interval(self.full_s, self.skip_s, self.budget, self.max_interval)


def skip_interval(full_s: float, skip_s: float, budget_s: float, max_interval: int) -> int:
    """The smallest n with (full_s + (n - 1) * skip_s) / n <= budget_s, within [1, max_interval]."""
    if full_s <= budget_s:
        return 1
    if skip_s >= budget_s:
        return max_interval
    return min(max_interval, max(1, math.ceil((full_s - skip_s) / (budget_s - skip_s))))


@dataclass(frozen=True)
class LiveStats:
    """A consistent copy of a LiveProcessor's counters, taken under its lock."""
    frames: int = 0  # frames handed to the processor
    face_frames: int = 0  # frames that came back with at least one face drawn
    faces: int = 0  # faces on the latest frame
    faces_total: int = 0  # faces drawn, summed over all frames
    analysed: int = 0  # frames on which the detector and the model ran
    errors: int = 0  # frames that failed and came back unannotated
    last_error: str = ""
    fps: float = 0.0  # frames processed per second over the last FPS_WINDOW_S seconds
    frame_ms: float = 0.0  # moving average of the processing time per frame
    interval: int = 1  # one frame in `interval` is analysed
    now: float = 0.0  # the processor's clock when the snapshot was taken
    level: float = None  # moving average of images.faces_level over the analysed frames; None before one
    history: tuple = field(default_factory=tuple)  # (time, probs or None) of the main face, oldest first


class LiveProcessor:
    """Annotate a stream of BGR frames with each face's smoothed emotion; safe to read from another thread.

    recognizer: an EmotionRecognizer (shared, thread-safe); the processor itself is per stream.
    target_fps / adaptive: the SkipPolicy's goal; adaptive=False analyses every frame.
    detect_max_side: frames larger than this are downscaled for detection (None: never).
    min_face: the smallest face to detect, as a share of the frame's shorter side.
    history_s: how many seconds of the main face's history snapshots keep.
    tracker: a FaceTracker (its alpha sets the smoothing); a default one when None.
    clock: seconds as a float (time.monotonic by default).
    """

    def __init__(self, recognizer, target_fps=TARGET_FPS, adaptive=True, detect_max_side=DETECT_MAX_SIDE,
                 min_face=MIN_FACE, history_s=HISTORY_S, tracker=None, clock=time.monotonic):
        self.recognizer = recognizer
        self.tracker = tracker or FaceTracker()
        self.policy = SkipPolicy(target_fps, adaptive=adaptive)
        self.detect_max_side = detect_max_side
        self.min_face = min_face
        self.history_s = history_s
        self.clock = clock
        self._visible = []  # the tracks drawn on the latest frame
        self._process_lock = threading.Lock()  # one frame at a time
        self._stats_lock = threading.Lock()  # counters and history, read by snapshot()
        self._counts = dict(frames=0, face_frames=0, faces=0, faces_total=0, analysed=0, errors=0)
        self._last_error = ""
        self._frame_s = None
        self._level = None
        self._stamps = deque(maxlen=512)
        self._history = deque()

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """One BGR frame -> an annotated copy; on any error, the frame itself, unannotated."""
        with self._process_lock:
            start = self.clock()
            analyse = self.policy.should_analyse()
            try:
                out, tracks, level = self._process(bgr, analyse)
            except Exception as e:  # a failed frame must not end the stream
                self._record_error(e)
                return bgr
            seconds = self.clock() - start
            self.policy.record(analyse, seconds)
            self._record(tracks, start, seconds, level)
            return out

    @property
    def visible_tracks(self) -> list:
        """The tracks drawn on the latest frame (read it from the processing thread or in tests)."""
        return list(self._visible)

    def av_callback(self, frame):
        """streamlit-webrtc's video_frame_callback: av.VideoFrame -> annotated av.VideoFrame."""
        import av

        try:
            bgr = frame.to_ndarray(format="bgr24")
        except Exception as e:  # an undecodable frame goes back as it came
            self._record_error(e)
            return frame
        return av.VideoFrame.from_ndarray(self(bgr), format="bgr24")

    def snapshot(self) -> LiveStats:
        """The counters, recent fps and the main face's history for the last `history_s` seconds."""
        now = self.clock()
        with self._stats_lock:
            self._trim_history(now)
            return LiveStats(**self._counts, last_error=self._last_error, fps=self._fps(now),
                             frame_ms=1000.0 * (self._frame_s or 0.0), interval=self.policy.interval,
                             now=now, level=self._level, history=tuple(self._history))

    def _process(self, bgr, analyse):
        """(annotated copy, visible tracks, how bright the faces are or None); on skipped frames the last tracks
        are drawn again."""
        level = None
        if analyse:
            boxes = self.detect_faces(bgr)
            crops = [crop_face(bgr, b) for b in boxes]
            self._visible = self.tracker.update(boxes, self._classify(crops))
            level = faces_level(bgr, crops)
        return draw_tracks(bgr, self._visible), list(self._visible), level

    def detect_faces(self, bgr) -> list:
        """Face boxes in frame pixels, found on a copy downscaled to at most detect_max_side."""
        h, w = bgr.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w)) if self.detect_max_side else 1.0
        if scale >= 1.0:
            return self.recognizer.detect(bgr, min_face=self.min_face)
        small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return [scale_box(b, 1.0 / scale, w, h) for b in self.recognizer.detect(small, min_face=self.min_face)]

    def _classify(self, crops) -> np.ndarray:
        """Probabilities [N, 7] for the faces' 48x48 crops."""
        if not crops:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        return self.recognizer.classify(np.stack(crops))

    def _record(self, tracks, start, seconds, level):
        """Counts one frame; `level` is how bright its faces are on analysed frames, None on skipped ones."""
        analysed = level is not None
        with self._stats_lock:
            c = self._counts
            c["frames"] += 1
            c["analysed"] += int(analysed)
            c["faces"] = len(tracks)
            c["faces_total"] += len(tracks)
            c["face_frames"] += int(bool(tracks))
            self._frame_s = seconds if self._frame_s is None else float(ema(self._frame_s, seconds, 0.1))
            self._stamps.append(start + seconds)
            if analysed:
                self._level = level if self._level is None else float(ema(self._level, level, 0.2))
                main = max(tracks, key=lambda t: t.area) if tracks else None
                self._history.append((start, None if main is None else tuple(float(p) for p in main.probs)))
                self._trim_history(start)

    def _record_error(self, error):
        with self._stats_lock:
            self._counts["frames"] += 1
            self._counts["errors"] += 1
            self._counts["faces"] = 0
            self._last_error = f"{type(error).__name__}: {error}"
            self._stamps.append(self.clock())
            frames, errors, message = self._counts["frames"], self._counts["errors"], self._last_error
        if errors == 1 or errors % ERROR_LOG_EVERY == 0:
            log.warning("live frame %d failed (%d failures so far): %s", frames, errors, message, exc_info=error)

    def _trim_history(self, now):
        while self._history and self._history[0][0] < now - self.history_s:
            self._history.popleft()

    def _fps(self, now) -> float:
        recent = [t for t in self._stamps if t >= now - FPS_WINDOW_S]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])


def scale_box(box, factor, width, height) -> tuple:
    """A (x, y, w, h) box scaled by `factor` and clipped to a width x height picture."""
    x0, y0 = max(0, round(box[0] * factor)), max(0, round(box[1] * factor))
    x1 = min(width, round((box[0] + box[2]) * factor))
    y1 = min(height, round((box[1] + box[3]) * factor))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def stats_line(stats: LiveStats) -> str:
    """The page's live counter (a browser test reads exactly this wording)."""
    return f"Processed frames: {stats.frames} · with a face: {stats.face_frames}"


def detail_line(stats: LiveStats, playing: bool = True) -> str:
    """A caption under the counter: fps, cost per frame, skipping and failures while the stream plays; once it
    has stopped (STOP pressed, or a dropped connection), only that, since the live figures would be stale."""
    if playing:
        every = "every frame" if stats.interval == 1 else f"1 frame in {stats.interval}"
        text = (f"{stats.fps:.1f} fps · {stats.frame_ms:.0f} ms per frame · faces now: {stats.faces} · "
                f"analysing {every}")
        if note := dark_note(stats.level):
            text += f" · {note}"
    else:
        text = "Not streaming: press START to see each face's emotion on your webcam"
    if stats.errors:
        text += f" · failed frames: {stats.errors} (last: {stats.last_error})"
    return text


def draw_tracks(bgr: np.ndarray, tracks) -> np.ndarray:
    """A copy of `bgr` with each track's box and "label 87%" (fer_core.inference.annotate) and probability bars."""
    out = draw_faces(bgr, tracks)
    for track in tracks:
        draw_bars(out, track.box, track.probs)
    return out


def draw_bars(bgr: np.ndarray, box, probs):
    """Seven small bars (3-letter name, length by probability) right of the box, or left of it; in place."""
    x, y, w = (int(v) for v in box[:3])
    panel_w = BAR_TEXT_W + BAR_W
    left = x + w + 4 if x + w + 4 + panel_w <= bgr.shape[1] else max(0, x - 4 - panel_w)
    panel_h = len(EMOTIONS) * (BAR_H + BAR_GAP) + BAR_GAP
    cv2.rectangle(bgr, (left, y), (left + panel_w, y + panel_h), (40, 40, 40), cv2.FILLED)
    for i, (emotion, p) in enumerate(zip(EMOTIONS, probs)):
        top = y + BAR_GAP + i * (BAR_H + BAR_GAP)
        if top + BAR_H > bgr.shape[0]:
            break
        cv2.putText(bgr, emotion[:3], (left + 2, top + BAR_H), cv2.FONT_HERSHEY_PLAIN, 0.7, (255, 255, 255), 1)
        x0 = left + BAR_TEXT_W
        cv2.rectangle(bgr, (x0, top), (x0 + BAR_W, top + BAR_H), (90, 90, 90), cv2.FILLED)
        cv2.rectangle(bgr, (x0, top), (x0 + round(BAR_W * float(p)), top + BAR_H), emotion_bgr(emotion), cv2.FILLED)


def emotion_figure(x, probs, x_title: str, title: str = ""):
    """A plotly line chart of the seven probabilities over `x` (rows of probs may be None: a gap)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for j, emotion in enumerate(EMOTIONS):
        y = [None if p is None else p[j] for p in probs]
        fig.add_trace(go.Scatter(x=list(x), y=y, name=emotion, mode="lines",
                                 line={"color": EMOTION_COLORS[emotion], "width": 2}))
    fig.update_layout(title=title or None, xaxis_title=x_title, yaxis={"title": "probability", "range": [0, 1]},
                      height=320, margin={"l": 40, "r": 10, "t": 40 if title else 10, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def history_figure(stats: LiveStats, max_points: int = 300):
    """The main face's smoothed emotions over the last seconds of a LiveStats snapshot
    (every k-th entry when there are more than `max_points`, to keep each redraw small)."""
    history = stats.history[::max(1, math.ceil(len(stats.history) / max_points))]
    fig = emotion_figure([t - stats.now for t, _ in history], [p for _, p in history], "seconds ago")
    fig.update_xaxes(range=[-HISTORY_S, 0])
    return fig
