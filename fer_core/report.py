"""The README's results table, generated from the model cards (never typed by hand)."""
import re
from pathlib import Path

from .cards import MAX_SHIPPED_BYTES, read_cards, val_accuracy

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _pct(metrics, key="accuracy"):
    return f"{metrics[key]:.2%}" if metrics and key in metrics else "-"


def results_markdown(cards=None) -> str:
    cards = sorted(read_cards() if cards is None else cards, key=val_accuracy, reverse=True)
    rows = ["| model | arch | params | val acc | val acc (flip TTA) | val macro-F1 | CPU ms/face | epochs | default |",
            "|---|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for c in cards:
        m = c.get("metrics", {})
        ms = c.get("cpu_ms_per_face", {}).get("batch1", {}).get("median")
        name = f"{c['name']} †" if c.get("not_shipped") else c["name"]
        rows.append(f"| {name} | {c['arch']} | {c.get('params', 0) / 1e6:.2f}M | {_pct(m.get('val'))} | "
                    f"{_pct(m.get('val_tta'))} | {m.get('val', {}).get('macro_f1', 0):.3f} | "
                    f"{ms if ms is not None else '-'} | {len(c.get('history', [])) or '-'} | "
                    f"{'yes' if c.get('default') else ''} |")
    if any(c.get("not_shipped") for c in cards):
        rows.append(f"\n† card only: the fp16 weights are over {MAX_SHIPPED_BYTES / 2**20:g} MiB, so the repository "
                    "does not ship them and the app cannot load this model (its card says where the file was kept).")
    return "\n".join(rows)


def update_readme(path="README.md", cards=None) -> bool:
    """Rewrite the table between the markers; returns True when the file changed."""
    path = Path(path)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} markers")
    new = re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: f"{START}\n{results_markdown(cards)}\n{END}",
                 text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text
