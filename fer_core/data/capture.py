"""What a real camera does to a face: blur, low resolution, JPEG, light, sensor noise, occlusion.

Each corruption is a function of uint8 faces [N, 48, 48] (a torch tensor) and one severity per face,
returning new uint8 faces. Training draws random severities for a random share of faces
(`train --aug-blur P ...`, see `degrade`); the robustness benchmark (robustness.py) applies each at
three fixed severities. Geometry (in-plane rotation, tighter or looser framing) lives in augment.py
for training and in robustness.py's `reframe` for the benchmark.
"""
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# Ranges training draws severities from (uniform unless noted); the benchmark's fixed levels sit inside them.
BLUR_SIGMA = (0.4, 1.8)  # Gaussian blur, px at 48x48 (a face about 48 px wide, out of focus or moving)
LOWRES_FACTOR = (1.5, 4.5)  # downscale by this, then back up: a face 32 to 11 px wide in the original picture
JPEG_QUALITY = (8, 50)  # OpenCV's JPEG quality
GAMMA = 2.5  # gamma drawn log-uniformly in [1/GAMMA, GAMMA] (> 1 darkens)
CONTRAST = (0.45, 1.25)  # scale of the difference from mid-grey
BRIGHTNESS = (-45, 30)  # grey levels added
NOISE_SIGMA = (3, 24)  # Gaussian sensor noise, grey levels
OCCLUDE_AREA = (0.08, 0.3)  # share of the face a hand, a cup or hair covers


def _uniform(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _as_float(faces):
    return faces.float().unsqueeze(1)


def _as_uint8(x):
    return x.squeeze(1).round().clamp(0, 255).to(torch.uint8)


def blur(faces: torch.Tensor, sigma) -> torch.Tensor:
    """Gaussian blur of each face with its own sigma (px)."""
    x, out = _as_float(faces), []
    for face, s in zip(x, torch.as_tensor(sigma, dtype=torch.float32).expand(len(x))):
        r = max(1, int(math.ceil(3 * float(s))))
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-t ** 2 / (2 * float(s) ** 2))
        k = k / k.sum()
        f = F.pad(face[None], (r, r, r, r), mode="replicate")
        f = F.conv2d(F.conv2d(f, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
        out.append(f[0])
    return _as_uint8(torch.stack(out))


def lowres(faces: torch.Tensor, factor) -> torch.Tensor:
    """Each face shrunk by its `factor` (area averaging) and scaled back up (bilinear), as a small face is."""
    x, out = _as_float(faces), []
    side = x.shape[-1]
    for face, f in zip(x, torch.as_tensor(factor, dtype=torch.float32).expand(len(x))):
        small = max(4, int(round(side / float(f))))
        s = F.interpolate(face[None], size=(small, small), mode="area")
        out.append(F.interpolate(s, size=(side, side), mode="bilinear", align_corners=False)[0])
    return _as_uint8(torch.stack(out))


def jpeg(faces: torch.Tensor, quality) -> torch.Tensor:
    """Each face through a JPEG encoder at its own quality (1-100)."""
    out = []
    for face, q in zip(faces.numpy(), torch.as_tensor(quality).expand(len(faces))):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(face), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:
            raise RuntimeError("OpenCV could not encode a face as JPEG")
        out.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    return torch.from_numpy(np.stack(out)) if out else faces.clone()


def light(faces: torch.Tensor, gamma, contrast=1.0, brightness=0.0) -> torch.Tensor:
    """Gamma (> 1 darkens), then contrast around mid-grey and a brightness offset, per face."""
    n = len(faces)
    col = lambda v: torch.as_tensor(v, dtype=torch.float32).expand(n).view(n, 1, 1, 1)  # noqa: E731
    x = 255 * (_as_float(faces) / 255) ** col(gamma)
    return _as_uint8((x - 128) * col(contrast) + 128 + col(brightness))


def noise(faces: torch.Tensor, sigma, g: torch.Generator) -> torch.Tensor:
    """Gaussian sensor noise with its own sigma (grey levels) per face."""
    n = len(faces)
    s = torch.as_tensor(sigma, dtype=torch.float32).expand(n).view(n, 1, 1, 1)
    x = _as_float(faces)
    return _as_uint8(x + s * torch.randn(x.shape, generator=g))


def occlude(faces: torch.Tensor, area, g: torch.Generator) -> torch.Tensor:
    """A flat rectangle of a random grey (a hand, a cup, hair) over `area` of each face, placed at random."""
    n, h, w = faces.shape
    area = torch.as_tensor(area, dtype=torch.float32).expand(n)
    ratio = torch.exp(_uniform(n, math.log(0.5), math.log(2.0), g))
    eh = (area * h * w * ratio).sqrt().clamp(1, h)
    ew = (area * h * w / ratio).sqrt().clamp(1, w)
    y0, x0 = torch.rand(n, generator=g) * (h - eh), torch.rand(n, generator=g) * (w - ew)
    grey = torch.randint(0, 256, (n,), generator=g).to(torch.uint8)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
              & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)))
    return torch.where(inside, grey.view(n, 1, 1), faces)


CORRUPTIONS = ("blur", "lowres", "jpeg", "light", "noise", "occlude")  # the order `degrade` applies them in


def _draw(kind, n, g):
    """Random severities of one corruption for n faces (the arguments after the faces)."""
    if kind == "blur":
        return (_uniform(n, *BLUR_SIGMA, g),)
    if kind == "lowres":
        return (_uniform(n, *LOWRES_FACTOR, g),)
    if kind == "jpeg":
        return (_uniform(n, *JPEG_QUALITY, g).round(),)
    if kind == "light":
        return (torch.exp(_uniform(n, -math.log(GAMMA), math.log(GAMMA), g)), _uniform(n, *CONTRAST, g),
                _uniform(n, *BRIGHTNESS, g))
    if kind == "noise":
        return (_uniform(n, *NOISE_SIGMA, g), g)
    return (_uniform(n, *OCCLUDE_AREA, g), g)


FUNCTIONS = {"blur": blur, "lowres": lowres, "jpeg": jpeg, "light": light, "noise": noise, "occlude": occlude}


def degrade(faces: torch.Tensor, g: torch.Generator, probs: dict) -> torch.Tensor:
    """Each corruption in CORRUPTIONS applied, at a random severity, to a random `probs[kind]` share of
    uint8 faces [N, 48, 48] on the CPU; faces not drawn are returned untouched."""
    unknown = set(probs) - set(CORRUPTIONS)
    if unknown or any(not 0 <= p <= 1 for p in probs.values()):
        raise ValueError(f"probs must map {', '.join(CORRUPTIONS)} to a share in [0, 1], got {probs}")
    out = faces.clone()
    for kind in CORRUPTIONS:
        p = probs.get(kind, 0.0)
        pick = torch.rand(len(out), generator=g) < p
        if not p or not pick.any():
            continue
        idx = pick.nonzero().flatten()
        out[idx] = FUNCTIONS[kind](out[idx], *_draw(kind, len(idx), g))
    return out
