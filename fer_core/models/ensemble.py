"""Several shipped models as one: `EmotionRecognizer(model="ensemble")`.

An ensemble card has `"arch": "ensemble"` and no weights file of its own. It lists its members
with the sha256 of the weights it was measured with, and how they are combined: the mean of the
members' probabilities, each member at its own calibrated temperature. The module's output is the
log of that mean, so everything that takes logits (evaluation, TTA, temperature scaling,
EmotionRecognizer) treats an ensemble like any other model.
"""
import shlex
from datetime import datetime, timezone

import torch
import torch.nn as nn

from ..data.emotions import EMOTIONS
from ..errors import WeightsError
from . import card_schema, cards
from .cards import member_cards
from .measure import measure_card
from .registry import count_params

ARCH = "ensemble"
COMBINE = "mean of the members' probabilities, each member at its own calibrated temperature"


class Ensemble(nn.Module):
    def __init__(self, members, temperatures):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32))

    def forward(self, x):
        probs = torch.stack([torch.softmax(m(x).float() / t, dim=1) for m, t in zip(self.members, self.temperatures)])
        return probs.mean(0).clamp_min(1e-12).log()


def load(card: dict, directory=None, device="cpu") -> Ensemble:
    """The ensemble an ensemble card describes, refusing members whose weights changed since it was measured."""
    members, temps = [], []
    for m in member_cards(card, directory):
        model, member_card = cards.load_model(m["name"], directory, device)
        members.append(model)
        temps.append(float(member_card.get("temperature", 1.0)))
    if not members:
        raise WeightsError(f"ensemble {card['name']!r} lists no members")
    return Ensemble(members, temps).to(device).eval()


def build(name, member_names, datasets: list, argv, directory=None) -> dict:
    """Measure an ensemble of shipped models on the val split of each of `datasets` (data sets as
    `fer2013.open_dataset` gives them; the first is primary: the temperature is fitted there) and write its
    card; returns the card."""
    if len(set(member_names)) < 2:
        raise WeightsError("an ensemble needs at least two different shipped models")
    chosen = [cards.find_card(n, directory) for n in member_names]
    if any(c["arch"] == ARCH for c in chosen):
        raise WeightsError("an ensemble cannot contain another ensemble")
    card = {
        "schema_version": card_schema.SCHEMA_VERSION, "name": name, "arch": ARCH, "arch_args": {},
        "labels": list(EMOTIONS), "preprocess": dict(card_schema.PREPROCESS),
        "intended_use": card_schema.INTENDED_USE, "limitations": card_schema.LIMITATIONS,
        "members": [{"name": c["name"], "arch": c["arch"], "sha256": c["sha256"]} for c in chosen],
        "combine": COMBINE,
        "size_bytes": sum(c.get("size_bytes", 0) for c in chosen),
        "recipe": card_schema.portable("python -m fer_core " + shlex.join(argv)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    model = load(card, directory)
    card["params"] = count_params(model)
    card = measure_card(card, model, datasets)
    cards.write_card(card, directory)
    return card
