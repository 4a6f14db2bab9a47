"""fer_core.app.downloads: one row per face with the box, label, confidence and seven probabilities; the CSV and
JSON text read back to the same values."""
import csv
import io
import json

import pytest
import torch
from PIL import Image

from fer_core import EMOTIONS, EmotionRecognizer
from fer_core.inference.annotate import ImageResult, analyse
from fer_core.app.downloads import COLUMNS, face_rows, results_rows, to_csv, to_json
from fer_core.inference.recognizer import FaceResult

try:
    from helpers_images import astronaut_rgb, encode
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_rgb, encode

SCORES = dict(zip(EMOTIONS, (0.012345, 0.001, 0.02, 0.9, 0.03, 0.01666, 0.02)))
HAPPY = FaceResult((10, 20, 30, 40), "happy", 0.9, SCORES)
SAD = FaceResult((100, 5, 50, 60), "sad", 0.61234567, {**{e: 0.065 for e in EMOTIONS}, "sad": 0.61234567})


def test_columns():
    assert COLUMNS == ("file", "face", "x", "y", "w", "h", "label", "confidence", *EMOTIONS)


def test_face_rows():
    rows = face_rows("group.jpg", [HAPPY, SAD])
    assert rows[0] == {"file": "group.jpg", "face": 1, "x": 10, "y": 20, "w": 30, "h": 40, "label": "happy",
                       "confidence": 0.9, "angry": 0.0123, "disgust": 0.001, "fear": 0.02, "happy": 0.9,
                       "sad": 0.03, "surprise": 0.0167, "neutral": 0.02}
    assert rows[1]["face"] == 2 and rows[1]["label"] == "sad" and rows[1]["confidence"] == 0.6123
    assert (rows[1]["x"], rows[1]["y"], rows[1]["w"], rows[1]["h"]) == (100, 5, 50, 60)
    assert face_rows("empty.png", []) == []


def test_results_rows_from_pairs_and_image_results():
    pairs = results_rows([("a.png", [HAPPY]), ("b.png", []), ("c.png", [SAD, HAPPY])])
    assert [(r["file"], r["face"], r["label"]) for r in pairs] == [
        ("a.png", 1, "happy"), ("c.png", 1, "sad"), ("c.png", 2, "happy")]
    images = results_rows([ImageResult("a.png", faces=[HAPPY]), ImageResult("bad.png", error="not an image")])
    assert images == face_rows("a.png", [HAPPY])


def test_csv_reads_back():
    text = to_csv(face_rows("a,b.png", [HAPPY, SAD]))  # a comma in the name is quoted
    lines = text.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == '"a,b.png",1,10,20,30,40,happy,0.9,0.0123,0.001,0.02,0.9,0.03,0.0167,0.02'
    back = list(csv.DictReader(io.StringIO(text)))
    assert len(back) == 2 and back[1]["label"] == "sad" and float(back[1]["sad"]) == 0.6123
    assert to_csv([]) == ",".join(COLUMNS) + "\n"


def test_json_reads_back():
    rows = face_rows("a.png", [HAPPY, SAD])
    back = json.loads(to_json(rows))
    assert back == rows
    assert list(back[0]) == list(COLUMNS)
    assert json.loads(to_json([])) == []


def test_rows_of_a_real_photo():
    torch.set_num_threads(1)
    rec = EmotionRecognizer("mini_xception", detector="haar")
    result = analyse(rec, "astronaut.png", encode(Image.fromarray(astronaut_rgb()), "PNG"))
    row, = results_rows([result])
    assert row["file"] == "astronaut.png" and row["face"] == 1 and row["label"] == "happy"
    assert (row["x"], row["y"], row["w"], row["h"]) == result.faces[0].box
    assert row["confidence"] == row["happy"] == pytest.approx(result.faces[0].confidence, abs=5e-5)
    assert sum(row[e] for e in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert json.loads(to_json([row])) == [row]
