"""The "Dataset explorer" page (Streamlit AppTest, no browser): without a dataset, with a bad path, on a
small dataset with planted blanks and duplicates (from the env or typed in), its misclassified faces,
and on FER2013 when FER2013_PATH is set."""
import json
import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fer_core import EMOTIONS, EmotionRecognizer
from fer_core.app import explore
from fer_core.models.cards import find_card
from fer_core.data.fer2013 import FER2013
from helpers_data import make_csv, make_kaggle
from test_explore import FER_TRAIN, FER_VAL, make_planted

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ["Class distribution", "Faces", "Mean face per class (train)", "Pixel intensities", "Quality flags",
            "Misclassified val faces"]


def open_explorer():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/explore.py").run()
    assert not at.exception
    return at


def charts(at) -> list:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def images(at) -> list:
    """Each st.image element's captions (one list per element)."""
    return [list(i.captions) for i in at.get("image")]


@pytest.fixture
def planted_path(tmp_path):
    return make_planted(tmp_path / "fer").path


def assert_explains(at):
    text = " ".join(m.value for m in at.markdown)
    assert "FER2013_PATH" in text and "kaggle.com/datasets/msambare/fer2013" in text


@pytest.mark.slow
def test_without_a_dataset_it_explains_and_shows_the_cards_counts(monkeypatch):
    monkeypatch.delenv("FER2013_PATH", raising=False)
    at = open_explorer()
    assert at.text_input(key="explore_path").value == ""
    assert "No FER2013 dataset configured" in at.info[0].value
    assert_explains(at)
    recorded = find_card(None)["datasets"]["fer2013"]["counts"]
    figs = [f for f in charts(at) if [t["name"] for t in f["data"]] == list(recorded)]  # one per recorded dataset
    assert [[recorded[s][e] for e in EMOTIONS] for s in recorded] in [[t["y"] for t in f["data"]] for f in figs]
    table = at.dataframe[0].value
    assert table.loc["happy", "train"] == recorded["train"]["happy"]


@pytest.mark.parametrize("name,why", [("missing.zip", "dataset not found"), ("notes.txt", "unknown dataset layout")])
def test_a_bad_path_is_explained_not_raised(monkeypatch, tmp_path, name, why):
    (tmp_path / "notes.txt").write_text("not a dataset")
    monkeypatch.setenv("FER2013_PATH", str(tmp_path / name))
    at = open_explorer()
    (warning,) = at.warning
    assert name in warning.value and why in warning.value
    assert_explains(at)


def test_small_dataset_from_the_env(monkeypatch, planted_path):
    monkeypatch.setenv("FER2013_PATH", str(planted_path))
    at = open_explorer()
    assert [s.value for s in at.subheader] == SECTIONS
    assert at.text_input(key="explore_path").value == str(planted_path)
    distribution, histogram = charts(at)
    assert {t["name"]: t["y"] for t in distribution["data"]} == {"train": [6, 3, 5, 9, 4, 7, 7],
                                                                  "val": [3, 1, 3, 2, 2, 3, 2]}
    assert [t["name"] for t in histogram["data"]] == list(EMOTIONS)
    assert metrics(at) == {"Near-blank faces": "2", "Duplicate groups": "3", "Groups spanning splits": "2",
                           "Groups with conflicting labels": "1"}
    captions = images(at)
    assert captions.count([""]) == 6  # the 6 angry train faces, one image per grid cell
    assert [f"{e} (n={n})" for e, n in zip(EMOTIONS, [6, 3, 5, 9, 4, 7, 7])] in captions
    assert ["train neutral (std 0)"] in captions
    assert len(at.dataframe[0].value) == 3  # one row per duplicate group


@pytest.mark.slow
def test_class_split_and_histogram_controls(monkeypatch, planted_path):
    monkeypatch.setenv("FER2013_PATH", str(planted_path))
    at = open_explorer()
    at.selectbox(key="explore_class").set_value(EMOTIONS.index("happy"))
    at.radio(key="explore_hist_by").set_value("split").run()
    assert not at.exception
    assert images(at).count([""]) == 9
    assert [t["name"] for t in charts(at)[1]["data"]] == ["train", "val"]
    at.selectbox(key="explore_split").set_value("val").run()
    assert not at.exception
    assert "Mean face per class (val)" in [s.value for s in at.subheader]
    assert images(at).count([""]) == 2  # 2 happy faces in val


@pytest.mark.slow
def test_paging_through_a_class(monkeypatch, tmp_path):
    data = make_kaggle(tmp_path / "fer", counts={"train": [1, 1, 1, 1, 45, 1, 1], "val": [1] * 7})
    monkeypatch.setenv("FER2013_PATH", str(data.path))
    at = open_explorer()
    at.selectbox(key="explore_class").set_value(EMOTIONS.index("sad")).run()
    page = at.number_input(key="explore_page_train_4")
    assert page.value == 1 and page.max == 2 and images(at).count([""]) == 32
    page.set_value(2).run()
    assert not at.exception
    assert images(at).count([""]) == 13  # 45 = 32 + 13


