"""The model card's one schema (version 2): what weights/NAME.json holds, checked once by `cards.read_cards`.

A card describes its weights: the architecture, how to preprocess a face for it, what it is for and
what it must not be used for, and what was measured on which data. Metrics are kept per dataset and
split, `metrics[dataset][split]`, where the dataset key is the source's stem (`fer2013`, `wild_photos`)
and split is `val`, `val_tta` (flip TTA) and so on; `datasets[dataset]` holds that data's fingerprint,
so a figure is never compared with one measured on other data. Cards hold no path of the machine that
wrote them (`portable` strips them). The default model is not a card field: it is named once, in
weights/DEFAULT.

`migrate` turns a version-1 card (flat `metrics.val`, a `dataset` block, a `default` flag) into this
schema; `validate` lists what is wrong with a card, and `check` raises on it.
"""
import re
from typing import NotRequired, TypedDict

from ..data.emotions import EMOTIONS
from ..data.preprocess import FACE_SIZE, MARGIN, MEAN, STD
from ..errors import WeightsError

SCHEMA_VERSION = 2
PRIMARY = "fer2013"  # the dataset every model is trained and first compared on
SPLITS = ("val", "val_tta", "test", "test_tta")  # keys under metrics[dataset]

PREPROCESS = {  # what `preprocess.crop_face` + `faces_to_tensor` do: a card says it for its model
    "input_size": [FACE_SIZE, FACE_SIZE], "channels": 1, "color": "grey",
    "crop": "square around the detector's box, replicated border", "crop_margin": MARGIN,
    "scale": "x / 255", "mean": MEAN, "std": STD,
}
INTENDED_USE = (
    "Reading the apparent facial expression of consenting people in photos and video, for learning, demos "
    "and research on expression recognition: one of seven posed-expression categories per detected face.")
LIMITATIONS = (
    "A facial expression is not a feeling: the label says how a face looks, not what a person feels, intends "
    "or is. Trained on FER2013 (web images, one label per face, about 65-72% human agreement)"
    " and, where the card says so, news photos labelled by one annotator: accuracy drops on faces unlike "
    "those (children, very old people, darker or lighter skin than the data holds, profiles, masks, poor "
    "light), and rare classes (disgust, fear) are read poorly. Do not use it to judge people: not for "
    "hiring, grading, policing, security, health or any decision about a person, and not on anyone who "
    "has not agreed to it.")


class SplitMetrics(TypedDict):
    n: int
    accuracy: float
    macro_f1: float
    ece: float
    labels: list
    per_class: dict  # emotion -> {precision, recall, f1, support}
    confusion_matrix: list  # rows = true, columns = predicted
    reliability: NotRequired[list]
    predicted_share: NotRequired[dict]  # emotion -> share of faces called it
    no_face: NotRequired[int]  # photos of the split where the detector found no face


class DatasetInfo(TypedDict):
    source: str  # file or folder name, never a path
    layout: str
    fingerprint: str
    counts: NotRequired[dict]
    detector: NotRequired[str]  # real-photo sets: the detector that found the faces
    no_face: NotRequired[dict]  # real-photo sets: split -> photos where it found none


class ModelCard(TypedDict):
    schema_version: int
    name: str
    arch: str
    arch_args: dict
    labels: list
    params: int
    size_bytes: int
    preprocess: dict
    intended_use: str
    limitations: str
    metrics: dict  # dataset -> split -> SplitMetrics
    datasets: dict  # dataset -> DatasetInfo
    recipe: str
    created: str
    weights_file: NotRequired[str]  # single models; None for a card whose weights are not shipped
    sha256: NotRequired[str]
    dtype: NotRequired[str]
    members: NotRequired[list]  # ensembles: [{name, arch, sha256}]
    combine: NotRequired[str]
    temperature: NotRequired[float]
    calibration: NotRequired[dict]
    cpu_ms_per_face: NotRequired[dict]
    robustness: NotRequired[dict]  # see fer_core/models/robustness.py
    int8: NotRequired[dict]  # the quantized file beside the fp16 one: file, sha256, metrics, latency
    history: NotRequired[list]
    train_args: NotRequired[dict]
    hardware: NotRequired[dict]
    wall_time_s: NotRequired[float]
    bf16: NotRequired[bool]
    best_epoch: NotRequired[int]
    exported_epoch: NotRequired[int]  # best_epoch, or the last one with `train --export last`
    distilled_from: NotRequired[dict]
    initialized_from: NotRequired[dict]  # name, sha256, val_accuracy; thinned_from: its arch, when wider
    extra_data: NotRequired[dict]
    augment: NotRequired[dict]
    swa: NotRequired[dict]
    earlier_recipes: NotRequired[list]
    not_shipped: NotRequired[str]
    kept_at: NotRequired[str]


