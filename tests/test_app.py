"""The app's router and first page render without an exception (Streamlit's AppTest, no browser)."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent


def test_app_renders_upload_page():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Upload & classify"]
