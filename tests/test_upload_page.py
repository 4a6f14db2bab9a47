"""The "Upload & classify" page, driven through the app's router with Streamlit's AppTest: files go in
through AppTest's own file_uploader / camera_input support (Streamlit >= 1.6x stages the bytes the way a
browser upload would), and the tests read what the page shows."""
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from streamlit.testing.v1 import AppTest

from fer_core import EMOTIONS, EmotionRecognizer
from fer_core.app.examples import EXAMPLE, EXAMPLES_DIR, example_photo
from fer_core.data.preprocess import crop_face

try:
    from helpers_images import astronaut_bgr, astronaut_rgb, encode, montage
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr, astronaut_rgb, encode, montage

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 180  # the first run loads the model and the detector


@pytest.fixture
def app():
    return AppTest.from_file(APP, default_timeout=TIMEOUT).run()


@pytest.fixture(scope="module")
def astronaut_png():
    return encode(Image.fromarray(astronaut_rgb()), "PNG")


@pytest.fixture(scope="module")
def astronaut_jpeg():
    return encode(Image.fromarray(astronaut_rgb()), "JPEG", quality=92)


def upload(app, *files):
    app.file_uploader(key="upload_files").set_value(list(files))
    return app.run()


def values(elements):
    return [e.value for e in elements]


def chart_bars(app):
    """(emotions, probabilities) of every plotly chart on the page, in page order."""
    specs = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    return [(spec["data"][0]["y"], spec["data"][0]["x"]) for spec in specs]


def test_page_renders(app):
    assert not app.exception
    assert values(app.title) == ["Upload & classify"]
    uploader = app.file_uploader(key="upload_files")
    assert uploader.accept_multiple_files
    assert {".jpg", ".png", ".webp", ".bmp", ".gif", ".heic", ".heif", ".avif"} <= set(uploader.allowed_type)
    assert len(app.camera_input) == 0  # the browser asks for the camera only when the user wants it
    assert not app.error and not app.get("plotly_chart")


def test_a_smiling_face_is_happy(app, astronaut_png):
    upload(app, ("astronaut.png", astronaut_png, "image/png"))
    assert not app.exception and not app.error
    assert values(app.subheader) == ["astronaut.png"]
    face_line, = [m for m in values(app.markdown) if m.startswith("**Face")]
    assert face_line.startswith("**Face 1: happy ")
    assert not [m for m in values(app.markdown) if "faces:" in m]  # no tally for a lone face
    (emotions, probs), = chart_bars(app)
    assert emotions == list(EMOTIONS)
    assert emotions[int(np.argmax(probs))] == "happy" and max(probs) > 0.8
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert any("512x512 px" in c for image in app.image for c in image.captions)
    assert [b.label for b in app.download_button] == ["Download CSV", "Download JSON"]


def test_an_iphone_photo_in_heic_is_read(app):
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(astronaut_rgb())).save(buf, quality=90)
    upload(app, ("IMG_0001.HEIC", buf.getvalue(), "image/heic"))
    assert not app.exception and not app.error
    face_line, = [m for m in values(app.markdown) if m.startswith("**Face")]
    assert face_line.startswith("**Face 1: happy ")
    assert any("512x512 px" in c for image in app.image for c in image.captions)


def test_many_files_and_one_bad_one(app, astronaut_jpeg):
    upload(app, ("notes.png", b"shopping list: milk, eggs", "image/png"),
           ("astronaut.jpg", astronaut_jpeg, "image/jpeg"),
           ("coffee.jpg", encode(Image.fromarray(data.coffee()), "JPEG"), "image/jpeg"))
    assert not app.exception
    assert values(app.subheader) == ["notes.png", "astronaut.jpg", "coffee.jpg"]
    error, = values(app.error)
    assert "notes.png" in error and "not an image" in error
    info, = values(app.info)
    assert "coffee.jpg" in info and "no face found" in info
    (emotions, probs), = chart_bars(app)  # the bad file did not stop the photo after it
    assert emotions[int(np.argmax(probs))] == "happy"


def test_a_group_photo_gets_a_row_per_face(app):
    group = montage(astronaut_bgr(), 1, 3)[:, :, ::-1]  # three astronauts side by side, as RGB
    upload(app, ("group.png", encode(Image.fromarray(group), "PNG"), "image/png"))
    assert not app.exception and not app.error
    faces = [m for m in values(app.markdown) if m.startswith("**Face")]
    assert [f.split(":")[0] for f in faces] == ["**Face 1", "**Face 2", "**Face 3"]
    assert all(": happy " in f for f in faces)
    assert len(chart_bars(app)) == 3
    assert "3 faces: 3 happy" in values(app.markdown)  # the tally above the faces
    assert not app.dataframe and not app.expander  # a few faces: a chart each, no table


