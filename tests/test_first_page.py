"""The first page of a fresh server shows its title and uploader before NumPy, OpenCV and PyTorch load (issue 21:
first page in <= 3 s): checked in a fresh interpreter running the app under Streamlit's AppTest. The 3 s themselves are
timed in Chromium against a fresh `streamlit run` by tests/test_browser.py (test_first_visit_of_a_fresh_server_...)."""
import pytest

try:
    from helpers_data import fresh_python_json
except ImportError:  # tests/ imported as a package
    from tests.helpers_data import fresh_python_json

PROBE = """
import json, sys
import streamlit as st
from streamlit.testing.v1 import AppTest

HEAVY = ("numpy", "cv2", "torch", "torchvision", "onnxruntime")
assert not [m for m in HEAVY if m in sys.modules], "Streamlit or AppTest now imports one: this probe cannot tell"
from fer_core.models import cards
hashed, sha256_file = [], cards.sha256_file
cards.sha256_file = lambda path: hashed.append(path.name) or sha256_file(path)
seen, hashed_before = {}, {}
def spy(name):
    real = getattr(st, name)
    def call(*a, **k):
        seen.setdefault(name, [m for m in HEAVY if m in sys.modules])
        hashed_before.setdefault(name, list(hashed))
        return real(*a, **k)
    setattr(st, name, call)
for name in ("title", "file_uploader", "spinner"):
    spy(name)
at = AppTest.from_file("app.py", default_timeout=240).run()
print(json.dumps({"seen": seen, "hashed_before": hashed_before, "hashed": hashed, "default": cards.default_name(),
                  "title": [t.value for t in at.title], "errors": [e.value for e in at.exception],
                  "after": [m for m in HEAVY if m in sys.modules]}))
"""


@pytest.mark.slow
def test_title_and_uploader_come_before_numpy_opencv_and_pytorch():
    r = fresh_python_json(PROBE)
    assert r["errors"] == [] and r["title"] == ["Upload & classify"]
    assert r["seen"]["title"] == [] and r["seen"]["file_uploader"] == []  # nothing heavy before the page shows
    # Then the model loads (behind a spinner), ready for the first upload: its int8 file, without PyTorch.
    assert r["after"] == ["numpy", "cv2", "onnxruntime"]
    # Of some 150 MB of weights, only the default's are hashed before the title; the rest after the page.
    assert r["hashed_before"]["title"] == [f"{r['default']}.pt"]
    weights = [name for name in r["hashed"] if name.endswith(".pt")]  # (loading the model hashes its int8 file)
    assert len(weights) == len(set(weights)) > 20
