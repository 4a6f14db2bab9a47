"""The Live webcam page under Streamlit's AppTest (no browser): it renders with its counter, and its
"Video file" tab analyses an uploaded video or says why it cannot; plus fer_core.app.rtc's ICE choice
from the environment, without network."""
import logging
import math
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import streamlit_webrtc
import streamlit_webrtc.component
from streamlit.testing.v1 import AppTest

from fer_core.app import rtc
from fer_core.inference import video

try:
    from helpers_images import astronaut_bgr, yunet_model
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr, yunet_model

REPO = Path(__file__).resolve().parent.parent
COUNTER = "Processed frames: 0 \u00b7 with a face: 0"
ICE_VARIABLES = ("CLOUDFLARE_TURN_KEY_ID", "CLOUDFLARE_TURN_KEY_API_TOKEN", "TWILIO_ACCOUNT_SID",
                 "TWILIO_AUTH_TOKEN", "HF_TOKEN")


@pytest.fixture
def page(monkeypatch):
    """AppTest on the webcam page. AppTest's stand-in Runtime has no session manager, which
    streamlit-webrtc looks up for the session's run count; it treats "no session info" (None) as
    running outside a live server, so the test gives it exactly that."""
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)
    for name in ICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if yunet_model() is not None:
        monkeypatch.setenv("FER_YUNET_MODEL", str(yunet_model()))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/webcam.py").run()
    return at


def small_video(path, frames=6, dim=False) -> bytes:
    """An MJPG .avi of the astronaut on a grey 640x480 frame, 5 fps, or as a dim room films it (levels raised to
    the power 3, then scaled by 0.35); returns its bytes."""
    face = np.full((480, 640, 3), 90, np.uint8)
    face[:, 100:580] = cv2.resize(astronaut_bgr(), (480, 480), interpolation=cv2.INTER_AREA)
    if dim:
        face = (255 * (face / 255.0) ** 3 * 0.35).round().astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    for _ in range(frames):
        writer.write(face)
    writer.release()
    return Path(path).read_bytes()


def test_page_renders_with_its_counter(page):
    assert not page.exception, page.exception
    assert [t.value for t in page.title] == ["Live webcam"]
    assert [t.label for t in page.tabs] == ["Live webcam", "Video file"]
    assert COUNTER in [m.value for m in page.markdown]
    assert any(c.value.startswith("Not streaming: press START") for c in page.caption)  # no stale live figures
    allowed = page.file_uploader(key="video_upload").allowed_type
    assert {".mp4", ".avi", ".mov", ".webm", ".mkv"} <= set(allowed)
    page.run()  # a rerun keeps the same per-session processor and counter
    assert not page.exception and COUNTER in [m.value for m in page.markdown]


def test_video_tab_analyses_an_upload(page, tmp_path):
    data = small_video(tmp_path / "astronaut.avi")
    page.file_uploader(key="video_upload").set_value(("astronaut.avi", data, "video/x-msvideo")).run()
    assert not page.exception, page.exception
    assert not page.error
    metrics = {m.label: m.value for m in page.metric}
    assert metrics == {"Frames analysed": "6", "With a face": "6", "Most frequent emotion": "happy"}
    assert len(page.get("plotly_chart")) == 1
    assert len(page.get("download_button")) == 1
    assert not [c.value for c in page.caption if "dark" in c.value]


def test_video_tab_says_when_a_video_is_dark(page, tmp_path):
    data = small_video(tmp_path / "dim.avi", dim=True)
    page.file_uploader(key="video_upload").set_value(("dim.avi", data, "video/x-msvideo")).run()
    assert not page.exception, page.exception
    assert {m.label: m.value for m in page.metric}["With a face"] == "6"  # still found
    notes = [c.value for c in page.caption if c.value.startswith("The picture is dark (mean level ")]
    assert len(notes) == 1 and notes[0].endswith("more light on the face helps.")


def test_video_tab_without_a_face_says_so_and_why_when_dark(page, tmp_path):
    path = tmp_path / "night.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 480))
    for _ in range(4):
        writer.write(np.full((480, 640, 3), 12, np.uint8))
    writer.release()
    page.file_uploader(key="video_upload").set_value(("night.avi", path.read_bytes(), "video/x-msvideo")).run()
    assert not page.exception, page.exception
    (info,) = [i.value for i in page.info]
    assert info.startswith("night.avi: no face found in the analysed frames. The picture is dark (mean level 1")


def test_video_tab_refuses_a_file_that_is_not_a_video(page):
    page.file_uploader(key="video_upload").set_value(("notes.mp4", b"just some text\n" * 20, "video/mp4")).run()
    assert not page.exception, page.exception
    assert [e.value for e in page.error] == ["notes.mp4 is not a video we can read (mp4, avi, mov, webm, mkv)"]
    assert not page.metric