REQUIRED = tuple(k for k in ModelCard.__required_keys__)
KNOWN = set(ModelCard.__annotations__)


def dataset_key(source: str) -> str:
    """`fer2013.zip` -> `fer2013`, `wild_photos` -> `wild_photos`: the key of a source's metrics."""
    stem = str(source).rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"\.(zip|csv)$", "", stem, flags=re.I).lower() or "data"


def validate(card) -> list:
    """What is wrong with `card` as a version-2 card (empty when nothing)."""
    if not isinstance(card, dict):
        return ["a card must be a JSON object"]
    problems = [f"missing {k!r}" for k in REQUIRED if k not in card]
    if card.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version must be {SCHEMA_VERSION}, got {card.get('schema_version')!r}")
    problems += [f"unknown field {k!r}" for k in card if k not in KNOWN]
    if card.get("labels") not in (None, list(EMOTIONS)):
        problems.append(f"labels must be {list(EMOTIONS)}")
    metrics, datasets = card.get("metrics"), card.get("datasets")
    if not isinstance(metrics, dict) or not isinstance(datasets, dict):
        return problems + ["metrics and datasets must be objects"]
    for ds, splits in metrics.items():
        if ds not in datasets:
            problems.append(f"metrics on {ds!r} without its fingerprint in datasets")
        for split, m in (splits.items() if isinstance(splits, dict) else ()):
            if split not in SPLITS:
                problems.append(f"metrics[{ds!r}] has unknown split {split!r}")
            elif not isinstance(m, dict) or not isinstance(m.get("accuracy"), (int, float)):
                problems.append(f"metrics[{ds!r}][{split!r}] has no accuracy")
    problems += [f"{where} holds a machine path ({text!r})" for where, text in machine_paths(card)]
    return problems


def check(card, origin="card"):
    problems = validate(card)
    if problems:
        raise WeightsError(f"{origin} does not follow the model-card schema: {'; '.join(problems)}")
    return card


_PATHLIKE = re.compile(r"(?:^|[\s=])(?:/|\.\./|~/)[^\s/][^\s]*")


def machine_paths(card, where="card"):
    """(where, text) of every string in the card that looks like an absolute or parent-relative path."""
    if isinstance(card, dict):
        for k, v in card.items():
            yield from machine_paths(v, f"{where}.{k}")
    elif isinstance(card, list):
        for i, v in enumerate(card):
            yield from machine_paths(v, f"{where}[{i}]")
    elif isinstance(card, str) and _PATHLIKE.search(card):
        yield where, card


def portable(text: str) -> str:
    """`text` with every path in it reduced to its last part (`../shared/x/fer2013.zip` -> `fer2013.zip`)."""
    return _PATHLIKE.sub(lambda m: m.group(0)[:len(m.group(0)) - len(m.group(0).lstrip(" ="))]
                         + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def portable_args(args: dict) -> dict:
    return {k: portable(v) if isinstance(v, str) else v for k, v in args.items()}


def migrate(card: dict) -> dict:
    """A version-1 card as a version-2 one (a version-2 card is returned unchanged)."""
    if card.get("schema_version") == SCHEMA_VERSION:
        return card
    card = dict(card)
    card.pop("default", None)
    dataset = card.pop("dataset", None) or {}
    key = dataset_key(dataset.get("source", PRIMARY))
    old = card.get("metrics") or {}
    card["metrics"] = {key: {s: m for s, m in old.items() if s in SPLITS}} if old else {}
    card["datasets"] = {key: {k: portable(v) if isinstance(v, str) else v for k, v in dataset.items()}}
    if isinstance(card.get("calibration"), dict):
        card["calibration"] = {"dataset": key, **card["calibration"]}
    for k in ("recipe",):
        if isinstance(card.get(k), str):
            card[k] = portable(card[k])
    if isinstance(card.get("train_args"), dict):
        card["train_args"] = portable_args(card["train_args"])
    for row in card.get("earlier_recipes", []):
        row["recipe"] = portable(row["recipe"])
    if card.get("kept_at"):
        card["kept_at"] = portable(card["kept_at"])
        card["not_shipped"] = portable(card.get("not_shipped", ""))
    card.setdefault("preprocess", dict(PREPROCESS))
    card.setdefault("intended_use", INTENDED_USE)
    card.setdefault("limitations", LIMITATIONS)
    card["schema_version"] = SCHEMA_VERSION
    return card


def split_metrics(card, dataset=PRIMARY, split="val"):
    """card.metrics[dataset][split], or None when the card has none."""
    return (card.get("metrics", {}).get(dataset) or {}).get(split)


def accuracy(card, dataset=PRIMARY, split="val"):
    """The card's accuracy on `dataset`'s `split`, or None when it was not measured there."""
    m = split_metrics(card, dataset, split)
    return m.get("accuracy") if m else None
