"""End-to-end: the real app under `streamlit run`, driven by headless Chromium through Playwright.

One server and one browser for the module; each test gets a fresh browser context (a fresh Streamlit
session). Screenshots land in test-artifacts/browser/ (git-ignored); on a failure the page is
screenshotted too and the server's log tail is printed. Skipped when /usr/bin/chromium (FER_CHROMIUM) or
the playwright package is missing; Playwright never downloads a browser here, it drives Debian's Chromium.

The webcam test feeds Chromium's fake camera from a y4m built from FER_FACE_CLIP (else the astronaut
photo), presses START inside streamlit-webrtc's iframe and reads the page's counter (the contract with
the webcam page): "Processed frames: N · with a face: M".
"""
import os
import re
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    from helpers_browser import (CAMERA_FPS, CHROMIUM, CHROMIUM_ARGS, COUNTER_RE, FIRST_FRAME_S, StreamlitServer,
                                 face_clip_y4m, fake_camera_args, outside, overlapping_pairs)
except ImportError:  # imported as the tests package
    from tests.helpers_browser import (CAMERA_FPS, CHROMIUM, CHROMIUM_ARGS, COUNTER_RE, FIRST_FRAME_S,
                                       StreamlitServer, face_clip_y4m, fake_camera_args, outside, overlapping_pairs)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
# (URL path, sidebar title): st.navigation derives each path from the page's file name, "" for the default.
PAGES = [("", "Upload & classify"), ("webcam", "Live webcam"), ("compare", "Model comparison"),
         ("explore", "Dataset explorer")]
# A first run loads a model; the explorer may decode FER2013 into its cache. FER_BROWSER_TIMEOUT_MS raises it
# on a machine that other work keeps busy.
PAGE_TIMEOUT_MS = int(os.environ.get("FER_BROWSER_TIMEOUT_MS", 90_000))
# Starting Chromium and a server take longer there too: never less than these, and as long as a page when it is raised.
LAUNCH_TIMEOUT_MS = max(60_000, PAGE_TIMEOUT_MS)
SERVER_TIMEOUT_S = max(120, PAGE_TIMEOUT_MS / 1000)
WEBCAM_FRAMES, WEBCAM_TIMEOUT_S, FPS_WINDOW_S = 30, 75, 10.0
EXCEPTION = '[data-testid="stException"]'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app under `streamlit run` on a free port (FER_OFFLINE=1), ended after the module."""
    # The dataset cache is the one conftest's `real_cache` uses, so FER2013 decodes at most once a session.
    cache = tmp_path_factory.getbasetemp() / "fer_cache_real"
    cache.mkdir(exist_ok=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = StreamlitServer(REPO, ARTIFACTS / "streamlit.log", env={"FER_OFFLINE": "1", "FER_CACHE_DIR": str(cache)})
    server.start(timeout=SERVER_TIMEOUT_S)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory):
    path, source = face_clip_y4m(tmp_path_factory.mktemp("camera") / "face.y4m")
    print(f"fake camera: {path} from {source}")
    return path


@pytest.fixture(scope="module")
def browser(camera_clip):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, timeout=LAUNCH_TIMEOUT_MS,
                                    args=CHROMIUM_ARGS + fake_camera_args(camera_clip))
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app, request):
    """A page in a fresh context; on a failure: a screenshot, the browser console's tail and the server's log tail."""
    context = browser.new_context(viewport={"width": 1280, "height": 1400}, permissions=["camera"])
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    watch_console(page)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        shot = ARTIFACTS / f"FAILED-{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
        except Exception as e:  # the page may be gone; the log still matters
            print(f"no screenshot: {e}")
        print(f"--- browser console (last {CONSOLE_LINES} lines) ---\n{console_tail(page)}")
        print(f"--- streamlit log ({app.log}) ---\n{app.log_tail()}")
    context.close()


CONSOLE_LINES = 80  # what a failure prints of the browser console (the webcam component logs its WebRTC steps there)
CONSOLE_NOISE = ("Unrecognized feature:",)  # Chromium's notes on the component iframe's permissions policy, every time


def watch_console(page):
    """Keeps the page's last CONSOLE_LINES console messages, its iframes' included, for console_tail."""
    lines = page.console_lines = deque(maxlen=CONSOLE_LINES)

    def keep(message):
        if not message.text.startswith(CONSOLE_NOISE):
            lines.append(f"{time.strftime('%H:%M:%S')} {message.type}: {message.text[:300]}")
    page.on("console", keep)


def console_tail(page) -> str:
    return "\n".join(getattr(page, "console_lines", ())) or "(nothing)"


def open_page(page, app, path):
    page.goto(f"{app.url}/{path}")
    wait_idle(page)


def screenshot(page, name):
    page.wait_for_timeout(1000)  # charts draw after the script run ends
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_idle(page, timeout_ms=PAGE_TIMEOUT_MS, settle_ms=500):
    """Until Streamlit's script run has finished (the app root says so) and no rerun follows within
    `settle_ms` (widgets registering their first values can trigger one)."""
    deadline = time.monotonic() + timeout_ms / 1000
    page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=timeout_ms)
    while True:
        page.wait_for_selector(IDLE, timeout=max(1, int((deadline - time.monotonic()) * 1000)))
        page.wait_for_timeout(settle_ms)
        if page.locator(IDLE).count() or time.monotonic() > deadline:
            return


def assert_no_exception(page, what):
    errors = page.locator(EXCEPTION)
    if errors.count():
        raise AssertionError(f"{what}: an exception is shown:\n" + "\n---\n".join(errors.all_inner_texts()))


def expect_page(page, title):
    """The sidebar marks `title` as the current page and shows app.py's model picker (so app.py ran)."""
    nav = page.locator('[data-testid="stSidebarNav"] a[aria-current="page"]')
    sync_api.expect(nav).to_contain_text(title, timeout=15_000)
    picker = page.locator('[data-testid="stSidebar"]').get_by_text("Model", exact=True)
    sync_api.expect(picker, "no model picker: app.py's sidebar did not run").to_have_count(1, timeout=15_000)


