"""Training augmentation on whole batches, on whatever device the batch is on.

One affine warp per face does the padded random crop (a shift of up to SHIFT px), the rotation,
a small zoom and the horizontal flip; random erasing then blanks a rectangle. The random numbers
come from a CPU generator, so a seed gives the same augmentation on CPU and GPU.
"""
import math

import torch
import torch.nn.functional as F

SHIFT = 4  # px, like RandomCrop(48, padding=4)
ROTATE = 10  # degrees, either way
ZOOM = 0.1  # scale in [1 - ZOOM, 1 + ZOOM]
ERASE_P = 0.25  # probability of erasing one rectangle
ERASE_AREA = (0.02, 0.2)  # its share of the face
ERASE_RATIO = (0.3, 3.3)  # its aspect ratio


def _uniform(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """x: normalised float [N, 1, H, W] -> augmented copy (0 = the mean grey fills the gaps)."""
    n, _, h, w = x.shape
    angle = _uniform(n, -ROTATE, ROTATE, g) * math.pi / 180
    scale = _uniform(n, 1 - ZOOM, 1 + ZOOM, g)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    tx, ty = _uniform(n, -SHIFT, SHIFT, g) * 2 / w, _uniform(n, -SHIFT, SHIFT, g) * 2 / h
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out * _erase_mask(n, h, w, g).to(x.device, x.dtype)


def _erase_mask(n, h, w, g):
    area = _uniform(n, *ERASE_AREA, g) * h * w
    ratio = torch.exp(_uniform(n, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1]), g))
    eh = (area * ratio).sqrt().clamp(max=h)
    ew = (area / ratio).sqrt().clamp(max=w)
    y0 = torch.rand(n, generator=g) * (h - eh)
    x0 = torch.rand(n, generator=g) * (w - ew)
    on = torch.rand(n, generator=g) < ERASE_P
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
              & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)))
    return (~(inside & on.view(n, 1, 1))).float().unsqueeze(1)
