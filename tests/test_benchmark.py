"""`python -m fer_core benchmark`: real frames through both detectors, figures that make sense, card update."""
import json

import cv2
import numpy as np
import pytest

from fer_core.inference import benchmark
from fer_core.models.cards import find_card
from helpers_data import cli_env, run_cli
from helpers_images import astronaut_bgr, make_tiny_weights, yunet_model


@pytest.fixture
def tiny(weights_dir, monkeypatch):
    make_tiny_weights(weights_dir)
    monkeypatch.setattr(benchmark, "FRAMES", 8)
    monkeypatch.setattr(benchmark, "WARMUP", 1)
    monkeypatch.setattr(benchmark, "PHOTO_RUNS", 1)
    return weights_dir


def test_frames_are_webcam_shaped_from_a_photo_or_a_video(tmp_path):
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut_bgr())
    frames = benchmark.frames_from(image=photo, count=3)
    assert len(frames) == 3 and frames[0].shape == (480, 640, 3) and frames[0].dtype == np.uint8
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(4):
        w.write(np.full((240, 320, 3), i * 60, np.uint8))
    w.release()
    frames = benchmark.frames_from(video=video, count=10)  # 4 frames, looped
    assert len(frames) == 10 and frames[0].shape == (480, 640, 3)
    assert frames[4].mean() == pytest.approx(frames[0].mean(), abs=2) and frames[3].mean() > frames[0].mean() + 100
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError, match="no frames could be read"):
        benchmark.frames_from(video=text, count=2)


@pytest.mark.slow
def test_run_reports_sane_figures_and_writes_the_card(tiny, tmp_path, monkeypatch):
    if yunet_model():
        monkeypatch.setenv("FER_YUNET_MODEL", str(yunet_model()))
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut_bgr())
    detectors = ("yunet", "haar") if yunet_model() else ("haar",)
    r = benchmark.run(None, detectors, image=photo)
    assert r["model"] == "tiny" and r["threads"] >= 1 and 0 < r["load_s"] < 30
    for v in r["per_face_ms"].values():
        assert 0 < v["median"] <= v["p95"]
    for name in detectors:
        f = r["per_frame_ms"][name]
        assert f["frames"] == 8 and f["frames_with_face"] == 8  # the astronaut's face in every frame
        assert 0 < f["median"] <= f["p95"]
    for name in detectors:
        photo = r["photo_12mp_ms"][name]
        assert photo["megapixels"] == 12.0 and photo["faces"] == 1 and 0 < photo["median"] <= photo["p95"]
    assert r["peak_rss_mb"] > 50
    benchmark.write_card(r)
    assert find_card("tiny")["cpu_ms_per_face"]["batch1"] == r["per_face_ms"]["batch1"]
    assert "tiny on" in benchmark.format_result(r)


@pytest.mark.slow
def test_cli_json(tiny, tmp_path):
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut_bgr())
    result = run_cli("benchmark", "--detector", "haar", "--image", photo, "--frames", 8, "--json", env=cli_env(),
                     timeout=300)
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["model"] == "tiny" and r["per_frame_ms"]["haar"]["frames_with_face"] == r["per_frame_ms"]["haar"]["frames"]
    bad = run_cli("benchmark", "--detector", "haar", "--video", tmp_path / "missing.mp4", env=cli_env())
    assert bad.returncode == 2 and "no frames could be read" in bad.stderr
