"""Streamlit glue shared by the pages: the sidebar's model and detector choice, and cached recognizers.

Pages call `recognizer()` for the EmotionRecognizer the user picked; it is built once per
(model, detector) pair by `st.cache_resource`, on first use, never at import.
"""
import streamlit as st

from fer_core import FerError
from fer_core.cards import find_card, read_cards

DETECTORS = ("auto", "yunet", "haar")
DETECTOR_HELP = "auto: YuNet when its model is available, else OpenCV's Haar cascade"


@st.cache_resource(show_spinner="Loading the model…")
def _recognizer(model, detector):
    from fer_core import EmotionRecognizer
    return EmotionRecognizer(model=model, detector=detector)


def sidebar():
    """Model and detector pickers, shared by every page through st.session_state."""
    cards = read_cards()
    if not cards:
        st.sidebar.error("No models found in weights/: the app needs the shipped weights (see the README).")
        return
    names = [c["name"] for c in cards]
    try:
        default = find_card(None)["name"]
    except FerError:
        default = names[0]
    if st.session_state.get("model") not in names:
        st.session_state["model"] = default
    st.sidebar.selectbox("Model", names, key="model",
                         format_func=lambda n: f"{n} (default)" if n == default else n)
    st.session_state.setdefault("detector", DETECTORS[0])
    st.sidebar.selectbox("Face detector", DETECTORS, key="detector", help=DETECTOR_HELP)


def selection():
    """(model name or None for the default, detector name) as picked in the sidebar."""
    return st.session_state.get("model"), st.session_state.get("detector", DETECTORS[0])


def recognizer():
    """The EmotionRecognizer for the sidebar's choice, or None after showing why it cannot be built."""
    try:
        return _recognizer(*selection())
    except FerError as e:
        st.error(f"Cannot load the model: {e}")
        return None