def test_a_big_group_is_tabled_first_with_each_chart_on_request(app):
    group = montage(astronaut_bgr(), 2, 4, vary=False)[:, :, ::-1]  # eight astronauts in two rows
    upload(app, ("group.png", encode(Image.fromarray(group), "PNG"), "image/png"))
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table["face"]) == list(range(1, 9)) and set(table["emotion"]) == {"happy"}
    assert all(p[EMOTIONS.index("happy")] == c for p, c in zip(table["probabilities"], table["confidence"]))
    assert all(url.startswith("data:image/png;base64,") for url in table["crop"])
    expander, = app.expander
    assert expander.label == "A chart for each face"
    faces = [m.value for m in expander.markdown if m.value.startswith("**Face")]
    assert len(faces) == 8 and len(chart_bars(app)) == 8 and faces[7].startswith("**Face 8: happy ")
    app.toggle(key="show_gradcam").set_value(True).run()
    assert not app.exception
    assert app.expander[0].label == "A chart for each face and its heat map"
    assert [c for image in app.expander[0].image for c in image.captions] == ["Grad-CAM for happy"] * 8


def test_the_same_photo_twice(app, astronaut_png):
    """Identical faces give identical charts: the page keys them, so Streamlit does not refuse the second."""
    upload(app, ("astronaut.png", astronaut_png, "image/png"), ("astronaut.png", astronaut_png, "image/png"))
    assert not app.exception
    first, second = chart_bars(app)
    assert first == second and first[0][int(np.argmax(first[1]))] == "happy"


def test_a_picture_without_a_face(app):
    upload(app, ("rocket.png", encode(Image.fromarray(data.rocket()), "PNG"), "image/png"))
    assert not app.exception and not app.error
    info, = values(app.info)
    assert "rocket.png" in info and "no face found" in info
    assert not app.get("plotly_chart") and not app.download_button


def dimmed(rgb, gamma=3.0, contrast=0.35):
    """`rgb` as a dim room photographs it."""
    return (255 * (rgb / 255.0) ** gamma * contrast).round().astype(np.uint8)


def test_a_dark_photo_is_read_and_said_to_be_dark(app, astronaut_png):
    upload(app, ("dim.png", encode(Image.fromarray(dimmed(astronaut_rgb())), "PNG"), "image/png"),
           ("astronaut.png", astronaut_png, "image/png"))
    assert not app.exception and not app.error
    faces = [m for m in values(app.markdown) if m.startswith("**Face")]
    assert len(faces) == 2  # found in the dark photo too
    (box,) = EmotionRecognizer().detect(dimmed(astronaut_rgb())[:, :, ::-1])
    level = crop_face(dimmed(astronaut_rgb())[:, :, ::-1], box).mean()  # the face's level, not the picture's
    notes = [c for c in values(app.caption) if c.startswith("The picture is dark")]
    assert level < 35 and notes == [f"The picture is dark (mean level {level:.0f} of 255): faces are found less "
                                     "often and their emotions read less surely; more light on the face helps."]


def test_a_lit_face_in_a_dark_photo_is_not_called_dark(app):
    stage = np.zeros((1000, 1000, 3), np.uint8)  # the astronaut lit in the middle of a black stage
    stage[244:756, 244:756] = astronaut_rgb()
    upload(app, ("stage.png", encode(Image.fromarray(stage), "PNG"), "image/png"))
    assert not app.exception and not app.error and stage.mean() < 35
    assert [m for m in values(app.markdown) if m.startswith("**Face")]
    assert not [c for c in values(app.caption) if "dark" in c]


def test_a_dark_photo_without_a_face_says_so_before_the_usual_hint(app):
    upload(app, ("night.png", encode(Image.fromarray(dimmed(data.rocket(), 3.0, 0.3)), "PNG"), "image/png"))
    assert not app.exception and not app.error
    info, = values(app.info)
    assert info.startswith("**night.png**: no face found. The picture is dark (mean level ")
    assert info.endswith("more light on the face helps. Faces need to be roughly frontal and at least about 5% of "
                         "the picture's shorter side; another face detector in the sidebar may find them.")


def test_grad_cam_toggle(app, astronaut_png):
    upload(app, ("astronaut.png", astronaut_png, "image/png"))
    captions = [c for image in app.image for c in image.captions]
    assert "the face as the model sees it" in captions and not any("Grad-CAM" in c for c in captions)
    app.toggle(key="show_gradcam").set_value(True).run()
    assert not app.exception
    captions = [c for image in app.image for c in image.captions]
    assert "Grad-CAM for happy" in captions


def test_mirror_tta_toggle_matches_the_recognizer(app, astronaut_png):
    """On by default: the chart is the recognizer's flip-TTA output; off: its plain output."""
    rec = EmotionRecognizer()  # the page's choice: the default model, the "auto" detector
    expected = {tta: [rec.predict(astronaut_bgr(), tta=tta)[0].scores[e] for e in EMOTIONS] for tta in ("flip", "none")}
    assert not np.allclose(expected["flip"], expected["none"], atol=1e-4)
    upload(app, ("astronaut.png", astronaut_png, "image/png"))
    assert app.toggle(key="flip_tta").value is True
    (_, probs), = chart_bars(app)
    np.testing.assert_allclose(probs, expected["flip"], atol=1e-5)
    app.toggle(key="flip_tta").set_value(False).run()
    assert not app.exception
    (_, probs), = chart_bars(app)
    np.testing.assert_allclose(probs, expected["none"], atol=1e-5)


