"""Streamlit glue shared by the pages: the sidebar's model and detector choice, and cached recognizers.

Pages call `recognizer()` for the EmotionRecognizer the user picked; it is built once per
(model, detector) pair by `st.cache_resource`, on first use, never at import.
"""
import sys
import time

import streamlit as st

from fer_core import FerError
from fer_core.data.detectors import DETECTORS
from fer_core.models.cards import (default_name, healthy_default, read_cards, weights_dir, weights_hashed,
                                   weights_problems)

DETECTOR_HELP = "auto: YuNet when its model is available, else OpenCV's Haar cascade"
# Before a fresh server first imports the model's code: long enough for the browser to fetch the JavaScript of the
# widgets just sent (the same Python process serves it), which the imports and the model's load would hold up behind
# the GIL.
FIRST_IMPORT_PAUSE_S = 0.3


@st.cache_resource(show_spinner="Loading the model…")
def _recognizer(model, detector):
    from fer_core import EmotionRecognizer
    return EmotionRecognizer(model=model, detector=detector)


@st.cache_data(ttl=30, show_spinner=False)
def _models(directory):
    """(card names, name to preselect, {name: why its weights cannot load}, whether every model was checked) of
    the weights folder `directory`, re-checked every 30 s. A fresh server has hashed no weights yet: it checks
    only the default's (2 MB rather than all 150) before the page, and `check_all_weights` the rest after it."""
    by_name, cards = _folder(directory)
    names = [c["name"] for c in cards]
    first = [c for c in cards if c["name"] == default_name(directory)]
    if first and not weights_hashed(cards, directory, by_name):
        default, problems = healthy_default(first, directory, by_name)
        if default is not None:
            return names, default, problems, False
    return names, *healthy_default(cards, directory, by_name), True  # a broken default: choosing needs them all


def _folder(directory):
    """({name: card} of the weights folder, the shipped ones: the others only the dashboard compares)."""
    by_name = {c["name"]: c for c in read_cards(directory)}
    return by_name, [c for c in by_name.values() if not c.get("not_shipped")]


def sidebar():
    """Model and detector pickers, shared by every page through st.session_state. Models whose weights
    are missing or corrupt are named with the reason, and the others stay usable. Returns the container
    of those warnings, for `check_all_weights` (None when no model can be picked)."""
    names, default, problems, _ = _models(str(weights_dir()))
    if not names:
        st.sidebar.error("No models found in weights/: the app needs the shipped weights (see the README).")
        return None
    warnings = st.sidebar.container()
    for name, problem in problems.items():
        _warn(warnings, name, problem)
    if default is None:
        st.sidebar.error("No model has intact weights: restore weights/ from the repository.")
        return None
    if st.session_state.get("model") not in names:
        st.session_state["model"] = default
    st.sidebar.selectbox("Model", names, key="model", format_func=lambda n: _model_label(n, default, problems))
    st.session_state.setdefault("detector", DETECTORS[0])
    st.sidebar.selectbox("Face detector", DETECTORS, key="detector", help=DETECTOR_HELP)
    return warnings


def check_all_weights(warnings):
    """After the page, on a fresh server's first run: hash the weights `sidebar` took on trust and name the
    broken ones in its `warnings` container (the model menu marks them from the next run on)."""
    directory = str(weights_dir())
    _, _, shown, checked = _models(directory)
    if checked or warnings is None:
        return
    by_name, cards = _folder(directory)
    problems = weights_problems(cards, directory, by_name)
    _models.clear()
    for name, problem in problems.items():
        if name not in shown:
            _warn(warnings, name, problem)


def _warn(container, name, problem):
    container.warning(f"Model **{name}** is unavailable: {problem}", icon=":material/broken_image:")


def _model_label(name, default, problems):
    if name in problems:
        return f"{name} (unavailable)"
    return f"{name} (default)" if name == default else name


def selection():
    """(model name or None for the default, detector name) as picked in the sidebar."""
    return st.session_state.get("model"), st.session_state.get("detector", DETECTORS[0])


def before_first_heavy_import():
    """Call with the page's first elements sent and before the model's imports: on a fresh server (its recognizer
    module not loaded yet) a FIRST_IMPORT_PAUSE_S pause lets the browser draw them. Measured on the upload page
    (2 cores, 3 fresh servers each) when that import was PyTorch's: the uploader showed 0.8 s after the title
    without it, 0.0-0.2 s with it, and the model was ready no later."""
    if "fer_core.inference.recognizer" not in sys.modules:
        time.sleep(FIRST_IMPORT_PAUSE_S)


def recognizer():
    """The EmotionRecognizer for the sidebar's choice, or None after showing why it cannot be built."""
    try:
        return _recognizer(*selection())
    except FerError as e:
        st.error(f"Cannot load the model: {e}")
        return None
