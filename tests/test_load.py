"""Under load and over time, against a real `streamlit run` on localhost driven by Debian's headless Chromium:

- 8 browser sessions at once, each uploading photos again and again for LOAD_S seconds: no errors, and the
  p50/p95 time from upload to result is reported (test-artifacts/browser/load.txt);
- the webcam page streaming Chromium's fake camera for SOAK_S seconds: the processed-frame rate of the last
  minute stays within 20% of the first minute's, and the server's resident memory grows by less than 50 MB.

The durations come from env FER_LOAD_S (default 60) and FER_SOAK_S (default 120, so a plain `pytest` stays
within ten minutes; `.ci/run` sets 300, the soak's full five minutes).
"""
import asyncio
import io
import os
import re
import statistics
import time
from pathlib import Path

import pytest

try:
    from helpers_browser import (CHROMIUM, CHROMIUM_ARGS, COUNTER_RE, FIRST_FRAME_S, StreamlitServer, face_clip_y4m,
                                 fake_camera_args)
except ImportError:  # imported as the tests package
    from tests.helpers_browser import (CHROMIUM, CHROMIUM_ARGS, COUNTER_RE, FIRST_FRAME_S, StreamlitServer,
                                       face_clip_y4m, fake_camera_args)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is not installed")

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
SESSIONS = 8
LOAD_S = float(os.environ.get("FER_LOAD_S", "60"))
SOAK_S = float(os.environ.get("FER_SOAK_S", "120"))
WARM_S = 15.0  # the load test's steady state starts this long after its first upload
READ_EVERY_S = 5.0  # the soak reads the counter and the server's memory this often
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'
TIMEOUT_MS = 120_000


def server_rss_mb(server) -> float:
    """Resident memory of the `streamlit run` process, from Linux /proc."""
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cache = tmp_path_factory.mktemp("load_cache")
    s = StreamlitServer(REPO, ARTIFACTS / "streamlit-load.log", env={"FER_OFFLINE": "1", "FER_CACHE_DIR": str(cache)})
    s.start(timeout=120)
    yield s
    s.stop()


def photos() -> list:
    """(file name, PNG bytes): the astronaut (happy) and the same photo mirrored."""
    from PIL import Image, ImageOps
    from skimage import data
    face = Image.fromarray(data.astronaut())
    out = []
    for name, img in (("astronaut", face), ("mirrored", ImageOps.mirror(face))):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append((name, buf.getvalue()))
    return out


async def wait_idle(page):
    await page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    await page.wait_for_timeout(300)
    await page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)