def main_text(page):
    return page.locator('[data-testid="stMain"]').inner_text()


def test_sidebar_lists_every_page_at_its_path(page, app):
    open_page(page, app, "")
    links = page.locator('[data-testid="stSidebarNav"] a')
    found = {}
    for i in range(links.count()):
        link = links.nth(i)
        href = link.get_attribute("href") or ""
        title = link.inner_text().strip().splitlines()[-1].strip()  # the icon's name comes first
        found[title] = href.removeprefix(app.url).strip("/")
    assert found == {title: path for path, title in PAGES}


@pytest.mark.parametrize("path,title", PAGES, ids=[p or "upload" for p, _ in PAGES])
def test_page_renders_without_exception(page, app, path, title):
    open_page(page, app, path)
    assert_no_exception(page, f"/{path}")
    expect_page(page, title)
    screenshot(page, f"page-{path or 'upload'}")


@contextmanager
def fresh_server_page(browser, cache, log_name):
    """(server, page): a server of its own that no visitor has seen yet (its log in test-artifacts/browser/
    `log_name`, its dataset cache in `cache`) and a page in a new browser context; both closed afterwards."""
    server = StreamlitServer(REPO, ARTIFACTS / log_name,
                             env={"FER_OFFLINE": "1", "FER_CACHE_DIR": str(cache)}).start(timeout=SERVER_TIMEOUT_S)
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield server, context.new_page()
    finally:
        context.close()
        server.stop()


