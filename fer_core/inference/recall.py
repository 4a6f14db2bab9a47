"""How often a page's detection path finds a real face of the sizes it promises (issue 21: detect on the
smallest input that still finds them).

`python -m fer_core recall --photos wild_photos.zip` takes val photos of a photo set in which YuNet, run as
the upload page runs it on the photo itself, finds a face. Each photo is scaled so that this face is a
given share of a frame's height, pasted at a random place into the frame, and the frame goes through a page's
detection path:
- the webcam's: `LiveProcessor.detect_faces`, on a copy at most `side` pixels wide (the app uses
  live.DETECT_MAX_SIDE), keeping faces from live.MIN_FACE of the frame's height;
- the upload page's: the frame saved as a JPEG and read by `annotate.analyse`, as an upload is (decoded at half
  size, YuNet sees faces.YUNET_MAX_SIDE px of it).
A face counts as found when one box overlaps the pasted face's box with an IoU of at least MATCH_IOU. The rest
of the frame is a mosaic of other val photos turned upside down: real texture, and no upright face that could
be found in place of the pasted one. Frames are made from a fixed seed, so every side and detector sees the
same frames.
"""
import cv2
import numpy as np

from ..data.faces import yunet_model_path
from ..data.photos import PhotoSet
from ..errors import FerError
from .annotate import analyse
from .live import MIN_FACE, LiveProcessor, iou
from .recognizer import EmotionRecognizer

MATCH_IOU = 0.4  # a found box must overlap the pasted face this much
PHOTOS = 300  # val photos used (the first this many in which the detector finds a face)
SEED = 0
WEBCAM = {"frame": (480, 640), "shares": (0.17, 0.2, 0.3), "sides": (160, 240, 320, 480, 640)}  # the page keeps
# faces from 15%: one right at that edge is kept about half the time, as its box comes out a little smaller or larger
UPLOAD = {"frame": (3000, 4000), "shares": (0.05, 0.1, 0.2)}  # a 12-MP photo; the page asks for faces from 5%
PHOTO_QUALITY = 92  # the upload frames go through the page's path as JPEGs of this quality, as phones save them
TILE = 96  # mosaic tile, pixels


def real_faces(photos: PhotoSet, detector="yunet", n=PHOTOS) -> list:
    """[(grey photo, face box)] for the first `n` val photos in which `detector` finds a face (the largest)."""
    rec, out = EmotionRecognizer(detector=detector), []
    for _, image in photos.photos("val", cv2.IMREAD_GRAYSCALE):
        boxes = rec.detect(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)) if image is not None else []
        if boxes:
            out.append((image, max(boxes, key=lambda b: b[2] * b[3])))
        if len(out) == n:
            break
    return out


def mosaic(faces, shape, rng) -> np.ndarray:
    """A grey frame of `shape` tiled with the photos upside down."""
    h, w = shape
    rows, cols = -(-h // TILE), -(-w // TILE)
    tiles = [cv2.resize(faces[i][0], (TILE, TILE))[::-1] for i in rng.integers(0, len(faces), rows * cols)]
    grid = np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(rows)])
    return grid[:h, :w]


def paste(frame, photo, box, share, rng):
    """`frame` with `photo` scaled so that its face `box` is `share` of the frame's height, at a random place
    where the whole face fits; returns (frame as BGR, the face's box in the frame)."""
    h, w = frame.shape
    scale = share * h / box[3]
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    fx, fy, fw, fh = (round(v * scale) for v in box)
    x0 = int(rng.integers(0, w - fw + 1)) - fx  # where the photo's corner lands
    y0 = int(rng.integers(0, h - fh + 1)) - fy
    out = frame.copy()
    ys, xs = slice(max(0, y0), min(h, y0 + big.shape[0])), slice(max(0, x0), min(w, x0 + big.shape[1]))
    out[ys, xs] = big[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR), (x0 + fx, y0 + fy, fw, fh)


def frames(faces, frame_shape, share, seed=SEED):
    """(BGR frame, pasted face box), one per face, made as they are read (a 12-MP frame is 36 MB) and the same
    for every call with the same arguments."""
    rng = np.random.default_rng([seed, round(share * 1000), *frame_shape])
    return (paste(mosaic(faces, frame_shape, rng), photo, box, share, rng) for photo, box in faces)


def recall(detect, cases) -> float:
    """The share of `cases` (frame, box) in which `detect(frame)` returns a box matching the pasted face."""
    return float(np.mean([any(iou(b, box) >= MATCH_IOU for b in detect(frame)) for frame, box in cases]))


def photo_boxes(rec, frame) -> list:
    """The upload page's boxes for `frame` sent as a phone's JPEG: decoded, detected and scaled back as
    `annotate.analyse` does it (a 12-MP JPEG is decoded at half size)."""
    data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, PHOTO_QUALITY])[1].tobytes()
    return [f.box for f in analyse(rec, "photo.jpg", data).faces]


def run(photos_path, detectors=("yunet", "haar"), n=PHOTOS) -> dict:
    """{detector: {"faces": n, "min_face": the webcam's, "webcam": [{"share", "side", "recall"}],
    "upload": [{"share", "recall"}]}}: `share` is the face's height over the frame's, `side` the detection copy's."""
    if n < 1:
        raise FerError(f"the recall check needs at least one face, got {n}")
    photos = PhotoSet(photos_path)  # a DatasetError naming the path when it is not a photo set
    if yunet_model_path() is None:
        raise FerError("the recall check places faces where YuNet finds them: set FER_YUNET_MODEL to its .onnx file")
    faces, result = real_faces(photos, "yunet", n), {}  # the same faces for every detector
    if not faces:
        raise FerError(f"YuNet found no face in the val photos of {photos_path}")
    for name in detectors:
        rec = EmotionRecognizer(detector=name)
        webcam = []
        for share in WEBCAM["shares"]:
            cases = list(frames(faces, WEBCAM["frame"], share))  # 300 frames of 640x480: 0.3 GB, kept for each side
            webcam += [{"share": share, "side": side,
                        "recall": recall(LiveProcessor(rec, detect_max_side=side).detect_faces, cases)}
                       for side in WEBCAM["sides"]]
        upload = [{"share": share,
                   "recall": recall(lambda frame: photo_boxes(rec, frame), frames(faces, UPLOAD["frame"], share))}
                  for share in UPLOAD["shares"]]
        result[name] = {"faces": len(faces), "min_face": MIN_FACE, "webcam": webcam, "upload": upload}
    return result


def format_result(result: dict) -> str:
    lines = []
    for name, r in result.items():
        sides = sorted({row["side"] for row in r["webcam"]})
        lines.append(f"{name}: {r['faces']} real faces; webcam {WEBCAM['frame'][1]}x{WEBCAM['frame'][0]}, detection "
                     f"on a copy at most SIDE px wide (faces from {r['min_face']:.0%} of the height)")
        lines.append("  face height / SIDE  " + "".join(f"{s:>7}" for s in sides))
        for share in sorted({row["share"] for row in r["webcam"]}):
            found = {row["side"]: row["recall"] for row in r["webcam"] if row["share"] == share}
            lines.append(f"  {share:>17.0%}  " + "".join(f"{found[s]:>7.1%}" for s in sides))
        lines.append(f"  upload, {UPLOAD['frame'][1]}x{UPLOAD['frame'][0]} photo: "
                     + ", ".join(f"faces {row['share']:.0%} of the height {row['recall']:.1%}" for row in r["upload"]))
    return "\n".join(lines)
