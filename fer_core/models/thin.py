"""Start a narrower VGG-style model from a wider trained one (`train --init`): structured channel pruning.

Each conv-BN-ReLU block of the narrower model keeps the source block's strongest output channels, ranked by
how much they can pass on: the L1 norm of the channel's kernel times its BatchNorm gain. The next block and
the classifier's first layer keep the inputs that belong to those channels. The copy loses accuracy at once
(much of it) and is meant to be fine-tuned, ideally distilled from the source (docs/speed.md).
"""
import torch
import torch.nn as nn

from ..errors import FerError


def _blocks(model: nn.Module) -> list:
    """The conv-BN-ReLU blocks of a VGG-style model, in order (see registry.conv_bn)."""
    return [m for m in model.children() if isinstance(m, nn.Sequential) and len(m) == 3
            and isinstance(m[0], nn.Conv2d) and isinstance(m[1], nn.BatchNorm2d)]


def _linears(model: nn.Module) -> list:
    return [m for m in model.children() if isinstance(m, nn.Linear)]


def problem(source: nn.Module, target: nn.Module):
    """Why `target` cannot be thinned from `source` (a message), or None when it can."""
    a, b = _blocks(source), _blocks(target)
    if not a or len(a) != len(b) or len(_linears(source)) != len(_linears(target)):
        return "the two models do not have the same VGG-style layers"
    for i, (x, y) in enumerate(zip(a, b)):
        if y[0].kernel_size != x[0].kernel_size:
            return f"block {i} has {y[0].kernel_size} kernels, the source's {x[0].kernel_size}"
        if y[0].out_channels > x[0].out_channels:
            return f"block {i} has {y[0].out_channels} channels, more than the source's {x[0].out_channels}"
    la, lb = _linears(source), _linears(target)
    if lb[0].out_features != la[0].out_features or lb[-1].weight.shape != la[-1].weight.shape:
        return "the classifiers differ in more than their input width"
    if la[0].in_features % a[-1][0].out_channels or lb[0].in_features % b[-1][0].out_channels:
        return "the classifier's input is not the last block's channels times a fixed map size"
    return None


def strongest(block: nn.Sequential, n: int) -> torch.Tensor:
    """Indices (ascending) of the `n` output channels of a conv-BN block with the largest L1 kernel norm times
    BatchNorm gain."""
    conv, bn = block[0], block[1]
    gain = bn.weight.detach().abs() / (bn.running_var + bn.eps).sqrt()
    score = gain * conv.weight.detach().abs().sum(dim=(1, 2, 3))
    return score.argsort(descending=True)[:n].sort().values


@torch.no_grad()
def thin(source: nn.Module, target: nn.Module) -> nn.Module:
    """Fill `target` (a narrower model of the same layout) from `source`'s strongest channels; returns it."""
    why = problem(source, target)
    if why:
        raise FerError(f"cannot thin: {why}")
    kept_in = torch.arange(1)  # grey input
    for x, y in zip(_blocks(source), _blocks(target)):
        kept = strongest(x, y[0].out_channels)
        y[0].weight.copy_(x[0].weight[kept][:, kept_in])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(y[1], name).copy_(getattr(x[1], name)[kept])
        kept_in = kept
    la, lb = _linears(source), _linears(target)
    area = la[0].in_features // _blocks(source)[-1][0].out_channels  # pixels of the last feature map
    columns = (kept_in[:, None] * area + torch.arange(area)).flatten()  # Flatten is channel-major
    lb[0].weight.copy_(la[0].weight[:, columns])
    lb[0].bias.copy_(la[0].bias)
    for x, y in zip(la[1:], lb[1:]):
        y.load_state_dict(x.state_dict())
    return target