def test_deep_link_on_fresh_server(browser, tmp_path):
    """The first visitor after a (re)start may arrive on a page's own URL (a shared link to a Space that
    just woke up): app.py must still run, with its navigation and sidebar, not Streamlit's legacy
    pages/-folder mode (a folder named `pages` next to app.py would trigger that mode until app.py has run)."""
    with fresh_server_page(browser, tmp_path, "streamlit-fresh.log") as (server, page):
        open_page(page, server, "compare")
        titles = [t.strip().splitlines()[-1].strip()
                  for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
        if titles != [title for _, title in PAGES]:
            screenshot(page, "FAILED-deep-link")
        assert titles == [title for _, title in PAGES], f"a first visit to /compare shows the navigation {titles}"
        expect_page(page, "Model comparison")
        assert_no_exception(page, "/compare on a fresh server")


UPLOAD_TITLE = '[data-testid="stMain"] h1:has-text("Upload & classify")'
UPLOADER = '[data-testid="stMain"] [data-testid="stFileUploader"]'
MODEL_SPINNER = '[data-testid="stSpinner"]:has-text("Loading the model")'


def test_first_visit_of_a_fresh_server_shows_title_and_uploader_within_3_s(browser, tmp_path, record_property):
    """Issue 21: a fresh server's first visitor sees the page's title and its uploader within 3 s of navigating
    (FER_FIRST_PAGE_MAX_S; 0 turns the check off), timed in the browser; then the model loads behind its spinner
    and the page becomes ready without an exception. The figure goes to test-artifacts/browser/first-page.txt."""
    with fresh_server_page(browser, tmp_path, "streamlit-first-page.log") as (server, page):
        time.sleep(1.0)  # the server's and Chromium's own start settle: a visitor arrives at a started server
        busy = machine_busy()  # how much of the CPU other work takes
        start = time.monotonic()
        page.goto(server.url, wait_until="commit")
        page.locator(UPLOAD_TITLE).wait_for(state="visible")
        title_s = time.monotonic() - start
        page.locator(UPLOADER).wait_for(state="visible")
        shown_s = time.monotonic() - start
        spinner_seen = page.locator(MODEL_SPINNER).count() > 0
        wait_idle(page)  # the script run has ended: the model is loaded (ui.recognizer), the page is ready
        ready_s = time.monotonic() - start
        icon = page.evaluate("document.querySelector('link[rel*=icon]')?.href || ''")  # set after the page (app.py)
        assert "%F0%9F%8E%AD" in icon, f"the tab's icon is {icon[:100]!r}, not FER Studio's performing-arts emoji"
        screenshot(page, "first-page")
        assert_no_exception(page, "the first visit of a fresh server")
        errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
        assert not errors, f"errors shown on the first page: {errors}"
        assert page.locator(MODEL_SPINNER).count() == 0, "the model's spinner is still shown on a finished page"
        expect_page(page, "Upload & classify")
    log = server.log_tail(20_000)
    assert "Traceback" not in log, f"the server logged an exception:\n{log}"

    busy_txt = "unknown" if busy is None else f"{busy:.0%}"
    summary = (f"first page of a fresh server: title after {title_s:.2f} s, title and uploader after {shown_s:.2f} s, "
               f"page ready (model loaded) after {ready_s:.2f} s; model spinner on screen when the uploader showed: "
               f"{spinner_seen}; CPU busy before navigating: {busy_txt}")
    print(summary)
    record_property("first_page_s", round(shown_s, 3))
    (ARTIFACTS / "first-page.txt").write_text(summary + "\n")
    # As the webcam's fps floor: only where the figure measures the app, not other work on a busy machine.
    max_s = float(os.environ.get("FER_FIRST_PAGE_MAX_S", "3"))
    if max_s > 0 and (busy is None or busy < 0.5):
        assert shown_s <= max_s, summary


def test_sidebar_links_navigate(page, app):
    open_page(page, app, "")
    for path, title in PAGES[1:] + PAGES[:1]:
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click()
        page.wait_for_url(re.compile(re.escape(f"{app.url}/{path}") + r"/?(\?.*)?$"))
        wait_idle(page)
        assert_no_exception(page, f"after clicking {title!r}")
        expect_page(page, title)


def test_upload_astronaut_shows_happy(page, app, tmp_path):
    from PIL import Image
    from skimage import data

    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    open_page(page, app, "")
    before = len(re.findall(r"happy", main_text(page), re.I))
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(photo))
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while len(re.findall(r"happy", main_text(page), re.I)) <= before:
        assert_no_exception(page, "upload")
        assert time.monotonic() < deadline, f"no 'happy' after the upload:\n{main_text(page)[-2000:]}"
        time.sleep(0.5)
    wait_idle(page)
    assert_no_exception(page, "upload")
    screenshot(page, "upload-astronaut")


