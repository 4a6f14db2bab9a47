"""Show what the recognizer found: boxes and "label 93%" drawn on a picture, probability charts,
and `analyse`, the upload page's whole per-file path (decode, detect, classify, draw).

Pictures are BGR uint8, as everywhere in fer_core. Each emotion has one colour, used for its
boxes here and its bar in `probability_chart`, so the two read together.
"""
import base64
import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.emotions import EMOTIONS
from ..data.images import downscale, faces_level, load_image_reduced
from ..data.preprocess import crop_face
from ..errors import FerError

log = logging.getLogger(__name__)

DISPLAY_MAX_SIDE = 1280  # annotated pictures are downscaled to at most this many pixels per side
UPLOAD_TTA = "flip"  # the upload page reads each face with its mirror image unless its toggle is off
EMOTION_COLORS = {  # hex RGB, one per emotion
    "angry": "#d62728", "disgust": "#2ca02c", "fear": "#9467bd", "happy": "#f2b701",
    "sad": "#1f77b4", "surprise": "#ff7f0e", "neutral": "#8c8c8c",
}
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_FONT_SCALE = 0.35  # OpenCV font scale: about 7 px high letters, the smallest still readable
MANY_FACES = 6  # a picture with more faces lists them in one table first (face_table); the charts come after


def emotion_bgr(label: str) -> tuple:
    """The emotion's colour as an OpenCV (B, G, R) tuple."""
    h = EMOTION_COLORS[label].lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def text_bgr(background: tuple) -> tuple:
    """Black or white, whichever reads better on `background` (B, G, R)."""
    b, g, r = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def label_text(face, number=None) -> str:
    """'happy 93%' for a FaceResult; '2: happy 93%' with its `number` (the upload page's "Face 2")."""
    text = f"{face.label} {face.confidence:.0%}"
    return text if number is None else f"{number}: {text}"


def faces_tally(faces) -> str:
    """'5 faces: 3 happy, 1 neutral, 1 sad' (most common first, ties in EMOTIONS order) for a picture with
    several faces; '' for one or none, where the face's own line says it all."""
    if len(faces) < 2:
        return ""
    labels = [f.label for f in faces]
    counts = sorted(((labels.count(e), -i, e) for i, e in enumerate(EMOTIONS) if e in labels), reverse=True)
    return f"{len(faces)} faces: " + ", ".join(f"{n} {e}" for n, _, e in counts)


def face_table(faces, crops) -> list:
    """One row per face, for the table of a group photo's faces: its number, its 48x48 crop (a PNG data URL, as
    the model sees it), label, confidence and the list of its seven probabilities in EMOTIONS order."""
    rows = []
    for number, (face, crop) in enumerate(zip(faces, crops), 1):
        png = cv2.imencode(".png", crop)[1].tobytes()
        rows.append({"face": number, "crop": "data:image/png;base64," + base64.b64encode(png).decode(),
                     "emotion": face.label, "confidence": float(face.confidence),
                     "probabilities": [float(face.scores[e]) for e in EMOTIONS]})
    return rows


def line_style(shape) -> tuple:
    """(line thickness in px, font scale) for a picture of this shape: both grow with its size."""
    side = max(shape[:2])
    return max(1, round(side / 400)), max(MIN_FONT_SCALE, side / 1400)


