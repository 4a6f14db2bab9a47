"""Training augmentation on whole batches, on whatever device the batch is on.

One affine warp per face does the padded random crop (a shift of up to SHIFT px), the rotation,
a small zoom and the horizontal flip; random erasing then blanks a rectangle. The random numbers
come from a CPU generator, so a seed gives the same augmentation on CPU and GPU. `mix` adds
Mixup or CutMix across the batch when training asks for it (`train --mixup/--cutmix`).
"""
import math

import numpy as np
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


def augment(x: torch.Tensor, g: torch.Generator, shift: float = SHIFT, zoom: float = ZOOM,
            rotate: float = ROTATE) -> torch.Tensor:
    """x: normalised float [N, C, H, W] -> augmented copy (0 = the mean grey fills the gaps); the C
    channels of a face share its warp and erasing. `shift` (px), `zoom` (share of the scale: above 1
    a tighter crop, below a looser one) and `rotate` (degrees either way, in-plane) set the warp's
    ranges (`train --aug-shift/--aug-zoom/--aug-rotate`)."""
    if shift < 0 or not 0 <= zoom < 1 or not 0 <= rotate <= 180:
        raise ValueError(f"shift must be >= 0 px, zoom in [0, 1) and rotate in [0, 180] degrees, "
                         f"got {shift}, {zoom} and {rotate}")
    n, _, h, w = x.shape
    angle = _uniform(n, -rotate, rotate, g) * math.pi / 180
    scale = _uniform(n, 1 - zoom, 1 + zoom, g)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    tx, ty = _uniform(n, -shift, shift, g) * 2 / w, _uniform(n, -shift, shift, g) * 2 / h
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


def mix(x: torch.Tensor, g: torch.Generator, mixup: float = 0.0, cutmix: float = 0.0):
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) across a batch: each face is blended
    with, or gets a rectangle pasted from, the face at `partner[i]`. Returns (mixed, partner, lam),
    partner on x's device; train on lam * loss(labels) + (1 - lam) * loss(labels[partner]).
    The mixing weight lam is drawn from Beta(alpha, alpha), one per batch; CutMix sets it to the
    share of the face left uncovered.
    With both alphas above 0 each batch picks one of the two at random."""
    if mixup < 0 or cutmix < 0 or mixup == cutmix == 0:
        raise ValueError(f"mix needs mixup or cutmix above 0, got mixup={mixup}, cutmix={cutmix}")
    n, _, h, w = x.shape
    partner = torch.randperm(n, generator=g).to(x.device)
    use_cutmix = cutmix > 0 and (mixup == 0 or torch.rand(1, generator=g).item() < 0.5)
    lam = _beta(cutmix if use_cutmix else mixup, g)
    other = x[partner]
    if not use_cutmix:
        return lam * x + (1 - lam) * other, partner, lam
    side = math.sqrt(1 - lam)
    cy, cx = (torch.rand(2, generator=g) * torch.tensor([h, w])).tolist()
    y0, y1 = int(max(0, cy - side * h / 2)), int(min(h, cy + side * h / 2))
    x0, x1 = int(max(0, cx - side * w / 2)), int(min(w, cx + side * w / 2))
    out = x.clone()
    out[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
    return out, partner, 1 - (y1 - y0) * (x1 - x0) / (h * w)


def _beta(alpha, g) -> float:
    """One draw from Beta(alpha, alpha), seeded from the torch generator (torch's Beta takes none)."""
    seed = int(torch.randint(2 ** 62, (1,), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
