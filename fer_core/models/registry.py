"""Model registry, in the style of timm/torchvision: `create_model(name)`, `list_models()`.

Every model takes 1x48x48 grey faces and returns logits over EMOTIONS. The torchvision
architectures get stems adapted to 48 px (3x3 stride-1 first convolution, no early max-pool),
so their feature maps keep enough resolution.
"""
import copy
import logging
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..data.emotions import EMOTIONS
from ..errors import FerError

log = logging.getLogger(__name__)
_REGISTRY = {}


def register(fn):
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = len(EMOTIONS), pretrained: bool = False, **kwargs) -> nn.Module:
    if name not in _REGISTRY:  # FerError: a ValueError that the CLI reports without a traceback
        raise FerError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    model = _REGISTRY[name](num_classes=num_classes, **kwargs)
    if pretrained:
        load_imagenet_weights(model, name)
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` for inference, in which every BatchNorm2d that directly follows a
    Conv2d inside an nn.Sequential is folded into that convolution: the same outputs (to float rounding)
    from fewer layers, which matters at batch 1 on a CPU. `model` itself is left as it was."""
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a], seq._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return model


def for_inference(model: nn.Module) -> nn.Module:
    """The copy of `model` that inference runs: BatchNorm folded into the convolutions and the weights in
    channels-last layout, which oneDNN's CPU convolutions prefer (measured here: vgg13_s 2.8 -> 2.1 ms per
    face at batch 1 on one thread, mini_xception 1.15 -> 0.73 ms). The outputs stay the same."""
    return fuse_conv_bn(model).to(memory_format=torch.channels_last)


def conv_bn(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@register
def cnn(num_classes=7, widths=(32, 64, 128, 256), dropout=0.3):
    """The custom baseline: 4 blocks of conv-BN-ReLU + max-pool, then a small MLP head (~1M params)."""
    layers, cin = [], 1
    for w in widths:
        layers += [conv_bn(cin, w), nn.MaxPool2d(2), nn.Dropout(dropout / 2)]
        cin = w
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * 3 * 3, 256), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(256, num_classes))


class _XceptionBlock(nn.Module):
    """Two depthwise-separable convs + max-pool, with a strided 1x1 residual (mini-Xception module)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
        self.body = nn.Sequential(
            nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False), nn.Conv2d(cout, cout, 1, bias=False),
            nn.BatchNorm2d(cout), nn.MaxPool2d(3, 2, 1))

    def forward(self, x):
        return self.body(x) + self.residual(x)


@register
def mini_xception(num_classes=7, widths=(16, 32, 64, 128)):
    """Arriaga et al. 2017: residual depthwise-separable blocks, conv head + global pooling (~60k params)."""
    blocks, cin = [], 8
    for w in widths:
        blocks.append(_XceptionBlock(cin, w))
        cin = w
    return nn.Sequential(conv_bn(1, 8), conv_bn(8, 8), *blocks, nn.Conv2d(cin, num_classes, 3, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


@register
def vgg13(num_classes=7, widths=(64, 128, 256, 512), hidden=512, dropout=0.4):
    """VGG13-style: 4 stages of two 3x3 conv-BN-ReLU + max-pool (48 -> 3 px), then a 2-layer head."""
    layers, cin = [], 1
    for w in widths:
        layers += [conv_bn(cin, w), conv_bn(w, w), nn.MaxPool2d(2)]
        cin = w
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * 3 * 3, hidden),
                         nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


@register
def vgg13_s(num_classes=7):
    """VGG13-style at half width (1.76M params, a quarter of the compute): trainable on a laptop CPU."""
    return vgg13(num_classes, widths=(32, 64, 128, 256), hidden=256)


@register
def vgg13_t(num_classes=7):
    """vgg13_s thinned for AVX2 CPUs (half the compute): 16 channels at 48 px, three quarters of its width after."""
    return vgg13(num_classes, widths=(16, 48, 96, 192), hidden=256)


def _grey_stem(conv: nn.Conv2d, out_channels=None, stride=1) -> nn.Conv2d:
    return nn.Conv2d(1, out_channels or conv.out_channels, 3, stride, 1, bias=conv.bias is not None)


@register
def resnet18(num_classes=7):
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1, m.maxpool = _grey_stem(m.conv1), nn.Identity()
    return m


@register
def mobilenet_v2(num_classes=7, dropout=0.2):
    m = torchvision.models.mobilenet_v2(num_classes=num_classes, dropout=dropout)
    m.features[0][0] = _grey_stem(m.features[0][0])
    return m


@register
def shufflenet_v2(num_classes=7):
    m = torchvision.models.shufflenet_v2_x1_0(num_classes=num_classes)
    m.conv1[0], m.maxpool = _grey_stem(m.conv1[0]), nn.Identity()
    return m


@register
def squeezenet(num_classes=7):
    m = torchvision.models.squeezenet1_0(num_classes=num_classes)
    m.features[0] = nn.Conv2d(1, 96, 3, 1, 1)
    return m


# torchvision weights usable as a starting point, when already in the user's torch cache.
_IMAGENET = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "mobilenet_v2": torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
    "shufflenet_v2": torchvision.models.ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1,
    "squeezenet": torchvision.models.SqueezeNet1_0_Weights.IMAGENET1K_V1,
}


def imagenet_weights_file(name: str) -> Path:
    url = _IMAGENET[name].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_imagenet_weights(model: nn.Module, name: str):
    """Copy torchvision's ImageNet weights from the local torch cache (never downloads).

    RGB stem kernels are summed to one grey channel; tensors whose shape differs from ours
    (the 3x3 stem that replaced a 7x7 one, the 7-class head) stay as initialised.
    """
    if name not in _IMAGENET:
        raise FerError(f"--pretrained: {name} has no ImageNet weights; only {', '.join(sorted(_IMAGENET))} do")
    path = imagenet_weights_file(name)
    if not path.exists():
        raise FileNotFoundError(
            f"--pretrained: ImageNet weights for {name} are not in the torch cache ({path}). "
            f"This tool never downloads them; fetch {_IMAGENET[name].url} into that folder on a machine "
            "with internet, or train from scratch without --pretrained.")
    source = torch.load(path, map_location="cpu", weights_only=True)
    own, loaded, skipped = model.state_dict(), 0, []
    for key, value in source.items():
        if key in own and value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)  # RGB -> grey
        if key in own and own[key].shape == value.shape:
            own[key], loaded = value, loaded + 1
        else:
            skipped.append(key)
    model.load_state_dict(own)
    log.warning("--pretrained: loaded %d ImageNet tensors for %s from %s; kept %d as initialised: %s",
                loaded, name, path, len(skipped), ", ".join(skipped))
