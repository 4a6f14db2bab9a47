"""Dataset explorer: FER2013's classes, faces, mean faces, pixel statistics, quality flags and the
chosen model's mistakes. Computation lives in fer_core.app.explore; this page caches and lays it out."""
import streamlit as st

import ui
from fer_core import EMOTIONS, FerError
from fer_core.app import explore
from fer_core.models.cards import read_cards
from fer_core.data.fer2013 import FER2013

HOW_TO_GET = """
FER2013 is not shipped with FER Studio. To explore it:

1. Download it from Kaggle: [msambare/fer2013](https://www.kaggle.com/datasets/msambare/fer2013) (the image
   layout, as the .zip or extracted) or the original `fer2013.csv` from the
   [challenge page](https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge).
2. Either start the app with `FER2013_PATH=/path/to/fer2013.zip streamlit run app.py`, or type the path to the
   .zip, the extracted folder or the .csv in the box above.
"""


@st.cache_resource(max_entries=2, show_spinner="Reading the dataset…")
def open_dataset(path, stamp):
    """The decoded FER2013 at `path` (`stamp` changes when the file or its folders change)."""
    dataset = FER2013(path)
    dataset.fingerprint()
    return dataset


@st.cache_data(max_entries=4, show_spinner=False)
def counts(path, fingerprint, _dataset):
    """{split: {emotion: faces}} of the decoded dataset (rows or files that cannot be read are not counted)."""
    return {split: _dataset.load(split).counts() for split in _dataset.splits}


@st.cache_data(max_entries=8, show_spinner=False)
def mean_faces(path, fingerprint, split, _dataset):
    """uint8 [7, 48, 48]: the mean face of each class in `split`."""
    return explore.mean_faces(_dataset.load(split)).round().astype("uint8")


@st.cache_data(max_entries=8, show_spinner=False)
def histograms(path, fingerprint, split, _dataset):
    """Per class of `split`, or per split when `split` is None."""
    if split is None:
        return explore.histograms_by_split({s: _dataset.load(s) for s in _dataset.splits})
    return explore.histograms_by_class(_dataset.load(split))


@st.cache_data(max_entries=4, show_spinner="Checking for blank and duplicate faces…")
def quality(path, fingerprint, _dataset):
    """(near-blank faces, duplicate summary, duplicate table rows) over every split."""
    splits = {s: _dataset.load(s) for s in _dataset.splits}
    groups = explore.describe_duplicates(splits)
    return explore.blank_faces(splits), explore.duplicate_summary(groups), explore.duplicate_rows(groups)


@st.cache_data(max_entries=4, show_spinner="Classifying the val faces…")
def mistakes(path, fingerprint, model, sha256, _dataset, _recognizer):
    """explore.Mistakes of the recognizer (keyed by its model name and weights' sha256) on val."""
    val = _dataset.load("val")
    return explore.misclassified(explore.classify_in_batches(_recognizer.classify, val.images), val.labels)


def face_grid(images, captions=None):
    """Faces in rows of explore.PAGE_COLUMNS."""
    columns = st.columns(explore.PAGE_COLUMNS)
    for k, image in enumerate(images):
        columns[k % explore.PAGE_COLUMNS].image(image, caption=captions[k] if captions else None, width="stretch")


def pager(n, key):
    """A page-number box for n items; returns the chosen page (1-based)."""
    pages = explore.page_count(n)
    return st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key=key)


def explain_missing(problem=None):
    """How to get FER2013, then the class counts the model cards recorded."""
    if problem:
        st.warning(problem)
    else:
        st.info("No FER2013 dataset configured.")
    st.markdown(HOW_TO_GET)
    for data in explore.recorded_datasets(read_cards()):
        st.subheader("What the model cards record")
        st.caption(f"Models {', '.join(data['models'])} were trained on {data['source']} "
                   f"(fingerprint `{str(data['fingerprint'])[:16]}…`) with these faces per class:")
        st.plotly_chart(explore.distribution_figure(data["counts"]), key=f"card_counts_{data['fingerprint']}")
        st.dataframe(data["counts"])


def show_skipped(box, dataset):
    """Rows or files of the dataset that could not be read, each named with why; the rest loaded."""
    if not dataset.problems:
        return
    with box.container():
        st.warning(f"{len(dataset.problems)} entries of {dataset.path.name} could not be read and were skipped; "
                   "everything else is shown below.")
        with st.expander("Skipped entries"):
            st.code("\n".join(dataset.problems), language=None)


def section_samples(dataset):
    """A page of faces of the chosen split and class; returns the split."""
    st.subheader("Faces")
    left, right = st.columns(2)
    split = left.selectbox("Split", dataset.splits, key="explore_split")
    label = right.selectbox("Class", range(len(EMOTIONS)), format_func=EMOTIONS.__getitem__, key="explore_class")
    data = dataset.load(split)
    indices = explore.class_indices(data.labels, label)
    page = pager(len(indices), f"explore_page_{split}_{label}")
    st.caption(f"{len(indices)} {EMOTIONS[label]} faces in {split}.")
    shown = explore.page_slice(indices, page)
    face_grid([data.images[i] for i in shown])
    return split


