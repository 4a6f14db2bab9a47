"""The README's results table is generated from the shipped cards and kept in sync with them."""
import re
from pathlib import Path

from fer_core.report import END, START, results_markdown, update_readme

REPO = Path(__file__).resolve().parent.parent


def test_table_rows_come_from_cards():
    cards = [{"name": "a", "arch": "cnn", "params": 980199, "default": True, "history": [{}] * 3,
              "metrics": {"val": {"accuracy": 0.6512, "macro_f1": 0.61}, "val_tta": {"accuracy": 0.6601}},
              "cpu_ms_per_face": {"batch1": {"median": 2.5}}},
             {"name": "b", "arch": "vgg13", "params": 7049543, "metrics": {"val": {"accuracy": 0.7001, "macro_f1": 0.68}}}]
    table = results_markdown(cards).splitlines()
    assert len(table) == 4
    assert table[2].startswith("| b | vgg13 | 7.05M | 70.01% | - | 0.680 |")  # sorted by val accuracy
    assert table[3] == "| a | cnn | 0.98M | 65.12% | 66.01% | 0.610 | 2.5 | 3 | yes |"


def test_update_readme_rewrites_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    cards = [{"name": "x", "arch": "cnn", "params": 1e6, "metrics": {"val": {"accuracy": 0.5, "macro_f1": 0.4}}}]
    assert update_readme(readme, cards) is True
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text and "| x | cnn |" in text
    assert update_readme(readme, cards) is False


def test_repo_readme_matches_shipped_cards():
    text = (REPO / "README.md").read_text()
    table = re.search(f"{re.escape(START)}\n(.*?)\n?{re.escape(END)}", text, re.S).group(1)
    assert table.strip() == results_markdown().strip(), "run: python -m fer_core results --readme README.md"


def test_a_card_without_shipped_weights_is_marked_and_explained():
    cards = [{"name": "r18", "arch": "resnet18", "params": 11171271, "not_shipped": "22.3 MiB in fp16",
              "metrics": {"val": {"accuracy": 0.65, "macro_f1": 0.6}}},
             {"name": "s", "arch": "vgg13_s", "params": 1764519, "metrics": {"val": {"accuracy": 0.6, "macro_f1": 0.5}}}]
    lines = results_markdown(cards).splitlines()
    assert lines[2].startswith("| r18 † | resnet18 | 11.17M | 65.00% |") and lines[3].startswith("| s | vgg13_s |")
    assert lines[-1].startswith("† card only: the fp16 weights are over 16 MiB")
    assert "†" not in results_markdown(cards[1:])