def read_counter(page):
    """(processed frames, frames with a face) from the webcam page's counter, or None before it shows."""
    m = COUNTER_RE.search(main_text(page))
    return (int(m.group(1)), int(m.group(2))) if m else None


def machine_busy(seconds=1.0):
    """Share of all CPU time spent busy over `seconds` (Linux /proc/stat), or None elsewhere."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except OSError:
        return None
    return 1 - (i1 - i0) / max(1, t1 - t0)


def press_start(webrtc, tries=3):
    """Click START until the component answers with its STOP button. A click that lands while the iframe is
    still being set up can be lost (seen once in a full run: START stayed, 0 frames in 75 s); a person would
    click again, and so does this."""
    for _ in range(tries):
        webrtc.get_by_role("button", name="START").click(timeout=30_000)
        try:
            webrtc.get_by_role("button", name="STOP").wait_for(timeout=15_000)
            return
        except sync_api.TimeoutError:
            continue
    raise AssertionError(f"START pressed {tries} times, and the webcam component never showed STOP")


def webrtc_buttons(webrtc) -> list:
    """The webcam component's button labels (START or STOP, SELECT DEVICE), for messages."""
    try:
        return [t for t in webrtc.locator("button").all_inner_texts() if t.strip()]
    except sync_api.Error as e:
        return [f"(unreadable: {e})"]


def wait_for_frames(page, frames, seconds):
    """The counter once it reads at least `frames` processed frames, one with a face; else its last reading."""
    deadline = time.monotonic() + seconds
    reading = None
    while time.monotonic() < deadline:
        assert_no_exception(page, "/webcam while streaming")
        reading = read_counter(page)
        if reading and reading[0] >= frames and reading[1] >= 1:
            break
        time.sleep(0.5)
    return reading


def restart_stream(page, webrtc, reading):
    """STOP (where shown) and START again, as a person would when no frame arrives. What the page and the browser
    console showed goes to test-artifacts/browser/webcam-restart.txt and stdout, so a restart is never silent."""
    buttons = webrtc_buttons(webrtc)
    note = (f"webcam: no processed frame {FIRST_FRAME_S} s after START (counter {reading}, component {buttons}); "
            f"pressing STOP/START once more.\n--- browser console ---\n{console_tail(page)}\n")
    print(note)
    (ARTIFACTS / "webcam-restart.txt").write_text(note)
    screenshot(page, "webcam-restart")
    if "STOP" in buttons:
        webrtc.get_by_role("button", name="STOP").click(timeout=10_000)
        webrtc.get_by_role("button", name="START").wait_for(timeout=30_000)
    press_start(webrtc)