async def upload_loop(browser, url, index, until, pictures):
    """One session: upload a photo, wait for its face's label, remove it, again until `until`.
    Returns ([(time.monotonic() at the upload, seconds to its result)], errors)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1200})
    page = await context.new_page()
    times, errors, n = [], [], 0
    try:
        await page.goto(url, timeout=TIMEOUT_MS)
        await wait_idle(page)
        uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]').first
        while time.monotonic() < until:
            stem, data = pictures[n % len(pictures)]
            name = f"{stem}-{index}-{n}.png"
            start = time.monotonic()
            try:
                await uploader.set_input_files(files=[{"name": name, "mimeType": "image/png", "buffer": data}])
                heading = page.locator('[data-testid="stHeading"]', has_text=name)
                await heading.wait_for(timeout=TIMEOUT_MS)
                await page.get_by_text(re.compile(r"Face 1: happy")).first.wait_for(timeout=TIMEOUT_MS)
                times.append((start, time.monotonic() - start))
                if await page.locator(EXCEPTION).count() or await page.locator('[data-testid="stAlert"]').count():
                    errors.append(f"session {index}, {name}: an error or exception is shown")
                await page.get_by_role("button", name=f"Remove {name}").click(timeout=TIMEOUT_MS)
                await heading.wait_for(state="detached", timeout=TIMEOUT_MS)
            except Exception as e:  # a timeout or a closed page is an error of this test run, counted
                errors.append(f"session {index}, {name}: {type(e).__name__}: {str(e).splitlines()[0]}")
                break
            n += 1
    finally:
        await context.close()
    return times, errors


async def run_sessions(url, seconds):
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            until = time.monotonic() + seconds
            pictures = photos()
            return await asyncio.gather(*(upload_loop(browser, url, i, until, pictures) for i in range(SESSIONS)))
        finally:
            await browser.close()


def percentiles(times) -> tuple:
    """(p50, p95) of `times`; NaN for none."""
    times = sorted(times)
    if not times:
        return float("nan"), float("nan")
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def test_eight_sessions_upload_at_once(server, record_property):
    results = asyncio.run(run_sessions(server.url, LOAD_S))
    errors = [e for r in results for e in r[1]]
    per_session = [len(r[0]) for r in results]
    p50, p95 = percentiles(t for r in results for _, t in r[0])
    # The first seconds are slower (the slow uploads measured all started within ~10 s, while the eight tabs were
    # still loading on the same two cores). With ~125-155 uploads the overall p95 can fall on them, so the steady
    # state is reported on its own too, with the slowest upload and when it started.
    uploads = sorted(u for r in results for u in r[0])
    t0 = uploads[0][0] if uploads else 0.0
    _, p95_steady = percentiles(t for w, t in uploads if w - t0 >= WARM_S)
    when, slowest = max(((w - t0, t) for w, t in uploads), key=lambda u: u[1], default=(0.0, float("nan")))
    summary = (f"{SESSIONS} sessions x {LOAD_S:.0f} s: {sum(per_session)} uploads {per_session}, {len(errors)} "
               f"errors; upload -> result p50 {p50:.2f} s, p95 {p95:.2f} s; p95 {p95_steady:.2f} s after the first "
               f"{WARM_S:.0f} s; slowest {slowest:.2f} s, {when:.1f} s in")
    print(summary)
    (ARTIFACTS / "load.txt").write_text("\n".join([summary, *errors]) + "\n")
    record_property("upload_p50_s", round(p50, 3))
    record_property("upload_p95_s", round(p95, 3))
    record_property("upload_p95_steady_s", round(p95_steady, 3))
    record_property("upload_max_s", round(slowest, 3))
    assert not errors, "\n".join(errors[:10])
    assert all(k >= 1 for k in per_session), summary  # every session got results


async def processed_frames(page) -> int:
    m = COUNTER_RE.search(await page.locator('[data-testid="stMain"]').inner_text())
    return int(m.group(1)) if m else 0


async def start_stream(page, webrtc) -> int:
    """START; when no frame is processed within FIRST_FRAME_S, STOP (if shown) and START once more. Returns the
    restarts (0 or 1); a stream that never starts is left to the soak's own checks."""
    for restarts in (0, 1):
        if restarts:
            print(f"webcam soak: no processed frame {FIRST_FRAME_S} s after START; pressing STOP/START once more")
            stop = webrtc.get_by_role("button", name="STOP")
            if await stop.count():
                await stop.click(timeout=10_000)
        await webrtc.get_by_role("button", name="START").click(timeout=60_000)
        deadline = time.monotonic() + FIRST_FRAME_S
        while time.monotonic() < deadline:
            if await processed_frames(page):
                return restarts
            await asyncio.sleep(0.5)
    return restarts


async def soak(url, server, y4m, seconds):
    """([(seconds since the first processed frame, processed frames, frames with a face, server RSS MB)] every
    READ_EVERY_S for `seconds`, restarts of the stream, None while the component still shows STOP at the end or
    else (seconds when it was first seen without STOP, the buttons it showed))."""
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                          args=CHROMIUM_ARGS + fake_camera_args(y4m))
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 1400}, permissions=["camera"])
            page = await context.new_page()
            await page.goto(f"{url}/webcam", timeout=TIMEOUT_MS)
            await wait_idle(page)
            webrtc = page.frame_locator('iframe[title*="webrtc_streamer"]').first
            restarts = await start_stream(page, webrtc)
            start, readings, ended = time.monotonic(), [], None
            while (elapsed := time.monotonic() - start) < seconds:
                m = COUNTER_RE.search(await page.locator('[data-testid="stMain"]').inner_text())
                if await page.locator(EXCEPTION).count():
                    raise AssertionError("an exception is shown on /webcam while streaming")
                if m:
                    readings.append((elapsed, int(m.group(1)), int(m.group(2)), server_rss_mb(server)))
                ended = ended or await stream_ended(webrtc, elapsed)
                await asyncio.sleep(READ_EVERY_S)
            await page.screenshot(path=str(ARTIFACTS / "webcam-soak.png"))
            ended = ended or await stream_ended(webrtc, time.monotonic() - start)
            if ended is None:
                await webrtc.get_by_role("button", name="STOP").click(timeout=10_000)
            return readings, restarts, ended
        finally:
            await browser.close()


