"""fer_core.inference.annotate: colours, labels, downscaling, boxes drawn on a copy, the probability chart, and
`analyse` (the upload page's per-file path) on real photos, a non-image and a picture without a face."""
import base64

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from fer_core import EMOTIONS, EmotionRecognizer
from fer_core.data.images import downscale
from fer_core.inference.annotate import (DISPLAY_MAX_SIDE, EMOTION_COLORS, analyse, draw_faces, emotion_bgr,
                                         face_table, faces_tally, label_text, line_style, probability_chart, text_bgr)
from fer_core.data.preprocess import FACE_SIZE, crop_face
from fer_core.inference.recognizer import FaceResult

try:
    from helpers_images import astronaut_bgr, astronaut_rgb, encode
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr, astronaut_rgb, encode


@pytest.fixture(scope="module")
def rec():
    """The shipped mini_xception with the Haar detector (bundled with OpenCV, so no download)."""
    return EmotionRecognizer("mini_xception", detector="haar")


def face(label="happy", box=(100, 120, 200, 200), confidence=0.93):
    rest = (1 - confidence) / (len(EMOTIONS) - 1)
    scores = {e: confidence if e == label else rest for e in EMOTIONS}
    return FaceResult(box, label, confidence, scores)


def grey_canvas(h, w):
    return np.full((h, w, 3), 40, np.uint8)


def test_one_distinct_colour_per_emotion():
    assert list(EMOTION_COLORS) == list(EMOTIONS)
    bgrs = [emotion_bgr(e) for e in EMOTIONS]
    assert len(set(bgrs)) == len(EMOTIONS)
    assert emotion_bgr("angry") == (0x28, 0x27, 0xD6)  # "#d62728" reversed into B, G, R
    assert text_bgr(emotion_bgr("happy")) == (0, 0, 0)  # dark text on yellow
    assert text_bgr(emotion_bgr("sad")) == (255, 255, 255)  # light text on blue


def test_label_text():
    assert label_text(face("happy", confidence=0.934)) == "happy 93%"
    assert label_text(face("sad", confidence=0.5)) == "sad 50%"
    assert label_text(face("sad", confidence=0.5), 3) == "3: sad 50%"


def test_faces_tally_counts_the_emotions_most_common_first():
    faces = [face(e) for e in ("sad", "happy", "neutral", "happy", "angry", "happy", "neutral")]
    assert faces_tally(faces) == "7 faces: 3 happy, 2 neutral, 1 angry, 1 sad"  # ties in EMOTIONS order
    assert faces_tally(faces[:2]) == "2 faces: 1 happy, 1 sad"
    assert faces_tally(faces[:1]) == faces_tally([]) == ""


def test_face_table_has_a_row_per_face_with_its_crop_and_probabilities():
    crops = [np.full((48, 48), 30, np.uint8), np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))]
    rows = face_table([face("sad", confidence=0.6), face("happy", confidence=0.9)], crops)
    assert [(r["face"], r["emotion"], r["confidence"]) for r in rows] == [(1, "sad", 0.6), (2, "happy", 0.9)]
    assert rows[1]["probabilities"] == [face("happy", confidence=0.9).scores[e] for e in EMOTIONS]
    for row, crop in zip(rows, crops):
        png = base64.b64decode(row["crop"].removeprefix("data:image/png;base64,"))
        assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE), crop)
    assert face_table([], []) == []


def test_line_style_grows_with_the_picture():
    small, big = line_style((480, 640, 3)), line_style((3000, 4000, 3))
    assert small[0] >= 1 and big[0] > small[0]
    assert big[1] > small[1] >= 0.35


