"""An exponential moving average of a model's weights, for `train --ema DECAY`.

After every optimiser step each floating-point tensor of the averaged copy (weights and BatchNorm
running statistics) moves the fraction 1 - decay of the way to the trained model's; integer buffers
are copied. For the first steps the decay is lowered to (1 + step) / (10 + step), so that the random
initial weights fade out quickly. Training evaluates, checkpoints and exports the averaged copy.
"""
import copy

import torch


class WeightEMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must lie between 0 and 1, got {decay}")
        self.decay, self.steps = decay, 0
        self.model = copy.deepcopy(_unwrapped(model)).eval()
        self.model.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        decay = self.current_decay()
        self.steps += 1
        for avg, new in zip(self.model.state_dict().values(), _unwrapped(model).state_dict().values()):
            if avg.is_floating_point():
                avg.lerp_(new.detach().to(avg.dtype), 1 - decay)
            else:
                avg.copy_(new)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict):
        self.model.load_state_dict(state["model"])
        self.steps = state["steps"]


def _unwrapped(model):
    """The model inside a DistributedDataParallel wrapper (its state dict has no 'module.' prefix)."""
    return getattr(model, "module", model)