def test_webcam_streams_faces(page, app, record_property):
    """START plays the fake camera into the page; the counter must reach WEBCAM_FRAMES processed frames with a
    face, and the stream must hold the fps floor. A stream that shows no processed frame FIRST_FRAME_S after
    START is stopped and started once more, as a person would. No stream came in twice: a local full run (START
    back on the button) and CI run 27 (STOP shown, 0 frames); 68 starts in a row on a fully loaded machine all
    streamed within 11 s. A restart is recorded as `webcam_restarts` and written to webcam-restart.txt with the
    browser console's WebRTC steps."""
    open_page(page, app, "webcam")
    assert_no_exception(page, "/webcam")
    busy = machine_busy()  # before streaming: how much of the CPU other work takes
    webrtc = page.frame_locator('iframe[title*="webrtc_streamer"]').first
    press_start(webrtc)
    start = time.monotonic()
    restarts = 0
    reading = wait_for_frames(page, 1, FIRST_FRAME_S)
    if not reading or reading[0] == 0:
        restarts = 1
        restart_stream(page, webrtc, reading)
        start = time.monotonic()
    reading = wait_for_frames(page, WEBCAM_FRAMES, WEBCAM_TIMEOUT_S - (time.monotonic() - start))
    assert reading, f"no 'Processed frames: N · with a face: M' counter on /webcam:\n{main_text(page)[-2000:]}"
    assert reading[0] >= WEBCAM_FRAMES and reading[1] >= 1, \
        (f"after {WEBCAM_TIMEOUT_S} s and {restarts} restart(s): {reading[0]} frames processed, {reading[1]} with "
         f"a face; the component shows {webrtc_buttons(webrtc)}")
    first_s = time.monotonic() - start

    # Throughput: two readings of the counter FPS_WINDOW_S apart.
    t0, n0 = time.monotonic(), reading[0]
    time.sleep(FPS_WINDOW_S)
    n1, f1 = read_counter(page)
    fps = (n1 - n0) / (time.monotonic() - t0)
    screenshot(page, "webcam-streaming")
    webrtc.get_by_role("button", name="STOP").click(timeout=10_000)
    # Stopped, the caption says so instead of the last live figures.
    page.locator('[data-testid="stCaptionContainer"]', has_text="Not streaming: press START").wait_for(timeout=30_000)

    busy_txt = "unknown" if busy is None else f"{busy:.0%}"
    summary = (f"webcam: {WEBCAM_FRAMES} frames after {first_s:.1f} s; {fps:.1f} fps over {FPS_WINDOW_S:.0f} s "
               f"(camera {CAMERA_FPS} fps); {n1} frames, {f1} with a face; CPU busy before start: {busy_txt}; "
               f"restarts: {restarts}")
    print(summary)
    record_property("webcam_fps", round(fps, 2))
    record_property("webcam_restarts", restarts)
    (ARTIFACTS / "webcam-fps.txt").write_text(summary + "\n")
    assert f1 >= 1 and n1 >= n0
    # A throughput floor only where it measures the app: on a machine that other work keeps busy (e.g. a
    # training run beside the tests) the number says more about that work. FER_WEBCAM_MIN_FPS=0 turns it off.
    # 20 processed fps (issue 21), of the fake camera's 30: an idle two-core machine with native bf16 measured
    # 29.9 with the fp32 model; an AVX2-only one streamed 15.9-21.9 over four runs before the int8 path, which
    # cut the model's share of a webcam frame (docs/speed.md).
    min_fps = float(os.environ.get("FER_WEBCAM_MIN_FPS", "20"))
    if min_fps > 0 and (busy is None or busy < 0.5):
        assert fps >= min_fps, summary


# --- the Model comparison page at 1400 px: every chart fits and reads ------------------------------------

DASHBOARD_VIEWPORT = {"width": 1400, "height": 1000}
CHART = '[data-testid="stPlotlyChart"]'
# Text that plotly draws and a reader must be able to read, by kind: point labels (the accuracy-vs-latency
# scatter's names), annotations (subplot titles, "no card has ..." notes), titles, axis titles, tick labels.
CHART_TEXT = {"label": "g.textpoint text", "annotation": "g.annotation-text-g text", "title": "g.g-gtitle text",
              "axis title": "g.g-xtitle text, g.g-x2title text, g.g-ytitle text, g.g-y2title text",
              "x tick": "g.xtick text", "y tick": "g.ytick text"}


def named_boxes(locator, kind, with_text=True) -> list:
    """[(kind 'text', box)] of every element of `locator` that is drawn (has a box of some size)."""
    out = []
    for element in locator.all():
        box = element.bounding_box()
        if box and box["width"] > 0 and box["height"] > 0:
            out.append((f"{kind} {element.text_content()[:40]!r}" if with_text else kind, box))
    return out


