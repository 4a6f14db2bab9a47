"""fer_core.inference.gradcam: the target layer of every registered architecture, maps' shape and range, that the
maps depend on the class and point at what drives the decision on a real face, the overlay, and that
the shared model is left as it was (no hooks, no gradients, same flags), also from many threads."""
import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn as nn

from fer_core import EMOTIONS, EmotionRecognizer
from fer_core.inference.gradcam import grad_cam, overlay, target_layer
from fer_core.models.registry import create_model, list_models
from fer_core.data.preprocess import FACE_SIZE, crop_face

try:
    from helpers_images import astronaut_bgr
except ImportError:  # tests/ imported as a package
    from tests.helpers_images import astronaut_bgr

HAPPY = EMOTIONS.index("happy")
EXPECTED_LAYERS = {  # the last convolution whose output is still wider than 1x1 on a 48x48 face
    "cnn": "9.0", "mini_xception": "6", "vgg13": "10.0", "vgg13_s": "10.0", "vgg13_t": "10.0",
    "resnet18": "layer4.1.conv2",
    "mobilenet_v2": "features.18.0", "shufflenet_v2": "conv5.0", "squeezenet": "classifier.1",
}


@pytest.fixture(scope="module")
def astronaut_face():
    """The astronaut's face as the recognizer crops it (Haar box), 48x48 uint8."""
    photo = astronaut_bgr()
    box, = EmotionRecognizer("mini_xception", detector="haar").detect(photo)
    return crop_face(photo, box)


@pytest.fixture(scope="module", params=["mini_xception", "cnn"])
def trained(request):
    """A shipped, trained model (EmotionRecognizer's, in eval mode)."""
    return EmotionRecognizer(request.param, detector="haar")


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def check_map(heat):
    assert heat.shape == (FACE_SIZE, FACE_SIZE) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat.max() in (0.0, 1.0)  # scaled so the hottest point is 1 (or nothing is hot)


def test_expected_layers_cover_the_registry():
    assert sorted(EXPECTED_LAYERS) == list_models()


@pytest.mark.parametrize("arch", sorted(EXPECTED_LAYERS))
def test_every_architecture(arch, astronaut_face):
    torch.manual_seed(0)
    model = create_model(arch).eval()
    layer = target_layer(model)
    assert layer == EXPECTED_LAYERS[arch]
    assert isinstance(dict(model.named_modules())[layer], nn.Conv2d)
    heat = grad_cam(model, astronaut_face)
    check_map(heat)
    assert hooks(model) == 0
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not model.training


def test_predicted_class_is_the_default_target(trained, astronaut_face):
    predicted = int(trained.classify(astronaut_face)[0].argmax())
    assert predicted == HAPPY
    heat = grad_cam(trained.model, astronaut_face)
    check_map(heat)
    assert heat.max() == 1.0
    assert np.array_equal(heat, grad_cam(trained.model, astronaut_face, target="happy"))
    assert np.array_equal(heat, grad_cam(trained.model, astronaut_face, target=HAPPY))


def test_maps_differ_across_classes(trained, astronaut_face):
    maps = {e: grad_cam(trained.model, astronaut_face, target=e) for e in EMOTIONS}
    for heat in maps.values():
        check_map(heat)
    assert np.abs(maps["happy"] - maps["fear"]).max() > 0.5
    assert np.abs(maps["happy"] - maps["neutral"]).max() > 0.5
    distinct = {m.tobytes() for m in maps.values()}
    assert len(distinct) == len(EMOTIONS)


def test_heat_is_on_the_face_not_the_border(trained, astronaut_face):
    """The crop is the face plus a 10% margin: the decision comes from its middle, not the edges.
    (The retrained mini_xception's coarse 3x3 map also warms the forehead: its middle is 1.9x its border.)"""
    heat = grad_cam(trained.model, astronaut_face)
    peak_y, peak_x = np.unravel_index(heat.argmax(), heat.shape)
    assert 12 <= peak_y < 36 and 12 <= peak_x < 36
    centre = heat[12:36, 12:36].mean()
    ring = np.ones_like(heat, bool)
    ring[6:-6, 6:-6] = False
    assert centre > 1.5 * heat[ring].mean()


def test_hot_pixels_drive_the_decision(astronaut_face):
    """Greying out the 30% hottest pixels costs the cnn its 'happy'; the 30% coldest barely matter."""
    rec = EmotionRecognizer("cnn", detector="haar")
    heat = grad_cam(rec.model, astronaut_face)
    fill = int(astronaut_face.mean())
    hot, cold = astronaut_face.copy(), astronaut_face.copy()
    hot[heat >= np.quantile(heat, 0.7)] = fill
    cold[heat <= np.quantile(heat, 0.3)] = fill
    p_face, p_hot, p_cold = rec.classify(np.stack([astronaut_face, hot, cold]))[:, HAPPY]
    assert p_face > 0.9
    assert p_hot < p_face - 0.3
    assert p_cold > p_face - 0.1


def test_inference_mode_and_frozen_parameters(astronaut_face):
    rec = EmotionRecognizer("mini_xception", detector="haar")
    reference = grad_cam(rec.model, astronaut_face)
    with torch.inference_mode():
        assert np.array_equal(grad_cam(rec.model, astronaut_face), reference)
    frozen = copy.deepcopy(rec.model).requires_grad_(False)
    assert np.allclose(grad_cam(frozen, astronaut_face), reference, atol=1e-6)
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.slow
def test_thread_safe_with_a_shared_model(astronaut_face):
    """Grad-CAMs for different classes and plain classification, all at once on one model."""
    rec = EmotionRecognizer("mini_xception", detector="haar")
    expected = {e: grad_cam(rec.model, astronaut_face, target=e) for e in EMOTIONS}
    probs = rec.classify(astronaut_face)

    def job(i):
        if i % 3 == 2:
            return "classify", rec.classify(astronaut_face)
        e = EMOTIONS[i % len(EMOTIONS)]
        return e, grad_cam(rec.model, astronaut_face, target=e)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(job, range(42)))
    for what, value in results:
        assert np.allclose(value, probs if what == "classify" else expected[what], atol=1e-6), what
    assert hooks(rec.model) == 0
    assert all(p.grad is None for p in rec.model.parameters())


def test_bad_targets(astronaut_face):
    model = create_model("cnn").eval()
    with pytest.raises(ValueError, match="unknown emotion"):
        grad_cam(model, astronaut_face, target="joy")
    with pytest.raises(ValueError, match="outside"):
        grad_cam(model, astronaut_face, target=7)
    with pytest.raises(ValueError, match="uint8"):
        grad_cam(model, astronaut_face.astype(np.float32))
    assert hooks(model) == 0


def test_overlay_colours_hot_red_and_cold_blue():
    face = np.full((FACE_SIZE, FACE_SIZE), 100, np.uint8)
    heat = np.zeros((FACE_SIZE, FACE_SIZE), np.float32)
    heat[:, FACE_SIZE // 2:] = 1.0
    out = overlay(face, heat, alpha=0.5, size=96)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    # JET maps 0 to dark blue (BGR 128, 0, 0) and 1 to dark red (0, 0, 128), half over grey 100
    assert np.abs(out[:, :40].astype(int) - (114, 50, 50)).max() <= 1
    assert np.abs(out[:, 56:].astype(int) - (50, 50, 114)).max() <= 1
    assert (overlay(face, heat, alpha=0.0, size=96) == 100).all()  # alpha 0: just the grey face
