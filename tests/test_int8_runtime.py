"""fer_core.inference.int8_runtime, the recognizer's int8 path without PyTorch: the same normalisation and TTA views
as the torch path, the same logits as `int8.Int8Model` through `evaluate.predict_logits` (single models and an
ensemble, on real faces), and a recognizer that classifies a real photo with PyTorch never imported."""
import os
import sys

import numpy as np
import pytest

from fer_core import EmotionRecognizer
from fer_core.data.preprocess import FACE_SIZE, crop_face, faces_to_tensor
from fer_core.inference import int8, int8_runtime
from fer_core.models.cards import find_card, read_cards
from fer_core.models.evaluate import TTA, predict_logits, softmax, tta_views

try:
    from helpers_data import fresh_python_json
    from helpers_images import astronaut_bgr
except ImportError:  # tests/ imported as a package
    from tests.helpers_data import fresh_python_json
    from tests.helpers_images import astronaut_bgr


@pytest.fixture(scope="module")
def faces():
    """Real faces: the astronaut's, shifted, scaled and mirrored into 24 different crops, and 8 random ones."""
    bgr = astronaut_bgr()
    box = (177, 67, 93, 93)  # her face in skimage's astronaut photo, as Haar finds it
    crops = [crop_face(bgr, (box[0] + dx, box[1] + dy, box[2] + dw, box[3] + dw))
             for dx in (-10, 0, 10) for dy in (-8, 8) for dw in (-12, 12)]
    crops += [c[:, ::-1] for c in crops]
    noise = np.random.default_rng(0).integers(0, 256, (8, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([np.stack(crops), noise]))


def test_the_views_are_the_torch_paths_views_bit_for_bit(faces):
    for tta in int8_runtime.TTA:
        ours = int8_runtime.views(faces, tta)
        theirs = [v.numpy() for v in tta_views(faces_to_tensor(faces), tta)]
        assert len(ours) == len(theirs) == (1 if tta == "none" else 2)
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(ours, theirs)), tta
    for tta in ("tencrop", "rotate"):
        with pytest.raises(ValueError, match="tta must be one of"):
            int8_runtime.views(faces, tta)


@pytest.mark.parametrize("name", ["vgg13_s_wild4", "ensemble3"])
def test_logits_match_the_torch_wrapper_through_evaluate(faces, name):
    """The recognizer's path and the evaluation path read the same file: equal logits (1e-4), and so do the
    recognizer's probabilities for every TTA, ten-crop included (through PyTorch)."""
    card = find_card(name)
    if int8_runtime.problem(card):
        pytest.skip(int8_runtime.problem(card))
    ours, theirs = int8_runtime.load(card), int8.load(card)
    assert isinstance(ours, int8_runtime.Int8Ensemble if card["arch"] == "ensemble" else int8_runtime.Int8Net)
    for tta in int8_runtime.TTA:
        a = int8_runtime.predict_logits(ours, faces, tta)
        b = predict_logits(theirs, faces, "cpu", tta=tta)
        assert a.shape == b.shape == (len(faces), 7) and a.dtype == np.float32
        assert np.abs(a - b).max() < 1e-4, (tta, float(np.abs(a - b).max()))
    assert int8_runtime.predict_logits(ours, faces[:0]).shape == (0, 7)
    rec = EmotionRecognizer(name, "haar")
    assert rec.backend_used == "int8"
    for tta in TTA:
        expected = softmax(predict_logits(theirs, faces, "cpu", tta=tta), float(card.get("temperature", 1.0)))
        assert np.abs(rec.classify(faces, tta=tta) - expected).max() < 1e-5, tta


def test_threads_follow_pytorch_where_loaded_else_the_environment_or_the_usable_cpus(monkeypatch):
    import torch
    assert int8_runtime.default_threads() == torch.get_num_threads()
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert int8_runtime.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert int8_runtime.default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert int8_runtime.default_threads() == 6


def test_softmax_matches_the_torch_one():
    logits = np.random.default_rng(1).normal(0, 4, (50, 7)).astype(np.float32)
    for t in (1.0, 1.7):
        p = int8_runtime.softmax(logits, t)
        assert np.allclose(p, softmax(logits, t), atol=1e-6) and np.allclose(p.sum(1), 1, atol=1e-6)


def test_the_default_model_is_intact_and_every_shipped_int8_build_loads():
    for card in read_cards():
        if card.get("not_shipped") or not card.get("int8"):
            continue
        assert int8_runtime.problem(card) is None, card["name"]
    assert EmotionRecognizer(detector="haar").backend_used == "int8"


PROBE = """
import json, sys
from skimage import data
from fer_core import EmotionRecognizer
rec = EmotionRecognizer(detector="haar")
faces = rec.predict(data.astronaut()[:, :, ::-1].copy(), tta="flip")
before = "torch" in sys.modules
rec.model  # Grad-CAM's fp32 model: PyTorch now
print(json.dumps({"backend": rec.backend_used, "labels": [f.label for f in faces], "torch_before": before,
                  "torch_after": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_the_recognizer_classifies_a_photo_without_importing_pytorch():
    assert fresh_python_json(PROBE) == {"backend": "int8", "labels": ["happy"], "torch_before": False, "torch_after": True}