def long_video(path, minutes=3.0) -> Path:
    """A video of at least `minutes`, made by looping the shared face clip (env FER_FACE_CLIP) at its own
    frame rate, or the astronaut photo at 25 fps when the clip is absent."""
    clip = os.environ.get("FER_FACE_CLIP")
    frames, fps = [], 25.0
    if clip and Path(clip).is_file():
        cap = cv2.VideoCapture(clip)
        fps = cap.get(cv2.CAP_PROP_FPS) or fps
        while (frame := cap.read()[1]) is not None:
            frames.append(frame)
        cap.release()
    if not frames:
        frames = [cv2.resize(astronaut_bgr(), (320, 320))]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for i in range(math.ceil(minutes * 60 * fps)):
        writer.write(frames[i % len(frames)])
    writer.release()
    return path


class PeakRss:
    """The process's resident memory sampled every 20 ms on a thread (Linux /proc): `peak - start` in MB."""

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads memory from Linux /proc")
def test_video_tab_on_a_three_minute_video_in_bounded_memory(page, tmp_path, record_property):
    path = long_video(tmp_path / "long.mp4")
    with video.open_video(path) as cap:
        about = video.info(cap)
    assert about.duration_s >= 180
    data = path.read_bytes()
    page.run()  # warm: the model and detector are loaded before measuring
    with PeakRss() as rss:
        page.file_uploader(key="video_upload").set_value(("long.mp4", data, "video/mp4")).run(timeout=600)
    assert not page.exception, page.exception
    assert not page.error
    metrics = {m.label: m.value for m in page.metric}
    stride = video.auto_stride(about.frames)
    assert int(metrics["Frames analysed"]) == math.ceil(about.frames / stride) <= video.MAX_ANALYSED
    assert int(metrics["With a face"]) >= 0.9 * int(metrics["Frames analysed"])
    grown = rss.peak - rss.start
    decoded_mb = about.frames * about.width * about.height * 3 / 2**20
    print(f"{about.duration_s:.0f} s video, {about.frames} frames ({len(data) / 2**20:.1f} MB file, "
          f"{decoded_mb:.0f} MB decoded): peak RSS +{grown:.0f} MB")
    record_property("long_video_peak_rss_growth_mb", round(grown, 1))
    assert grown < 150, f"peak RSS grew {grown:.0f} MB over {about.frames} frames"


# --- ICE servers -------------------------------------------------------------------------------------------

class FakeFetch:
    """Records which streamlit_webrtc helper would be called, with what, and answers `servers`."""

    def __init__(self, servers=None, error=None):
        self.servers, self.error, self.calls = servers or [], error, []

    def __call__(self, helper):
        def fetch(*credentials):
            self.calls.append((helper, credentials))
            if self.error:
                raise self.error
            return self.servers
        return fetch


TURN = [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"}]


def test_no_environment_means_no_ice_servers(monkeypatch):
    for name in ICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fetch = FakeFetch(TURN)
    assert rtc.ice_servers(fetch=fetch) == []
    assert rtc.rtc_configuration() == {"iceServers": []}
    assert rtc.configured_provider() is None and fetch.calls == []


def test_hugging_face_token_adds_turn_and_google_stun():
    fetch = FakeFetch(TURN)
    assert rtc.ice_servers({"HF_TOKEN": "hf_abc"}, fetch) == TURN + [rtc.GOOGLE_STUN]
    assert fetch.calls == [("get_hf_ice_servers", ("hf_abc",))]


def test_provider_order_and_half_configured(caplog):
    fetch = FakeFetch(TURN)
    env = {"HF_TOKEN": "hf", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "tok"}
    assert rtc.rtc_configuration(env, fetch) == {"iceServers": TURN}
    env.update(CLOUDFLARE_TURN_KEY_ID="kid", CLOUDFLARE_TURN_KEY_API_TOKEN="ktok")
    rtc.ice_servers(env, fetch)
    assert fetch.calls == [("get_twilio_ice_servers", ("AC1", "tok")),
                           ("get_cloudflare_ice_servers", ("kid", "ktok"))]
    with caplog.at_level(logging.WARNING, logger="fer_core.app.rtc"):
        assert rtc.configured_provider({"TWILIO_ACCOUNT_SID": "AC1"}) is None
        assert rtc.configured_provider({"TWILIO_AUTH_TOKEN": "tok", "HF_TOKEN": "hf"})[0] == "Hugging Face"
    assert any("TWILIO_ACCOUNT_SID" in r.getMessage() for r in caplog.records)


def test_a_failed_fetch_falls_back_to_no_servers(caplog):
    fetch = FakeFetch(error=ValueError("Failed to get credentials from HF turn server"))
    with caplog.at_level(logging.WARNING, logger="fer_core.app.rtc"):
        assert rtc.ice_servers({"HF_TOKEN": "hf"}, fetch) == []
    assert any("Hugging Face" in r.getMessage() for r in caplog.records)


def test_the_helpers_exist_in_streamlit_webrtc():
    for _name, _variables, helper in rtc.PROVIDERS:
        assert callable(getattr(streamlit_webrtc, helper))