def fitted_scale(text, width, font_scale, thickness) -> float:
    """`font_scale`, made smaller (down to MIN_FONT_SCALE) so that `text` on its tag is at most `width` px wide."""
    pad = 2 * max(2, thickness) + 1  # as _draw_label pads it; OpenCV's filled rectangle includes both ends

    def tag_width(scale):
        return cv2.getTextSize(text, FONT, scale, max(1, thickness // 2))[0][0] + pad
    scale = max(MIN_FONT_SCALE, min(font_scale, font_scale * (width - pad) / (tag_width(font_scale) - pad)))
    while scale > MIN_FONT_SCALE and tag_width(scale) > width:  # the text's width is not quite linear in scale
        scale = max(MIN_FONT_SCALE, scale * 0.98)
    return scale


def draw_faces(image: np.ndarray, faces, scale: float = 1.0, numbered: bool = False) -> np.ndarray:
    """A copy of BGR `image` with each face's box and label; boxes are multiplied by `scale`
    (for a picture that `images.downscale` made smaller). `numbered`: each label starts with the face's
    number, 1 for the first in `faces`, so a list of the faces can refer to its box. With several faces each
    label is made no wider than its box where the font allows, so that a crowd's labels do not cover each other."""
    out = image.copy()
    thickness, font_scale = line_style(out.shape)
    for number, face in enumerate(faces, 1):
        x, y, w, h = (int(round(v * scale)) for v in face.box)
        color = emotion_bgr(face.label)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thickness)
        text = label_text(face, number if numbered else None)
        size = fitted_scale(text, w + thickness, font_scale, thickness) if len(faces) > 1 else font_scale
        _draw_label(out, text, (x, y), color, thickness, size)
    return out


def _draw_label(image, text, corner, color, thickness, font_scale):
    """Text on a filled tag just above `corner` (x, y), or just inside the box when there is no room."""
    text_thickness = max(1, thickness // 2)
    (tw, th), baseline = cv2.getTextSize(text, FONT, font_scale, text_thickness)
    pad = max(2, thickness)
    x, y = corner
    tag_h = th + baseline + 2 * pad
    top = y - tag_h if y - tag_h >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + tag_h), color, cv2.FILLED)
    cv2.putText(image, text, (x + pad, top + pad + th), FONT, font_scale, text_bgr(color), text_thickness,
                cv2.LINE_AA)


def probability_chart(scores: dict, height: int = 240):
    """A plotly horizontal bar chart of the seven probabilities, EMOTIONS order from top to bottom."""
    import plotly.graph_objects as go

    values = [float(scores[e]) for e in EMOTIONS]
    bars = go.Bar(x=values, y=list(EMOTIONS), orientation="h",
                  marker_color=[EMOTION_COLORS[e] for e in EMOTIONS],
                  text=[f"{v:.0%}" for v in values], textposition="auto",
                  hovertemplate="%{y}: %{x:.1%}<extra></extra>")
    fig = go.Figure(bars)
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=10, b=0), showlegend=False,
                      xaxis=dict(range=[0, 1], tickformat=".0%", title=None),
                      yaxis=dict(autorange="reversed", title=None))
    return fig


@dataclass
class ImageResult:
    """One uploaded picture, analysed: the annotated (downscaled) picture, its faces and their 48x48
    crops (for Grad-CAM), or the error that stopped it."""
    name: str
    faces: list = field(default_factory=list)  # FaceResult, boxes in the original picture's pixels
    crops: list = field(default_factory=list)  # 48x48 uint8 grey, one per face
    annotated: np.ndarray = None  # BGR, at most DISPLAY_MAX_SIDE per side
    size: tuple = None  # (width, height) of the original picture
    seconds: float = 0.0  # decode + detect + classify + draw
    level: float = None  # how bright its faces are, 0-255 (images.faces_level): images.dark_note says when too dark
    error: str = None


def analyse(recognizer, name: str, data, max_side: int = DISPLAY_MAX_SIDE, tta="none") -> ImageResult:
    """Decode `data` (bytes or anything load_image takes), find and classify its faces (with `tta`, see
    EmotionRecognizer.classify), draw them (numbered as `predict` orders them, row by row, when there are several).

    A large JPEG is decoded at a fraction of its size that still has every pixel the detector and the drawing
    read (`images.load_image_reduced`); the boxes are given in the whole picture's pixels all the same.
    A picture that cannot be read gives an ImageResult whose `error` says why; it never raises
    FerError, so one bad file does not stop the others.
    """
    start = time.perf_counter()
    try:
        bgr, size = load_image_reduced(data, max(max_side, recognizer.detector.max_side))
    except FerError as e:
        log.info("%s: %s", name, e)
        return ImageResult(name, error=str(e))
    faces = recognizer.predict(bgr, tta=tta)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if faces else None
    small, scale = downscale(bgr, max_side)
    annotated = draw_faces(small, faces, scale, numbered=len(faces) > 1)  # numbers match the page's "Face N"
    crops = [crop_face(gray, f.box) for f in faces]
    return ImageResult(name, faces=[f.scaled(size[0] / bgr.shape[1], size) for f in faces], crops=crops,
                       annotated=annotated, size=size, level=faces_level(small, crops),
                       seconds=time.perf_counter() - start)