def test_try_an_example_classifies_the_bundled_photo_as_an_upload(app):
    """The button reads assets/examples/astronaut.jpg through the upload path: the same name, result and chart
    as uploading that file; it stays through a toggle's rerun, and the visitor's own photo replaces it."""
    assert [b.label for b in app.button] == ["Try an example"]
    app.button(key="try_example").click().run()
    assert not app.exception and not app.error
    assert values(app.subheader) == ["astronaut.jpg"]
    face_line, = [m for m in values(app.markdown) if m.startswith("**Face")]
    assert face_line.startswith("**Face 1: happy ")
    (emotions, example_probs), = chart_bars(app)
    assert emotions[int(np.argmax(example_probs))] == "happy" and max(example_probs) > 0.8
    assert [b.label for b in app.download_button] == ["Download CSV", "Download JSON"]
    app.toggle(key="show_gradcam").set_value(True).run()
    assert not app.exception and values(app.subheader) == ["astronaut.jpg"]
    assert "Grad-CAM for happy" in [c for image in app.image for c in image.captions]
    name, data_ = example_photo()
    upload(app, (name, data_, "image/jpeg"))
    assert not app.exception and values(app.subheader) == ["astronaut.jpg"]  # the upload, not the example too
    assert not app.button  # no example offered beside the visitor's photos
    (_, uploaded_probs), = chart_bars(app)
    assert uploaded_probs == example_probs


def test_the_example_photo_is_small_and_says_where_it_comes_from():
    name, data_ = example_photo()
    assert name == EXAMPLE and len(data_) < 200_000
    assert Image.open(io.BytesIO(data_)).format == "JPEG"
    source = (EXAMPLES_DIR / "SOURCE.md").read_text()
    assert EXAMPLE in source and "public domain" in source and "NASA" in source


def test_camera_snapshot(app, astronaut_jpeg):
    app.toggle(key="use_camera").set_value(True).run()
    app.camera_input(key="camera_shot").set_value(("snapshot.jpg", astronaut_jpeg, "image/jpeg"))
    app.run()
    assert not app.exception and not app.error
    assert values(app.subheader) == ["camera snapshot"]
    (emotions, probs), = chart_bars(app)
    assert emotions[int(np.argmax(probs))] == "happy"


def test_a_corrupt_model_that_is_not_the_default_is_named_once_the_page_is_drawn(tmp_path, monkeypatch):
    """A fresh server hashes only the default's weights before the page (test_first_page) and the others after
    it: a broken one is still named in the sidebar in that first run, the default stays picked, and the model
    menu marks it from the next run on."""
    import shutil

    from fer_core.models.cards import REPO_WEIGHTS, find_card

    shutil.copytree(REPO_WEIGHTS, tmp_path / "weights")
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(tmp_path / "weights"))
    default = find_card(None)["name"]
    broken = tmp_path / "weights" / "cnn.pt"
    data_ = bytearray(broken.read_bytes())
    data_[len(data_) // 2] ^= 0xFF
    broken.write_bytes(bytes(data_))
    os.utime(broken, (time.time() - 60,) * 2)  # broken a minute ago: a file changed within RACY_S is hashed each run

    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception and not app.error
    warning, = values(app.sidebar.warning)
    assert warning.startswith("Model **cnn** is unavailable") and str(broken) in warning and "sha256" in warning
    menu = app.sidebar.selectbox(key="model")
    assert menu.value == default
    app.run()
    assert values(app.sidebar.warning) == [warning]  # named once, now by the sidebar itself
    assert "cnn (unavailable)" in app.sidebar.selectbox(key="model").options
    assert app.sidebar.selectbox(key="model").value == default


def test_a_corrupt_default_model_is_named_and_another_one_works(tmp_path, monkeypatch, astronaut_png):
    """One flipped byte in the default model's weights: the sidebar names the file and the app keeps working
    with an intact model."""
    import shutil

    from fer_core.models.cards import REPO_WEIGHTS, find_card, read_cards

    shutil.copytree(REPO_WEIGHTS, tmp_path / "weights")
    monkeypatch.setenv("FER_WEIGHTS_DIR", str(tmp_path / "weights"))
    default = find_card(None)["name"]
    broken = tmp_path / "weights" / f"{default}.pt"
    data_ = bytearray(broken.read_bytes())
    data_[len(data_) // 2] ^= 0xFF
    broken.write_bytes(bytes(data_))

    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception
    warning, = [w for w in values(app.sidebar.warning) if w.startswith(f"Model **{default}** is unavailable")]
    assert str(broken) in warning and "does not match the sha256" in warning
    chosen = app.sidebar.selectbox(key="model").value
    assert chosen != default and chosen in {c["name"] for c in read_cards()}
    upload(app, ("astronaut.png", astronaut_png, "image/png"))
    assert not app.exception and not app.error
    (emotions, probs), = chart_bars(app)
    assert emotions[int(np.argmax(probs))] == "happy"