@pytest.mark.slow
def test_a_typed_path_is_used(monkeypatch, planted_path):
    monkeypatch.delenv("FER2013_PATH", raising=False)
    at = open_explorer()
    assert at.info
    at.text_input(key="explore_path").input(str(planted_path)).run()
    assert not at.exception and not at.info
    assert [s.value for s in at.subheader] == SECTIONS
    assert sum(charts(at)[0]["data"][0]["y"]) == 6 + 3 + 5 + 9 + 4 + 7 + 7


@pytest.mark.parametrize("layout", ["csv", "folder"])
def test_unreadable_rows_and_files_are_named_and_the_rest_shown(monkeypatch, tmp_path, layout):
    if layout == "csv":
        data, rows = make_csv(tmp_path / "fer2013.csv", extra_lines=['3,"1 2 3",Training\n', '9,"1",Training\n'])
        named = [f"line {len(rows) + 2}: pixels must hold", f"line {len(rows) + 3}: "]
    else:
        data = make_kaggle(tmp_path / "fer")
        (data.path / "train" / "fear" / "notes.txt").write_text("not a face")
        (data.path / "train" / "fear" / "Training_9999.jpg").write_bytes(b"no jpeg here")
        named = ["train/fear/notes.txt: not an image file", "train/fear/Training_9999.jpg: not a readable image"]
    monkeypatch.setenv("FER2013_PATH", str(data.path))
    at = open_explorer()
    warning, = [w.value for w in at.warning]
    assert warning.startswith(f"2 entries of {data.path.name} could not be read and were skipped")
    listed = at.code[0].value
    assert all(n in listed for n in named), listed
    assert [s.value for s in at.subheader] == SECTIONS  # everything else still renders
    train_bars = charts(at)[0]["data"][0]["y"]
    assert sum(train_bars) == sum(data.counts["train"].values())


@pytest.mark.slow
def test_misclassified_faces_only_after_the_toggle(monkeypatch, planted_path):
    monkeypatch.setenv("FER2013_PATH", str(planted_path))
    at = open_explorer()
    assert not at.toggle(key="explore_mistakes").value
    assert not any("→" in c for caps in images(at) for c in caps)
    at.toggle(key="explore_mistakes").set_value(True).run()
    assert not at.exception
    val = FER2013(planted_path).load("val")
    rec = EmotionRecognizer(detector="haar")
    expected = explore.misclassified(rec.classify(val.images), val.labels)
    summary = [c.value for c in at.caption if "val faces misclassified" in c.value]
    assert summary == [f"{rec.name}: {len(expected)} of {len(val)} val faces misclassified "
                       f"({1 - len(expected) / len(val):.2%} accurate); most confident mistakes first, "
                       "captions read true → predicted (confidence)."]
    shown = [c for caps in images(at) for c in caps if "→" in c]  # grid cells come column by column
    assert sorted(shown) == sorted(expected.caption(k) for k in range(len(expected)))
    at.selectbox(key="explore_mistakes_class").set_value(EMOTIONS.index("angry")).run()
    shown = [c for caps in images(at) for c in caps if "→" in c]
    assert sorted(shown) == sorted(expected.caption(k) for k in expected.of_class(EMOTIONS.index("angry")))
    assert all(c.startswith("angry → ") for c in shown)


@pytest.mark.dataset
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FER2013_PATH"), reason="FER2013_PATH is not set")
def test_real_fer2013_renders_and_reruns_fast(real_cache, capsys):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    start = time.perf_counter()
    at.switch_page("app_pages/explore.py").run()
    first = time.perf_counter() - start
    assert not at.exception
    start = time.perf_counter()
    at.run()
    again = time.perf_counter() - start
    assert not at.exception
    bars = {t["name"]: t["y"] for t in charts(at)[0]["data"]}
    assert bars == {"train": FER_TRAIN, "val": FER_VAL}
    dataset = FER2013(os.environ["FER2013_PATH"])
    splits = {s: dataset.load(s) for s in dataset.splits}
    summary = explore.duplicate_summary(explore.describe_duplicates(splits))
    assert metrics(at) == {"Near-blank faces": str(len(explore.blank_faces(splits))),
                           "Duplicate groups": str(summary["groups"]),
                           "Groups spanning splits": str(summary["across_splits"]),
                           "Groups with conflicting labels": str(summary["conflicting_labels"])}
    assert images(at).count([""]) == 32  # a full first page of angry faces
    assert again < 3.0, f"a rerun on the cached dataset took {again:.1f} s"
    with capsys.disabled():
        print(f"\nexplorer on FER2013: first render {first:.2f} s, rerun {again:.2f} s")
