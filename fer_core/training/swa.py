"""Stochastic weight averaging (Izmailov et al. 2018) for `train --swa-epochs K --swa-lr LR`.

In the last K epochs of a run the learning rate holds at LR, and the weights at the end of each of
those epochs join an equal-weight average (torch.optim.swa_utils.AveragedModel). BatchNorm's running
statistics do not average into anything meaningful, so before each val pass they are measured again
on the averaged weights, over one augmented pass of the training faces with a fixed seed. Training
evaluates, checkpoints and exports the averaged copy once the phase has begun.
"""
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from ..data.preprocess import faces_to_tensor
from .augment import augment

BN_BATCH = 256  # faces per forward pass while the BatchNorm statistics are measured
BN_SEED = 20_181_005  # the same augmented views every time, so a resumed run measures what a straight one does


class WeightSWA:
    def __init__(self, model: torch.nn.Module):
        self.averaged = AveragedModel(model)  # the model itself, not a DistributedDataParallel wrapper
        self.averaged.requires_grad_(False)

    @property
    def model(self) -> torch.nn.Module:
        return self.averaged.module

    @property
    def count(self) -> int:
        return int(self.averaged.n_averaged)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, images: torch.Tensor, autocast):
        """Add `model`'s weights to the average, then measure BatchNorm's statistics on the training faces
        (uint8 [N, 48, 48]) under the `autocast` context training uses."""
        self.averaged.update_parameters(model)
        with autocast:
            update_bn(_augmented_batches(images), self.averaged)
        self.averaged.eval()

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict):
        self.averaged.load_state_dict(state)


def _augmented_batches(images: torch.Tensor):
    g = torch.Generator().manual_seed(BN_SEED)
    for i in range(0, len(images), BN_BATCH):
        x = augment(faces_to_tensor(images[i:i + BN_BATCH], images.device), g)
        yield x.contiguous(memory_format=torch.channels_last)
