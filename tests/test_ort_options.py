"""fer_core.ort_options, the threading of the app's ONNX Runtime sessions: a classifier called as the webcam calls it
(a frame every few tens of milliseconds) and YuNet leave no thread busy-waiting between calls, an ensemble's
members do not spin at all, and a session spinning without bound (ONNX Runtime's default, the control) does burn
the gaps: what the bound is for."""
import time

import numpy as np
import pytest

from fer_core import ort_options
from fer_core.data.faces import YuNetDetector
from fer_core.inference import int8_runtime
from fer_core.models.cards import find_card

try:
    from helpers_images import astronaut_bgr, yunet_model
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr, yunet_model

GAP_S = 0.025  # between calls: a little less than a 30-fps camera's frame interval
CALLS = 20
two_cpus = pytest.mark.skipif(ort_options.usable_cpus() < 2, reason="spinning needs a pool thread: 2 CPUs or more")


def cpu_ms_per_call(call) -> float:
    """Process CPU time (all threads) per call of `call`, with GAP_S of sleep after each."""
    for _ in range(5):
        call()
    start = time.process_time()
    for _ in range(CALLS):
        call()
        time.sleep(GAP_S)
    return (time.process_time() - start) * 1000 / CALLS


def default_int8_file():
    return int8_runtime.int8_path(find_card("vgg13_s_wild4"))


def test_the_options_bound_spinning_or_turn_it_off():
    bounded = ort_options.session_options(2)
    assert bounded.intra_op_num_threads == 2 and bounded.inter_op_num_threads == 1
    assert bounded.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert bounded.get_session_config_entry("session.intra_op.spin_duration_us") == str(ort_options.SPIN_US)
    off = ort_options.session_options(2, 0)
    assert off.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@two_cpus
def test_a_classifier_called_like_the_webcam_does_not_spin_between_calls():
    import onnxruntime as ort
    face = np.random.default_rng(0).standard_normal((1, 1, 48, 48)).astype(np.float32)
    net = int8_runtime.Int8Net(default_int8_file(), threads=2)
    ours = cpu_ms_per_call(lambda: net(face))
    unbounded = ort.SessionOptions()  # the control: ONNX Runtime's default spinning, 2 threads
    unbounded.intra_op_num_threads = 2
    session = ort.InferenceSession(str(default_int8_file()), unbounded, providers=["CPUExecutionProvider"])
    theirs = cpu_ms_per_call(lambda: session.run(None, {int8_runtime.INPUT: face}))
    # one call is about 1-3 ms of CPU on 2 threads; spinning through the gaps costs about GAP_S of CPU per call
    assert ours < 10, f"{ours:.1f} ms of CPU per call: a thread busy-waits between calls"
    assert theirs > 15, f"the control burnt only {theirs:.1f} ms per call: it no longer shows what the bound is for"


@two_cpus
@pytest.mark.skipif(yunet_model() is None, reason="YuNet's model is not available (FER_YUNET_MODEL)")
def test_yunet_called_like_the_webcam_does_not_spin_between_calls():
    detector = YuNetDetector(yunet_model())
    frame = np.ascontiguousarray(astronaut_bgr()[::2, ::2][:240, :320])  # the webcam's detection copy's size
    assert len(detector.detect(frame)) == 1
    used = cpu_ms_per_call(lambda: detector.detect(frame))
    assert used < 10, f"{used:.1f} ms of CPU per detection: a thread busy-waits between calls"


def test_an_ensembles_members_do_not_spin():
    net = int8_runtime.load(find_card("ensemble"))
    assert len(net.members) >= 2
    for member in net.members:
        options = member.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