def chart_problems(chart, name, width) -> list:
    """What makes one plotly chart hard to read at a viewport `width` px wide: reaching past the viewport,
    a legend or text running off the chart's own drawing, and any two texts (or a text and the legend)
    drawn over each other. Texts of one kind on different subplot axes are compared too; they never meet."""
    problems = []
    box = chart.bounding_box()
    if box["x"] < 0 or box["x"] + box["width"] > width + 1:
        problems.append(f"{name}: spans x {box['x']:.0f}..{box['x'] + box['width']:.0f}, past the {width}-px viewport")
    svg = chart.locator("svg.main-svg").first.bounding_box()
    texts = [b for kind, css in CHART_TEXT.items() for b in named_boxes(chart.locator(css), kind)]
    legend = named_boxes(chart.locator("g.legend"), "legend", with_text=False)
    for what, b in texts + legend:
        if outside(b, svg):
            problems.append(f"{name}: {what} runs off the chart")
    for a, b in overlapping_pairs(texts + legend):
        problems.append(f"{name}: {a} overlaps {b}")
    return problems


def dashboard_problems(page, state) -> list:
    """Scrolls through the page chart by chart, screenshots it whole (and each chart) into test-artifacts,
    and returns chart_problems for every chart plus any exception or error element shown."""
    problems = []
    charts = page.locator(CHART)
    charts.nth(5).wait_for(state="attached")  # the script run has ended; the charts mount after it
    assert charts.count() >= 6, f"{state}: {charts.count()} plotly charts on /compare"
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        chart.locator("svg.main-svg").first.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(300)
        chart.screenshot(path=str(ARTIFACTS / f"compare-{state}-chart{i}.png"))
        problems += chart_problems(chart, f"{state} chart {i}", DASHBOARD_VIEWPORT["width"])
    whole_page_screenshot(page, f"compare-{state}-1400")
    errors = page.locator(f'{EXCEPTION}, [data-testid="stAlertContentError"]')
    problems += [f"{state}: error shown: {t[:300]}" for t in errors.all_inner_texts()]
    return problems


def pick_every_model(page):
    """Picks every model with the picker's own "Select all" option."""
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models in the figures")
    picker.locator("input").click()
    page.locator('[role="listbox"] [role="option"]').filter(has_text="Select all").click()
    wait_idle(page)
    page.keyboard.press("Escape")
    wait_idle(page)


def picked_models(page) -> list:
    picker = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models in the figures")
    return picker.locator("[data-tag] [title]").all_inner_texts()


def whole_page_screenshot(page, name):
    """The whole page: Streamlit scrolls inside its app view, so the viewport is made as tall as that
    content for the shot (a full_page screenshot alone would show one screenful)."""
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stAppViewContainer"], [data-testid="stMain"], section.main')].map(e => e.scrollHeight), 0)""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height))})
    try:
        screenshot(page, name)
    finally:
        page.set_viewport_size(size)


def scatter_points(names) -> list:
    """Of `names`, those the accuracy-vs-latency scatter places as it opens (int8 build, its first dataset)."""
    from fer_core.app import compare
    cards = compare.load_cards()
    dataset = compare.default_dataset(cards)
    return [c["name"] for c in cards if c["name"] in names and compare.speed_point(c, dataset)]


def test_dashboard_reads_at_1400_px_with_the_default_and_with_every_model(browser, app):
    """Issue 22's mark: the dashboard with all shipped cards, no overlapping labels, every chart readable at
    1400 px wide; for the preselected models and for every model picked. Screenshots: test-artifacts/browser/
    compare-{default,all}-1400.png and one per chart."""
    context = browser.new_context(viewport=DASHBOARD_VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = context.new_page()
        open_page(page, app, "compare")
        expect_page(page, "Model comparison")
        problems = dashboard_problems(page, "default")
        default_picked = picked_models(page)
        pick_every_model(page)
        every = picked_models(page)
        assert len(every) > len(default_picked) >= 1, f"picked by default {default_picked}, after Select all {every}"
        problems += dashboard_problems(page, "all")
        scatter = page.locator(CHART).filter(has=page.locator("g.xtick")).first
        labels = scatter.locator(CHART_TEXT["label"] + ", " + CHART_TEXT["annotation"]).all_text_contents()
        assert sorted(labels) == sorted(scatter_points(every)), f"accuracy-vs-latency labels {labels}, picked {every}"
    finally:
        context.close()
    assert not problems, "\n".join(problems)
