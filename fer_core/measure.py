"""What a card says was measured: one function for a trained model and for an ensemble.

`measure_card` runs the model (as its fp16 file loads) on the val split of every dataset given, with
and without flip TTA, fits the temperature on the primary dataset's val split and times it on the CPU.
"""
from . import card_schema
from .calibrate import calibrate_card
from .evaluate import metrics, predict_logits, reliability, softmax
from .speed import cpu_latency_card

VIEWS = (("val", "none"), ("val_tta", "flip"))  # metrics key, TTA


def dataset_info(ds) -> dict:
    """The card's record of a dataset: its name (never a path), layout, fingerprint and counts."""
    info = {"source": ds.path.name, "layout": ds.layout, "fingerprint": ds.fingerprint(), "counts": ds.counts()}
    if getattr(ds, "no_face", None) is not None:
        info["detector"] = ds._decoded()["detector"]
        info["no_face"] = {s: len(names) for s, names in ds.no_face.items() if names}
    return info


def split_metrics(model, ds, split="val", tta="none") -> dict:
    """Metrics of `model` on one split of a dataset (FER2013 or a photo set), with its no-face count."""
    faces = ds.load(split)
    probs = softmax(predict_logits(model, faces.images, "cpu", tta=tta))
    m = {**metrics(probs, faces.labels), "reliability": reliability(probs, faces.labels)}
    if getattr(ds, "no_face", None) is not None:
        m["no_face"] = len(ds.no_face.get(split, []))
    return m


def measure_card(card: dict, model, datasets: list) -> dict:
    """`card` with metrics on the val split of each dataset (the first one is primary: calibration is fitted
    there), their fingerprints, the temperature and the CPU latency."""
    card = {**card, "metrics": {}, "datasets": {}}
    for ds in datasets:
        key = card_schema.dataset_key(ds.path.name)
        card["datasets"][key] = dataset_info(ds)
        card["metrics"][key] = {k: split_metrics(model, ds, "val", tta) for k, tta in VIEWS}
    primary = datasets[0]
    card = calibrate_card(card, model, primary.load("val"), card_schema.dataset_key(primary.path.name))
    card["cpu_ms_per_face"] = cpu_latency_card(model)
    return card
