"""Model cards for tests, in the schema cards are written in (fer_core/models/card_schema.py, version 2)."""
from fer_core.models import card_schema
from fer_core.data.emotions import EMOTIONS


def dataset_info(key=card_schema.PRIMARY, fingerprint=None, **extra) -> dict:
    return {"source": f"{key}.zip" if key == card_schema.PRIMARY else key, "layout": "zip",
            "fingerprint": fingerprint or f"fp-{key}", **extra}


def v2_card(name, arch="cnn", accuracy=None, tta=None, dataset=card_schema.PRIMARY, **extra) -> dict:
    """A valid card: `accuracy` and `tta` become metrics[dataset] val / val_tta ({"accuracy": ...}) with the
    dataset's record in `datasets`; `extra` fields are set as given (override any default)."""
    splits = {split: {"accuracy": a} for split, a in (("val", accuracy), ("val_tta", tta)) if a is not None}
    card = {
        "schema_version": card_schema.SCHEMA_VERSION, "name": name, "arch": arch, "arch_args": {},
        "labels": list(EMOTIONS), "params": 0, "size_bytes": 0, "preprocess": dict(card_schema.PREPROCESS),
        "intended_use": card_schema.INTENDED_USE, "limitations": card_schema.LIMITATIONS,
        "metrics": {dataset: splits} if splits else {}, "datasets": {dataset: dataset_info(dataset)} if splits else {},
        "recipe": f"python -m fer_core train --model {arch}", "created": "2026-01-01T00:00:00+00:00",
    }
    return {**card, **extra}


def with_metrics(card, dataset, split, metrics, **info) -> dict:
    """`card` with metrics[dataset][split] = metrics (and the dataset recorded in `datasets`)."""
    card = {**card, "metrics": {k: dict(v) for k, v in card["metrics"].items()}, "datasets": dict(card["datasets"])}
    card["metrics"].setdefault(dataset, {})[split] = metrics
    card["datasets"].setdefault(dataset, dataset_info(dataset, **info))
    return card
