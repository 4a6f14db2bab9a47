"""The README's results table is generated from the shipped cards (report.results_rows, the builder the
dashboard and `python -m fer_core models` use too) and kept in sync with them."""
import re
from pathlib import Path

from fer_core.app.report import END, START, machines_note, results_markdown, results_rows, update_readme
from helpers_cards import v2_card, with_metrics

REPO = Path(__file__).resolve().parent.parent


def _card(name, arch, params, acc, f1, tta=None, **extra):
    card = v2_card(name, arch, params=params, **extra)
    card = with_metrics(card, "fer2013", "val", {"accuracy": acc, "macro_f1": f1})
    return with_metrics(card, "fer2013", "val_tta", {"accuracy": tta}) if tta is not None else card


def test_table_rows_come_from_cards():
    int8 = {"metrics": {"fer2013": {"val": {"accuracy": 0.6498}}}, "cpu_ms_per_face": {"batch1": {"median": 0.41}}}
    cards = [_card("a", "cnn", 980199, 0.6512, 0.61, 0.6601, history=[{}] * 3,
                   cpu_ms_per_face={"batch1": {"median": 2.5}}, int8=int8),
             _card("b", "vgg13", 7049543, 0.7001, 0.68)]
    table = results_markdown(cards, default="a").splitlines()
    assert len(table) == 6 and table[4] == "" and table[5].startswith("ms/face: batch 1, median")
    assert table[2].startswith("| b | vgg13 | 7.05M | 70.01% | - | 0.680 |")  # sorted by val accuracy
    assert table[3] == "| a | cnn | 0.98M | 65.12% | 66.01% | 0.610 | 2.5 | 64.98% | 0.41 | 3 | yes |"
    rows = results_rows(cards, "a")
    assert [r["default"] for r in rows] == [True, False]
    assert (rows[0]["int8 val acc"], rows[0]["int8 ms/face"]) == (0.6498, 0.41)
    assert (rows[1]["int8 val acc"], rows[1]["int8 ms/face"]) == (None, None)  # no int8 build


def test_other_datasets_and_robustness_get_columns():
    photos = with_metrics(_card("p", "cnn", 1e6, 0.6, 0.5), "wild_photos", "val", {"accuracy": 0.4321})
    robust = _card("r", "cnn", 1e6, 0.62, 0.5, robustness={"clean": 0.62, "corruptions": {}, "mean": 0.55})
    lines = results_markdown([photos, robust]).splitlines()
    assert lines[0] == ("| model | arch | params | val acc | val acc (flip TTA) | val macro-F1 | wild_photos val acc "
                        "| corrupted acc (mean) | CPU ms/face | int8 val acc | int8 ms/face | epochs | default |")
    assert lines[2] == "| r | cnn | 1.00M | 62.00% | - | 0.500 | - | 55.00% | - | - | - | - |  |"
    assert lines[3] == "| p | cnn | 1.00M | 60.00% | - | 0.500 | 43.21% | - | - | - | - | - |  |"


def test_update_readme_rewrites_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    cards = [_card("x", "cnn", 1e6, 0.5, 0.4)]
    assert update_readme(readme, cards) is True
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text and "| x | cnn |" in text
    assert update_readme(readme, cards) is False


def test_repo_readme_matches_shipped_cards():
    text = (REPO / "README.md").read_text()
    table = re.search(f"{re.escape(START)}\n(.*?)\n?{re.escape(END)}", text, re.S).group(1)
    assert table.strip() == results_markdown().strip(), "run: python -m fer_core results --readme README.md"


def test_a_card_without_shipped_weights_is_marked_and_explained():
    cards = [_card("r18", "resnet18", 11171271, 0.65, 0.6, not_shipped="22.3 MiB in fp16"),
             _card("s", "vgg13_s", 1764519, 0.6, 0.5)]
    lines = results_markdown(cards).splitlines()
    assert lines[2].startswith("| r18 † | resnet18 | 11.17M | 65.00% |") and lines[3].startswith("| s | vgg13_s |")
    assert lines[-1].startswith("† card only: the fp16 weights are over 16 MiB")
    assert "†" not in results_markdown(cards[1:])


def test_the_table_says_which_cpu_its_timings_come_from():
    epyc = {"cpu": "AMD EPYC", "cores": 2, "flags": ["avx2", "avx512f"]}
    a = _card("a", "cnn", 1e6, 0.6, 0.5, cpu_ms_per_face={"batch1": {"median": 1.0}, **epyc},
              int8={"cpu_ms_per_face": {"batch1": {"median": 0.2}, **epyc}})
    old = _card("old", "cnn", 1e6, 0.5, 0.5, cpu_ms_per_face={"batch1": {"median": 3.0}, "cpu": "AMD EPYC"})
    assert "on AMD EPYC with 2 cores (avx2 avx512f)" in results_markdown([a])
    assert "Measured before cards named the CPU's flags: old." in results_markdown([a, old])
    other = _card("b", "cnn", 1e6, 0.55, 0.5, cpu_ms_per_face={"batch1": {"median": 4.0}, "cpu": "Intel Xeon",
                                                             "cores": 2, "flags": ["avx2"]})
    assert "on 2 different CPUs" in results_markdown([a, other])
    assert machines_note([old]) == "ms/face: batch 1, median; measured before cards named the CPU's flags: old."
    assert machines_note([_card("bare", "cnn", 1e6, 0.5, 0.5)]) == ""  # no timings: no note
