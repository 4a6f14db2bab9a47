"""Grad-CAM (Selvaraju et al. 2017): which parts of a 48x48 face drove the model's decision.

The map for class c weighs each channel of a convolution's output A by the spatial mean of
d(logit_c)/dA, sums the channels, keeps the positive part, and upsamples it to 48x48 in [0, 1].
`target_layer` picks the convolution for any registered architecture: the last Conv2d, in
execution order, whose output is still wider than one pixel.

Thread-safe with a model shared by other threads (EmotionRecognizer's): hooks are removed before
returning and only record calls from the thread that installed them, gradients are taken with
respect to the activations (the model's parameters are not touched), and the model stays in
eval mode.
"""
import threading
import weakref

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.emotions import EMOTIONS
from ..data.preprocess import FACE_SIZE, faces_to_tensor

_layers = weakref.WeakKeyDictionary()  # model -> its target layer's name
_layers_lock = threading.Lock()


class _Recorder:
    """Forward hooks that record (name, output) of modules, only for calls from the creating thread."""

    def __init__(self, modules: dict):
        self.thread = threading.get_ident()
        self.outputs = []
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name):
        def record(_module, _inputs, output):
            if threading.get_ident() == self.thread:
                self.outputs.append((name, output))
        return record

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def target_layer(model: nn.Module) -> str:
    """Name (as in model.named_modules()) of the last Conv2d whose output is wider than 1x1 on a 48x48 face."""
    with _layers_lock:
        if model in _layers:
            return _layers[model]
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    x = torch.zeros(1, 1, FACE_SIZE, FACE_SIZE, device=_device(model))
    with _Recorder(convs) as rec, torch.no_grad():
        model(x)
    spatial = [name for name, out in rec.outputs if min(out.shape[-2:]) > 1]
    if not spatial:
        raise ValueError(f"{type(model).__name__} has no convolution with a spatial output; Grad-CAM needs one")
    with _layers_lock:
        _layers[model] = spatial[-1]
    return spatial[-1]


def _class_index(target) -> int:
    if isinstance(target, str):
        if target not in EMOTIONS:
            raise ValueError(f"unknown emotion {target!r}; expected one of {', '.join(EMOTIONS)}")
        return EMOTIONS.index(target)
    index = int(target)
    if not 0 <= index < len(EMOTIONS):
        raise ValueError(f"class index {index} is outside 0..{len(EMOTIONS) - 1}")
    return index


def grad_cam(model: nn.Module, face: np.ndarray, target=None, layer: str = None) -> np.ndarray:
    """Grad-CAM of one 48x48 uint8 grey face (from crop_face) -> float32 [48, 48] in [0, 1].

    target: the class (EMOTIONS index or name); None for the model's prediction.
    layer: a module name from model.named_modules(); None picks `target_layer(model)`.
    An all-zero map means nothing in the face pushed the score up.
    """
    layer = layer or target_layer(model)
    module = dict(model.named_modules())[layer]
    with torch.inference_mode(False), torch.enable_grad(), _Recorder({layer: module}) as rec:
        x = faces_to_tensor(np.asarray(face)[None], _device(model))
        x.requires_grad_(True)  # puts the activations on the graph, whatever the parameters say
        logits = model(x)
        index = int(logits[0].argmax()) if target is None else _class_index(target)
        activation = rec.outputs[-1][1]
        grads, = torch.autograd.grad(logits[0, index], activation)
    return _heatmap(activation.detach(), grads)


def _heatmap(activation: torch.Tensor, grads: torch.Tensor) -> np.ndarray:
    """Channel weights = mean gradient; ReLU of the weighted sum, upsampled to 48x48 and scaled to [0, 1]."""
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True)).float()
    cam = F.interpolate(cam, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    cam = cam / peak if peak > 0 and np.isfinite(peak) else torch.zeros_like(cam)
    return cam.clamp_(0, 1).cpu().numpy().astype(np.float32)


def overlay(face: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, size: int = 192) -> np.ndarray:
    """The grey face with the heat map in colour on top (JET: blue cold, red hot) -> BGR uint8 [size, size, 3]."""
    face = cv2.resize(np.asarray(face, np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    heat = cv2.resize(np.asarray(heatmap, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    colored = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    grey = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(colored, alpha, grey, 1 - alpha, 0)
