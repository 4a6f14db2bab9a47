"""The first page of a fresh server shows its title and uploader before PyTorch loads (issue 21: first page
in <= 3 s): checked in a fresh interpreter running the app under Streamlit's AppTest. The 3 s themselves are
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

seen = {}
def spy(name):
    real = getattr(st, name)
    def call(*a, **k):
        seen.setdefault(name, [m for m in ("torch", "torchvision", "onnxruntime") if m in sys.modules])
        return real(*a, **k)
    setattr(st, name, call)
for name in ("title", "file_uploader", "spinner"):
    spy(name)
at = AppTest.from_file("app.py", default_timeout=240).run()
print(json.dumps({"seen": seen, "title": [t.value for t in at.title], "errors": [e.value for e in at.exception],
                  "torch_after": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_title_and_uploader_come_before_pytorch():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                              "FER_OFFLINE": "1", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["errors"] == [] and r["title"] == ["Upload & classify"]
    assert r["seen"]["title"] == [] and r["seen"]["file_uploader"] == []  # nothing heavy before the page shows
    assert r["torch_after"]  # then the model loads (behind a spinner), ready for the first upload
