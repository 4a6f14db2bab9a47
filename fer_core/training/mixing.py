"""The faces one training epoch draws from: FER2013's training split, plus a real-photo set's if given.

Every epoch takes each FER2013 face once and, with `--extra-data`, draws `extra_share` of the epoch's
faces from the real-photo set. Those draws are class-balanced by `balance`: "sqrt" draws a class in
proportion to the square root of its count (a photo set that is 95% happy or neutral then gives about
75% of its draws to those two instead of 95%, and its eight disgust photos are not repeated a thousand
times), "none" in proportion to its count. The order is seeded by (seed, epoch) like the rest.
"""
from dataclasses import dataclass

import numpy as np
import torch

from ..data.emotions import EMOTIONS
from ..errors import FerError

BALANCE = ("sqrt", "none")


@dataclass
class TrainSet:
    images: torch.Tensor  # uint8 [N, 48, 48]: the primary faces first, then the extra ones
    labels: torch.Tensor  # int64 [N]
    n_primary: int
    extra_share: float = 0.0
    balance: str = "sqrt"

    @classmethod
    def build(cls, primary, extra=None, extra_share=0.0, balance="sqrt"):
        """From fer2013.Split objects; `extra` (or None) is the real-photo training split."""
        if balance not in BALANCE:
            raise FerError(f"balance must be one of {', '.join(BALANCE)}, got {balance!r}")
        if extra is None or not len(extra):
            return cls(torch.from_numpy(primary.images), torch.from_numpy(primary.labels), len(primary))
        if not 0 < extra_share < 1:
            raise FerError(f"the share of each epoch drawn from the extra data must be in (0, 1), got {extra_share}")
        images = torch.from_numpy(np.concatenate([primary.images, extra.images]))
        labels = torch.from_numpy(np.concatenate([primary.labels, extra.labels]))
        return cls(images, labels, len(primary), extra_share, balance)

    @property
    def n_extra(self) -> int:
        return len(self.labels) - self.n_primary

    def from_extra(self, idx: torch.Tensor) -> torch.Tensor:
        """True where an index points at a face of the extra set."""
        return idx >= self.n_primary

    def epoch_size(self) -> int:
        if not self.n_extra:
            return self.n_primary
        return int(round(self.n_primary / (1 - self.extra_share)))

    def extra_weights(self) -> torch.Tensor:
        """The probability of drawing each extra face."""
        labels = self.labels[self.n_primary:]
        counts = torch.bincount(labels, minlength=len(EMOTIONS)).double()
        per_class = counts.sqrt() if self.balance == "sqrt" else counts
        w = (per_class / counts.clamp(min=1))[labels]
        return w / w.sum()

    def epoch_order(self, g: torch.Generator) -> torch.Tensor:
        """Indices of one epoch's faces in training order."""
        idx = torch.arange(self.n_primary)
        if self.n_extra:
            k = self.epoch_size() - self.n_primary
            extra = torch.multinomial(self.extra_weights(), k, replacement=True, generator=g) + self.n_primary
            idx = torch.cat([idx, extra])
        return idx[torch.randperm(len(idx), generator=g)]

    def drawn_share(self) -> dict:
        """Expected share of each class among an epoch's extra draws (for the card)."""
        if not self.n_extra:
            return {}
        w = self.extra_weights()
        labels = self.labels[self.n_primary:]
        return {e: round(float(w[labels == i].sum()), 4) for i, e in enumerate(EMOTIONS)}