async def webrtc_buttons(webrtc) -> list:
    """The webcam component's button labels (START or STOP, SELECT DEVICE), for messages."""
    try:
        return [t for t in await webrtc.locator("button").all_inner_texts() if t.strip()]
    except async_api.Error as e:
        return [f"(unreadable: {e})"]


async def stream_ended(webrtc, elapsed):
    """None while the component shows STOP; else (`elapsed`, the buttons it shows)."""
    if await webrtc.get_by_role("button", name="STOP").count():
        return None
    return elapsed, await webrtc_buttons(webrtc)


def last_moved(readings) -> float:
    """Seconds into the soak of the last reading at which the processed-frame counter had gone up."""
    moved = [b[0] for a, b in zip(readings, readings[1:]) if b[1] > a[1]]
    return moved[-1] if moved else 0.0


def largest_gap(readings) -> float:
    """The longest time between two readings, in seconds."""
    return max((b[0] - a[0] for a, b in zip(readings, readings[1:])), default=0.0)


def rate(readings, t0, t1) -> float:
    """Processed frames per second between the readings nearest to t0 and t1."""
    a = min(readings, key=lambda r: abs(r[0] - t0))
    b = min(readings, key=lambda r: abs(r[0] - t1))
    return (b[1] - a[1]) / max(1e-9, b[0] - a[0])


@pytest.mark.timeout(SOAK_S + 600)  # the soak itself, then the server, browser and clip set-up
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory from Linux /proc")
def test_webcam_soak(server, tmp_path, record_property):
    assert SOAK_S >= 120, "the soak compares its first and last minutes: FER_SOAK_S must be at least 120"
    y4m, source = face_clip_y4m(tmp_path / "face.y4m")
    readings, restarts, ended = asyncio.run(soak(server.url, server, y4m, SOAK_S))
    record_property("soak_restarts", restarts)
    table = "\n".join(map(str, readings)) + "\n"
    (ARTIFACTS / "webcam-soak.txt").write_text(f"stream ended: {ended}\n{table}")  # kept whatever fails below
    # A stream that ends on its own is a failure of the soak, named with when it happened. Chromium drops a WebRTC
    # connection that goes quiet and the component turns back to START: here the server stopped (SIGSTOP) for 10 s
    # ended the stream, for 4 or 7 s it did not. The largest gap between readings tells a stall of the whole
    # machine (this test's own loop late too) from one of the server alone.
    assert ended is None, (f"the webcam stream ended during the soak: first seen without STOP at {ended[0]:.0f} s "
                           f"(component shows {ended[1]}); the counter last moved at {last_moved(readings):.0f} s; "
                           f"largest gap between readings {largest_gap(readings):.1f} s (read every {READ_EVERY_S} s); "
                           f"last readings {readings[-4:]}\n--- server log ---\n{server.log_tail(1500)}")
    started = [r for r in readings if r[1] > 0]
    assert len(started) >= SOAK_S / READ_EVERY_S / 2, f"the counter hardly moved: {readings[:5]}"
    t_first, t_end = started[0][0], started[-1][0]
    first = rate(started, t_first, t_first + 60)
    last = rate(started, t_end - 60, t_end)
    rss_first, rss_end = started[0][3], started[-1][3]
    rss_minute = min(started, key=lambda r: abs(r[0] - (t_first + 60)))[3]
    faces = started[-1][2] / max(1, started[-1][1])
    summary = (f"webcam soak {t_end - t_first:.0f} s on {source}: {started[-1][1]} frames ({faces:.0%} with a face); "
               f"first minute {first:.1f} fps, last minute {last:.1f} fps; server RSS {rss_first:.0f} MB at start, "
               f"{rss_minute:.0f} MB after a minute, {rss_end:.0f} MB at the end; restarts: {restarts}")
    print(summary)
    (ARTIFACTS / "webcam-soak.txt").write_text(f"{summary}\n{table}")
    record_property("soak_first_minute_fps", round(first, 2))
    record_property("soak_last_minute_fps", round(last, 2))
    record_property("soak_rss_growth_mb", round(rss_end - rss_first, 1))
    assert faces > 0.5, summary
    assert last >= 0.8 * first, summary
    assert rss_end - rss_first < 50, summary
