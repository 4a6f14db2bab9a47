"""The dataset explorer's computations on a decoded FER2013 (fer_core.data.fer2013.FER2013 / Split).

Everything takes plain arrays or Split objects and returns arrays, dicts or plotly figures, so the
Streamlit page only lays them out (and caches them).
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go

from ..data.emotions import EMOTIONS
from ..data.fer2013 import dataset_path
from ..errors import DatasetError

PAGE_COLUMNS, PAGE_ROWS = 8, 4
PAGE_SIZE = PAGE_COLUMNS * PAGE_ROWS
BLANK_STD = 4.0  # grey levels: below this an image is flat
BLANK_MODE_SHARE = 0.9  # or when one grey level covers at least this share of its pixels
CHUNK = 1024  # images per vectorised step (bounds temporary memory on the 28k train split)
CLASSIFY_BATCH = 256  # faces per classify() call on the misclassified search


def source_stamp(path) -> str:
    """A cheap identity of a dataset source on disk (size and mtime of the file, or of the folder and
    its sub-folders), so a cache notices a replaced file or added/removed images; '' if it is missing."""
    path = Path(path).expanduser()
    if not path.exists():
        return ""
    paths = [path] + (sorted(p for p in path.rglob("*") if p.is_dir()) if path.is_dir() else [])
    return "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)


def recorded_datasets(cards) -> list:
    """The datasets the model cards were measured on (their `datasets`), one entry per fingerprint:
    {fingerprint, source, counts {split: {emotion: n}}, models [names]}. Malformed entries are skipped."""
    found = {}
    for card in cards:
        for data in (card.get("datasets") or {}).values():  # schema v2: dataset key -> {source, fingerprint, counts}
            counts = data.get("counts") if isinstance(data, dict) else None
            if not isinstance(counts, dict) or not all(isinstance(c, dict) for c in counts.values()):
                continue
            key = str(data.get("fingerprint") or sorted(counts.items(), key=str))
            entry = found.setdefault(key, {"fingerprint": data.get("fingerprint"), "source": data.get("source"),
                                           "counts": _clean_counts(counts), "models": []})
            entry["models"].append(str(card.get("name")))
    return list(found.values())


def _clean_counts(counts: dict) -> dict:
    """{split: {emotion: int}} with every emotion present (0 where missing or not a number)."""
    return {split: {e: _count(c.get(e)) for e in EMOTIONS} for split, c in counts.items()}


def _count(value) -> int:
    """A recorded count as an int, 0 when it is not a number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    return int(value) if ok else 0


def matching_models(fingerprint, cards) -> list:
    """Names of the models whose card records this dataset fingerprint."""
    return [name for r in recorded_datasets(cards) if r["fingerprint"] == fingerprint for name in r["models"]]


def distribution_figure(counts: dict) -> go.Figure:
    """Grouped bars of faces per class, one bar group per split ({split: {emotion: n}})."""
    fig = go.Figure([go.Bar(x=list(EMOTIONS), y=[c.get(e, 0) for e in EMOTIONS], name=split,
                            text=[c.get(e, 0) for e in EMOTIONS], textposition="outside")
                     for split, c in counts.items()])
    fig.update_layout(barmode="group", xaxis_title="class", yaxis_title="faces", legend_title="split")
    return fig


