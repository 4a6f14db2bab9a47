"""The first page of a fresh server shows its title and uploader before NumPy, OpenCV and PyTorch load (issue 21:
first page in <= 3 s): checked in a fresh interpreter running the app under Streamlit's AppTest. The 3 s themselves are
timed in Chromium against a fresh `streamlit run` by tests/test_browser.py (test_first_visit_of_a_fresh_server_...)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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
                  "torch_after": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_title_and_uploader_come_before_numpy_opencv_and_pytorch():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                              "FER_OFFLINE": "1", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["errors"] == [] and r["title"] == ["Upload & classify"]
    assert r["seen"]["title"] == [] and r["seen"]["file_uploader"] == []  # nothing heavy before the page shows
    assert r["torch_after"]  # then the model loads (behind a spinner), ready for the first upload
    # Of some 150 MB of weights, only the default's are hashed before the title; the rest after the page.
    assert r["hashed_before"]["title"] == [f"{r['default']}.pt"]
    weights = [name for name in r["hashed"] if name.endswith(".pt")]  # (loading the model hashes its int8 file)
    assert len(weights) == len(set(weights)) > 20