def test_downscale_shrinks_large_pictures_and_keeps_their_look():
    big = cv2.resize(astronaut_bgr(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    small, scale = downscale(big, DISPLAY_MAX_SIDE)
    assert small.shape == (960, 1280, 3) and small.dtype == np.uint8
    assert scale == pytest.approx(1280 / 4000)
    reference = cv2.resize(big, (1280, 960), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - reference).mean() < 2.0  # same picture, not an aliased one


def test_downscale_leaves_small_pictures_alone():
    photo = astronaut_bgr()
    small, scale = downscale(photo, max_side=512)
    assert small is photo and scale == 1.0


def tag_rows(out, x, top, bottom, color):
    """Rows between `top` and `bottom` where the label's tag (starting at column x) shows its colour."""
    strip = (out[top:bottom, x:x + 60] == color).all(axis=2)
    return top + np.flatnonzero(strip.any(axis=1)), strip


def test_draw_faces_draws_on_a_copy_in_the_emotions_colour():
    canvas = grey_canvas(480, 640)
    out = draw_faces(canvas, [face("happy", (100, 150, 200, 200)), face("sad", (400, 150, 150, 150))])
    assert (canvas == 40).all()  # the input is untouched
    assert out.shape == canvas.shape
    assert tuple(out[250, 100]) == emotion_bgr("happy")  # middle of the first box's left edge
    assert tuple(out[225, 400]) == emotion_bgr("sad")
    assert tuple(out[250, 200]) == (40, 40, 40)  # inside the box: not painted
    rows, strip = tag_rows(out, 100, 0, 150, emotion_bgr("happy"))  # the tag sits just above the box
    assert rows.max() == 149 and 12 <= len(rows) <= 40 and np.array_equal(rows, np.arange(rows.min(), 150))
    assert strip[rows.min():].mean() > 0.5
    text = out[rows.min():150, 100:160]
    assert (text.max(axis=2) < 60).any()  # dark text on the yellow tag


def test_numbered_labels_start_with_each_faces_number():
    faces = [face("happy", (100, 150, 200, 200)), face("happy", (400, 150, 150, 150))]
    plain, numbered = draw_faces(grey_canvas(480, 640), faces), draw_faces(grey_canvas(480, 640), faces, numbered=True)
    thickness, font_scale = line_style((480, 640))

    def tag_width(out, x):  # the tag's bottom padding, just above the box's top line, is its colour alone
        return int((out[148, x:] == emotion_bgr("happy")).all(axis=1).argmin())

    def text_width(text):
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, max(1, thickness // 2))[0][0]
    for x, number in ((100, 1), (400, 2)):
        grown = tag_width(numbered, x) - tag_width(plain, x)
        assert grown == text_width(f"{number}: happy 93%") - text_width("happy 93%") > 10
    assert np.array_equal(plain[150:], numbered[150:])  # the boxes themselves are the same


def test_a_crowds_labels_are_no_wider_than_their_faces_and_do_not_cover_each_other():
    """Six 100-px faces 10 px apart on a 1280-px picture: at the picture's own font size each label ("3: happy
    93%") would be about 220 px wide, over two neighbours."""
    faces = [face("happy" if i % 2 else "sad", (100 + 110 * i, 300, 100, 100)) for i in range(6)]
    out = draw_faces(grey_canvas(960, 1280), faces, numbered=True)
    thickness, font_scale = line_style(out.shape)
    assert thickness == 3 and font_scale > 0.9
    for f in faces:  # row 298: the tag's padding just above the box's top line (rows 299-301)
        width = int((out[298, f.box[0]:] == emotion_bgr(f.label)).all(axis=1).argmin())
        assert 60 <= width <= 100 + thickness  # as wide as its box's outline at most: clear of the next one
    lone = draw_faces(grey_canvas(960, 1280), faces[:1], numbered=False)  # one face keeps the picture's font
    assert (lone[298, 100:] == emotion_bgr("sad")).all(axis=1).argmin() > 120  # "sad 93%", wider than its box


def test_label_goes_inside_the_box_at_the_top_edge():
    out = draw_faces(grey_canvas(300, 300), [face("sad", (50, 0, 150, 150))])
    assert (out[12:17, 50:100] == emotion_bgr("sad")).all()  # the tag's lower part, inside the box
    assert (out[2:12, 52:100].min(axis=2) > 200).any()  # white text on the blue tag
    assert tuple(out[100, 100]) == (40, 40, 40)  # the rest of the box is left alone


def test_lines_are_thicker_on_bigger_pictures():
    def stroke(size):
        side = size // 4
        out = draw_faces(grey_canvas(size, size), [face("angry", (side, side, 2 * side, 2 * side))])
        return int((out[size // 2] == emotion_bgr("angry")).all(axis=1).sum())
    assert stroke(1600) > stroke(400) > 0


def test_draw_faces_scales_the_boxes():
    out = draw_faces(grey_canvas(300, 400), [face("fear", (200, 200, 400, 300))], scale=0.5)
    assert tuple(out[175, 100]) == emotion_bgr("fear")  # box (100, 100, 200, 150) after scaling
    assert tuple(out[175, 300]) == emotion_bgr("fear")


def test_probability_chart_has_the_seven_probabilities_in_order():
    scores = dict(zip(EMOTIONS, (0.01, 0.02, 0.03, 0.80, 0.05, 0.06, 0.03)))
    fig = probability_chart(scores)
    bar = fig.data[0]
    assert bar.type == "bar" and bar.orientation == "h"
    assert list(bar.y) == list(EMOTIONS)
    assert list(bar.x) == [scores[e] for e in EMOTIONS]
    assert list(bar.marker.color) == [EMOTION_COLORS[e] for e in EMOTIONS]
    assert list(bar.text) == ["1%", "2%", "3%", "80%", "5%", "6%", "3%"]
    assert tuple(fig.layout.xaxis.range) == (0, 1)


def test_analyse_a_smiling_face(rec):
    result = analyse(rec, "astronaut.png", encode(Image.fromarray(astronaut_rgb()), "PNG"))
    assert result.error is None and result.size == (512, 512)
    assert len(result.faces) == 1 and result.faces[0].label == "happy" and result.faces[0].confidence > 0.8
    assert result.faces[0].box == rec.predict(astronaut_bgr())[0].box
    crop, = result.crops
    assert crop.shape == (FACE_SIZE, FACE_SIZE) and crop.dtype == np.uint8
    assert np.array_equal(crop, crop_face(astronaut_bgr(), result.faces[0].box))
    assert result.annotated.shape == (512, 512, 3)
    x, y, w, h = result.faces[0].box
    assert tuple(result.annotated[y + h // 2, x]) == emotion_bgr("happy")
    assert result.seconds > 0


def test_analyse_numbers_the_faces_of_a_picture_with_several(rec):
    """Two astronauts side by side: each box's label starts with its face's number, as the page lists them."""
    pair = np.concatenate([astronaut_bgr(), astronaut_bgr()[:, ::-1]], axis=1)
    result = analyse(rec, "pair.png", encode(Image.fromarray(pair[:, :, ::-1]), "PNG"))
    assert len(result.faces) == 2 and result.faces[0].box[0] < 512 < result.faces[1].box[0]
    assert np.array_equal(result.annotated, draw_faces(pair, result.faces, numbered=True))
    assert not np.array_equal(result.annotated, draw_faces(pair, result.faces))
    one = analyse(rec, "astronaut.png", encode(Image.fromarray(astronaut_rgb()), "PNG"))
    assert np.array_equal(one.annotated, draw_faces(astronaut_bgr(), one.faces))  # a lone face: no number


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP", "GIF", "AVIF"])
def test_analyse_every_upload_format(rec, fmt):
    img = Image.fromarray(astronaut_rgb())
    result = analyse(rec, f"astronaut.{fmt.lower()}", encode(img.convert("P") if fmt == "GIF" else img, fmt))
    assert result.error is None and [f.label for f in result.faces] == ["happy"]


def test_analyse_a_12_megapixel_photo(rec):
    """Boxes stay in the original's pixels; the picture to display is downscaled."""
    big = cv2.resize(astronaut_rgb(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    result = analyse(rec, "big.jpg", encode(Image.fromarray(big), "JPEG", quality=92))
    assert result.size == (4000, 3000) and max(result.annotated.shape[:2]) == DISPLAY_MAX_SIDE
    f, = result.faces
    assert f.label == "happy"
    x, y, w, h = f.box
    assert 1000 < x < 2500 and 200 < y < 1200 and w > 400  # astronaut's face, scaled by 7.8 x 5.9
    s = DISPLAY_MAX_SIDE / 4000
    assert tuple(result.annotated[round((y + h / 2) * s), round(x * s)]) == emotion_bgr("happy")


def test_a_large_jpeg_is_read_reduced_with_the_same_faces_as_the_whole_picture(rec, monkeypatch):
    """A 12-MP JPEG is decoded at half size (what the detector and the drawing read is all there): the box, in the
    whole picture's pixels, and the emotion match what the whole decode gives; so does a photo turned by EXIF."""
    from fer_core.data import images
    big = cv2.resize(astronaut_rgb(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    exif = Image.Exif()
    exif[0x0112] = 8  # turned: the oriented picture is 3000 wide and 4000 high
    for picture, extra in ((big, {}), (np.ascontiguousarray(np.rot90(big, k=-1)), {"exif": exif.tobytes()})):
        jpeg = encode(Image.fromarray(picture), "JPEG", quality=92, **extra)
        whole = rec.predict(images.load_image(jpeg), tta="flip")
        flags = []
        real = images.cv2.imdecode
        monkeypatch.setattr(images.cv2, "imdecode", lambda buf, flag: flags.append(flag) or real(buf, flag))
        result = analyse(rec, "big.jpg", jpeg, tta="flip")
        monkeypatch.undo()
        assert flags == [cv2.IMREAD_REDUCED_COLOR_2] and result.size == (4000, 3000)
        f, = result.faces
        assert f.label == whole[0].label == "happy" and abs(f.confidence - whole[0].confidence) < 0.05
        assert np.abs(np.subtract(f.box, whole[0].box)).max() <= 12  # a few pixels of the half-size picture
        assert result.crops[0].shape == (FACE_SIZE, FACE_SIZE)


def test_analyse_reports_a_file_that_is_not_an_image(rec):
    result = analyse(rec, "notes.txt", b"these are my notes, not a picture")
    assert result.faces == [] and result.annotated is None
    assert "not an image" in result.error


def test_analyse_reports_a_truncated_photo(rec):
    result = analyse(rec, "cut.jpg", encode(Image.fromarray(astronaut_rgb()), "JPEG")[:5000])
    assert result.faces == [] and "damaged or not a complete image" in result.error


def test_analyse_a_picture_without_a_face(rec):
    result = analyse(rec, "coffee.jpg", encode(Image.fromarray(data.coffee()), "JPEG"))
    assert result.error is None and result.faces == [] and result.crops == []
    assert result.annotated.shape == (400, 600, 3)
