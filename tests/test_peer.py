"""The OpenCV zoo peer (fer_core/models/peer.py): its checks and alignment here, and on real photos when the shared
model file is given (env FER_PEER_MODEL, set by .ci/run)."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_core.models import peer
from fer_core.data.emotions import EMOTIONS
from fer_core.errors import WeightsError
from helpers_images import astronaut_bgr, yunet_model

PEER = Path(os.environ.get("FER_PEER_MODEL", "/nonexistent"))
needs_peer = pytest.mark.skipif(not PEER.is_file() or yunet_model() is None,
                                reason="set FER_PEER_MODEL (OpenCV zoo's FER .onnx) and FER_YUNET_MODEL")


def test_a_file_that_is_not_the_zoo_model_is_refused(tmp_path):
    fake = tmp_path / "fer.onnx"
    fake.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="is not OpenCV zoo's facial expression model"):
        peer.ZooFER(fake)
    with pytest.raises(WeightsError, match="not found"):
        peer.ZooFER(tmp_path / "missing.onnx")


def test_landmarks_on_the_template_give_the_template_crop():
    img = cv2.resize(astronaut_bgr(), (112, 112), interpolation=cv2.INTER_AREA)
    assert np.abs(peer.align(img, peer.TEMPLATE).astype(int) - img).mean() < 1
    big = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)
    swapped = (peer.TEMPLATE * 2)[[1, 0, 2, 4, 3]]  # YuNet's own order: the pairs either way round
    assert np.abs(peer.align(big, swapped).astype(int) - img).mean() < 6


def test_outputs_are_mapped_to_our_emotion_order():
    assert [peer.ORDER[i] for i in [peer.ORDER.index(e) for e in EMOTIONS]] == list(EMOTIONS)


@needs_peer
def test_the_zoo_model_reads_the_smiling_astronaut_as_happy():
    img = astronaut_bgr()
    points = peer.LandmarkDetector(yunet_model()).largest(img)
    assert points is not None and points.shape == (5, 2)
    probs = peer.ZooFER(PEER).probabilities(img, points)
    assert probs.shape == (7,) and probs.sum() == pytest.approx(1, abs=1e-5)
    assert EMOTIONS[int(probs.argmax())] == "happy"
