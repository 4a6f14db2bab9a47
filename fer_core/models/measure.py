"""What a card says was measured: one function for a trained model and for an ensemble.

`measure_card` runs the model (as its fp16 file loads) on the val split of every dataset given, with
and without flip TTA, fits the temperature on the primary dataset's val split and times it on the CPU.
"""
from ..errors import FerError
from . import card_schema, peer
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


def evaluate_models(names: list, ds, split="val", tta="none", peer_path=None, load=None) -> dict:
    """{model name: metrics} of shipped models (and the OpenCV zoo peer, on photo sets) on one split.
    `load(name)` -> (model, card) gives each model (default: its fp32 weights, cards.load_model)."""
    from .cards import load_model
    zoo = _peer(peer_path, ds) if peer_path else None  # a wrong peer file fails before the long part
    results = {}
    for name in names:
        model, card = (load or load_model)(name)
        results[card["name"]] = split_metrics(model, ds, split, tta)
    if zoo is not None:
        probs, labels, no_face = peer.photo_probabilities(zoo[0], ds, split, zoo[1])
        results[peer.NAME] = {**metrics(probs, labels), "no_face": len(no_face)}
    return results


def _peer(path, ds):
    """(the checked peer model, a landmark detector), or FerError saying what is missing."""
    from ..data.faces import yunet_model_path
    from ..data.photos import PhotoSet
    if not isinstance(ds, PhotoSet):
        raise FerError("the peer reads whole photos: give --data a real-photo set, not FER2013's crops")
    zoo = peer.ZooFER(path)
    yunet = yunet_model_path()
    if yunet is None:
        raise FerError("the peer needs YuNet's landmarks: set FER_YUNET_MODEL to the YuNet .onnx")
    return zoo, peer.LandmarkDetector(yunet)


def side_by_side(results: dict, title="") -> str:
    """One row per model: faces, no-face photos, accuracy, macro-F1, recall per class and the share of faces
    called each emotion (where a model that reads every neutral face as sad shows at once)."""
    from ..data.emotions import EMOTIONS
    short = [e[:3] for e in EMOTIONS]
    head = (f"{'model':<44}{'faces':>6}{'no face':>8}{'acc':>8}{'mF1':>7}  recall " + " ".join(f"{s:>4}" for s in short)
            + "   called " + " ".join(f"{s:>4}" for s in short))
    lines = [title, head] if title else [head]
    for name, m in results.items():
        recall = " ".join(f"{m['per_class'][e]['recall'] * 100:>4.0f}" if m["per_class"][e]["support"] else "   -"
                          for e in EMOTIONS)
        share = " ".join(f"{m['predicted_share'][e] * 100:>4.1f}" for e in EMOTIONS)
        lines.append(f"{name:<44}{m['n']:>6}{m.get('no_face', 0):>8}{m['accuracy']:>8.2%}{m['macro_f1']:>7.3f}"
                     f"         {recall}          {share}")
    return "\n".join(lines)