def page_count(n: int, per_page: int = PAGE_SIZE) -> int:
    """Pages needed for n items (at least 1, so an empty class still has a page to show)."""
    return max(1, -(-int(n) // per_page))


def page_slice(indices, page: int, per_page: int = PAGE_SIZE) -> np.ndarray:
    """The `page`-th (1-based, clamped to the valid range) run of `per_page` items of `indices`."""
    indices = np.asarray(indices)
    page = min(max(1, int(page)), page_count(len(indices), per_page))
    return indices[(page - 1) * per_page: page * per_page]


def class_indices(labels, label: int) -> np.ndarray:
    """Positions of the faces labelled `label`, in dataset order."""
    return np.flatnonzero(np.asarray(labels) == label)


def sample_page(split, label: int, page: int, per_page: int = PAGE_SIZE) -> np.ndarray:
    """Indices into `split` of one page of faces of class `label`."""
    return page_slice(class_indices(split.labels, label), page, per_page)


def mean_faces(split) -> np.ndarray:
    """float32 [7, 48, 48]: the mean face of each class (zeros for a class with no faces)."""
    out = np.zeros((len(EMOTIONS),) + split.images.shape[1:], np.float32)
    for label in range(len(EMOTIONS)):
        sel = split.labels == label
        if sel.any():
            out[label] = split.images[sel].mean(0, dtype=np.float64)
    return out


def intensity_histogram(images) -> np.ndarray:
    """int64 [256]: how many pixels of these uint8 images have each grey level."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.size == 0:
        return np.zeros(256, np.int64)
    hist = cv2.calcHist([images.reshape(-1, images.shape[-1])], [0], None, [256], [0, 256])
    return hist.ravel().astype(np.int64)


def histograms_by_class(split) -> dict:
    """{emotion: grey-level histogram} over one split's faces of that class."""
    return {e: intensity_histogram(split.images[split.labels == i]) for i, e in enumerate(EMOTIONS)}


def histograms_by_split(splits: dict) -> dict:
    """{split name: grey-level histogram} over all its faces."""
    return {name: intensity_histogram(s.images) for name, s in splits.items()}


def histogram_figure(histograms: dict) -> go.Figure:
    """One line per histogram, as the share of pixels at each grey level (groups of any size compare), on a
    log axis: FER2013's saturated 0 and 255 levels would otherwise flatten every other level."""
    fig = go.Figure()
    for name, hist in histograms.items():
        total = hist.sum()
        if total:
            fig.add_trace(go.Scatter(x=np.arange(256), y=hist / total, mode="lines", name=name))
    fig.update_layout(xaxis_title="grey level", yaxis_title="share of pixels (log scale)", yaxis_type="log",
                      yaxis_dtick=1, yaxis_tickformat=".1%")
    return fig


def flatness(images) -> tuple:
    """(std, mode share) per image: the grey-level standard deviation and the share of pixels at the
    most common grey level (std in chunks of CHUNK images, to bound temporary memory)."""
    images = np.asarray(images, dtype=np.uint8)
    flat = images.reshape(len(images), int(np.prod(images.shape[1:])))
    std = np.zeros(len(flat), np.float32)
    for start in range(0, len(flat), CHUNK):
        std[start:start + CHUNK] = flat[start:start + CHUNK].std(1, dtype=np.float32)
    mode = np.array([np.bincount(row, minlength=256).max() for row in flat], np.float32).reshape(-1)
    return std, mode / max(flat.shape[1], 1)


def near_blank(images, std_max: float = BLANK_STD, mode_share: float = BLANK_MODE_SHARE) -> np.ndarray:
    """Indices of near-blank images: grey-level std below `std_max` or one level on >= `mode_share`."""
    std, mode = flatness(images)
    return np.flatnonzero((std < std_max) | (mode >= mode_share))


def blank_faces(splits: dict) -> list:
    """Every near-blank face in the splits: {split, index, name, label, std, mode_share}."""
    rows = []
    for name, s in splits.items():
        std, mode = flatness(s.images)
        for i in np.flatnonzero((std < BLANK_STD) | (mode >= BLANK_MODE_SHARE)):
            rows.append({"split": name, "index": int(i), "name": str(s.names[i]), "label": EMOTIONS[s.labels[i]],
                         "std": round(float(std[i]), 2), "mode_share": round(float(mode[i]), 3)})
    return rows


def image_digest(image) -> bytes:
    """A hash of the decoded 48x48 array's bytes: equal digests mean pixel-identical faces."""
    return hashlib.blake2b(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), digest_size=16).digest()


def duplicate_groups(splits: dict) -> list:
    """Sets of pixel-identical faces within and across splits: each group is a list of (split, index)
    with two or more members; groups are ordered by size (largest first), then by first member."""
    by_digest = {}
    for name, s in splits.items():
        for i, image in enumerate(s.images):
            by_digest.setdefault(image_digest(image), []).append((name, i))
    groups = [g for g in by_digest.values() if len(g) > 1]
    order = {name: k for k, name in enumerate(splits)}
    return sorted(groups, key=lambda g: (-len(g), order[g[0][0]], g[0][1]))


@dataclass
class DuplicateGroup:
    members: list  # [(split, index)]
    names: list  # file name (or CSV line) of each member
    labels: list  # emotion of each member

    @property
    def splits(self) -> set:
        """The splits this group's copies are in."""
        return {s for s, _ in self.members}

    @property
    def across_splits(self) -> bool:
        """Copies in more than one split (the same face in train and val)."""
        return len(self.splits) > 1

    @property
    def within_split(self) -> bool:
        """At least two copies in the same split."""
        return len(self.splits) < len(self.members)

    @property
    def conflicting_labels(self) -> bool:
        """The copies do not all carry the same label."""
        return len(set(self.labels)) > 1


def describe_duplicates(splits: dict) -> list:
    """duplicate_groups with each member's name and label, as DuplicateGroup."""
    return [DuplicateGroup(g, [str(splits[s].names[i]) for s, i in g], [EMOTIONS[splits[s].labels[i]] for s, i in g])
            for g in duplicate_groups(splits)]


def duplicate_summary(groups: list) -> dict:
    """Counts over DuplicateGroups: groups, extra copies, groups inside one split, groups spanning
    splits (a train/val leak), groups whose copies disagree on the label."""
    return {"groups": len(groups), "extra_copies": sum(len(g.members) - 1 for g in groups),
            "within_split": sum(g.within_split for g in groups), "across_splits": sum(g.across_splits for g in groups),
            "conflicting_labels": sum(g.conflicting_labels for g in groups)}


def duplicate_rows(groups: list) -> list:
    """One table row per DuplicateGroup for display."""
    return [{"copies": len(g.members), "splits": ", ".join(sorted(g.splits)),
             "labels": ", ".join(sorted(set(g.labels))),
             "files": ", ".join(f"{s}:{n}" for (s, _), n in zip(g.members, g.names))} for g in groups]


def classify_in_batches(classify, images, batch_size: int = CLASSIFY_BATCH) -> np.ndarray:
    """Probabilities [N, 7] from `classify` (e.g. EmotionRecognizer.classify) over uint8 faces [N, 48, 48],
    `batch_size` faces at a time."""
    parts = [classify(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(EMOTIONS)), np.float32)


@dataclass
class Mistakes:
    """The misclassified faces of a split, most confident mistakes first."""
    index: np.ndarray  # positions in the split
    true: np.ndarray  # labels
    pred: np.ndarray  # predicted labels
    confidence: np.ndarray  # probability of the predicted label
    total: int  # faces classified

    def __len__(self):
        return len(self.index)

    def of_class(self, label=None) -> np.ndarray:
        """Positions (into this list) of the mistakes whose true label is `label` (all when None)."""
        return np.arange(len(self)) if label is None else np.flatnonzero(self.true == label)

    def caption(self, k: int) -> str:
        """'true → predicted (confidence)' for the k-th mistake."""
        return f"{EMOTIONS[self.true[k]]} → {EMOTIONS[self.pred[k]]} ({self.confidence[k]:.0%})"


def misclassified(probs, labels) -> Mistakes:
    """The faces whose top class differs from the label, sorted by the wrong class's probability."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    conf = probs[wrong, pred[wrong]]
    order = np.argsort(-conf, kind="stable")
    wrong = wrong[order]
    return Mistakes(wrong, labels[wrong], pred[wrong], conf[order].astype(np.float32), len(labels))


def confusion_counts(mistakes: Mistakes, labels) -> np.ndarray:
    """int64 [7, 7] confusion matrix (rows = true) rebuilt from the mistakes and all labels."""
    from ..models.evaluate import confusion_matrix  # torch: only when asked
    pred = np.array(labels, dtype=np.int64)
    pred[mistakes.index] = mistakes.pred
    return confusion_matrix(labels, pred)


def env_dataset_path() -> str:
    """The dataset path from env FER2013_PATH ('' when unset), to prefill the explorer's path box."""
    try:
        return str(dataset_path())
    except DatasetError:
        return ""