def section_means_and_histograms(path, dataset, split):
    """The mean face per class of `split`, and grey-level histograms per class or per split."""
    fingerprint = dataset.fingerprint()
    st.subheader(f"Mean face per class ({split})")
    class_counts = counts(path, fingerprint, dataset)[split]
    st.image(list(mean_faces(path, fingerprint, split, dataset)), width=120,  # room for "surprise (n=3171)"
             caption=[f"{e} (n={class_counts[e]})" for e in EMOTIONS])
    st.subheader("Pixel intensities")
    by = st.radio("Histogram per", ["class", "split"], horizontal=True, key="explore_hist_by")
    st.plotly_chart(explore.histogram_figure(histograms(path, fingerprint, split if by == "class" else None, dataset)))


def section_quality(path, dataset):
    """Counts of near-blank and duplicate faces, the blank faces, and a table of duplicate groups."""
    st.subheader("Quality flags")
    blanks, summary, rows = quality(path, dataset.fingerprint(), dataset)
    a, b, c, d = st.columns(4)
    a.metric("Near-blank faces", len(blanks), help=f"grey-level std < {explore.BLANK_STD} or one grey level on "
                                                   f"≥ {explore.BLANK_MODE_SHARE:.0%} of the pixels")
    b.metric("Duplicate groups", summary["groups"], help="pixel-identical decoded 48×48 faces")
    c.metric("Groups spanning splits", summary["across_splits"])
    d.metric("Groups with conflicting labels", summary["conflicting_labels"])
    if blanks:
        face_grid([dataset.load(r["split"]).images[r["index"]] for r in blanks[:explore.PAGE_SIZE]],
                  [f"{r['split']} {r['label']} (std {r['std']:g})" for r in blanks[:explore.PAGE_SIZE]])
    if rows:
        st.caption(f"{summary['extra_copies']} extra copies in {summary['groups']} groups "
                   f"({summary['within_split']} with copies inside one split):")
        st.dataframe(rows, hide_index=True)


def section_mistakes(path, dataset):
    """The sidebar model's misclassified val faces, computed only once the toggle is on."""
    st.subheader("Misclassified val faces")
    if "val" not in dataset.splits:
        st.info("This dataset has no val split to classify.")
        return
    model, _ = ui.selection()
    if not st.toggle(f"Classify the val faces with {model or 'the default model'} (the sidebar's model)",
                     key="explore_mistakes"):
        return
    recognizer = ui.recognizer()
    if recognizer is None:
        return
    found = mistakes(path, dataset.fingerprint(), recognizer.name, recognizer.card.get("sha256"), dataset, recognizer)
    st.caption(f"{recognizer.name}: {len(found)} of {found.total} val faces misclassified "
               f"({1 - len(found) / max(found.total, 1):.2%} accurate); most confident mistakes first, "
               "captions read true → predicted (confidence).")
    label = st.selectbox("True class", [None, *range(len(EMOTIONS))], key="explore_mistakes_class",
                         format_func=lambda k: "all" if k is None else EMOTIONS[k])
    chosen = found.of_class(label)
    shown = explore.page_slice(chosen, pager(len(chosen), f"explore_mistakes_page_{label}"))
    val = dataset.load("val")
    face_grid([val.images[found.index[k]] for k in shown], [found.caption(k) for k in shown])


st.title("Dataset explorer")
path = st.text_input("FER2013 path (.zip, folder or .csv)", value=explore.env_dataset_path(), key="explore_path",
                     placeholder="/path/to/fer2013.zip").strip()
if not path:
    explain_missing()
    st.stop()
try:
    dataset = open_dataset(path, explore.source_stamp(path))
except (FerError, OSError, ValueError) as e:
    explain_missing(f"Cannot read a FER2013 dataset at `{path}`: {e}")
    st.stop()

fingerprint = dataset.fingerprint()
trained_on = explore.matching_models(fingerprint, read_cards())
st.caption(f"{dataset.path.name} ({dataset.layout}), fingerprint `{fingerprint[:16]}…`"
           + (f": the dataset {', '.join(trained_on)} were trained on." if trained_on else "."))
skipped_box = st.empty()  # filled at the end: decoding the splits may skip more files or rows
st.subheader("Class distribution")
st.plotly_chart(explore.distribution_figure(counts(path, fingerprint, dataset)))
split = section_samples(dataset)
section_means_and_histograms(path, dataset, split)
section_quality(path, dataset)
section_mistakes(path, dataset)
show_skipped(skipped_box, dataset)
