"""The results table every view of the models shares (README, `python -m fer_core models`, the dashboard),
built from the model cards by one function, `results_rows`; and the README's copy of it.

A row holds the model's FER2013 val accuracy (plain and with flip TTA) and macro-F1, its accuracy on
every other dataset the cards were measured on (a column per dataset key: `wild_photos val acc`), the
mean accuracy over the robustness corruptions when a card has them, its size and CPU latency, and the same two
figures for its int8 build (what the app runs: FER2013 val accuracy and latency) when it has one.
`family_rows` folds seed families (`vgg13_gpu0` ... `vgg13_gpu5`) into one row: the mean, with the
standard deviation across seeds beside FER2013's accuracy.
"""
import re
import statistics
from pathlib import Path

from ..models.card_schema import PRIMARY, accuracy, split_metrics
from ..models.cards import MAX_SHIPPED_BYTES, default_name, read_cards, val_accuracy

START, END = "<!-- results:start -->", "<!-- results:end -->"
ACC, TTA, F1 = f"{PRIMARY} val acc", f"{PRIMARY} val acc (TTA)", f"{PRIMARY} val macro-F1"
ROBUST = "corrupted acc (mean)"
INT8_ACC, INT8_MS = "int8 val acc", "int8 ms/face"  # the card's int8 block: FER2013 val, batch-1 median
SPREAD = f"{ACC} sd"  # family rows: standard deviation across seeds (0 for a single model)
FAMILY = re.compile(r"^(.*?)(\d+)$")


def datasets(cards) -> list:
    """Dataset keys the cards hold metrics for: FER2013 first, then the others by name."""
    found = {ds for c in cards for ds in c["metrics"]}
    return [PRIMARY] + sorted(found - {PRIMARY})


def dataset_column(dataset) -> str:
    return ACC if dataset == PRIMARY else f"{dataset} val acc"


def columns(cards) -> list:
    """The keys of every row `results_rows(cards)` builds, in display order."""
    cols = ["model", "arch", "default", "shipped", ACC, TTA, F1]
    cols += [dataset_column(ds) for ds in datasets(cards)[1:]]
    if any(c.get("robustness") for c in cards):
        cols.append(ROBUST)
    return cols + ["params", "size (MB)", "CPU ms/face", INT8_ACC, INT8_MS, "epochs", "seeds"]


def results_rows(cards, default=None) -> list:
    """One dict per card (in the given order) with the `columns(cards)` keys; None where a card has no figure.

    `default` is the default model's name (weights/DEFAULT: `cards.default_name()`)."""
    cols = columns(cards)
    rows = []
    for c in cards:
        f1 = (split_metrics(c) or {}).get("macro_f1")
        ms = ((c.get("cpu_ms_per_face") or {}).get("batch1") or {}).get("median")
        q = c.get("int8") or {}
        row = {"model": c["name"], "arch": c["arch"], "default": c["name"] == default,
               "shipped": not c.get("not_shipped"), ACC: accuracy(c), TTA: accuracy(c, PRIMARY, "val_tta"), F1: f1,
               "params": c.get("params"), "size (MB)": round(c["size_bytes"] / 1e6, 3) if c.get("size_bytes") else None,
               "CPU ms/face": ms, INT8_ACC: accuracy(q),
               INT8_MS: ((q.get("cpu_ms_per_face") or {}).get("batch1") or {}).get("median"),
               "epochs": len(c.get("history") or []) or None, "seeds": 1}
        row.update({dataset_column(ds): accuracy(c, ds) for ds in datasets(cards)[1:]})
        if ROBUST in cols:
            row[ROBUST] = (c.get("robustness") or {}).get("mean")
        rows.append({k: row[k] for k in cols})
    return rows


def family(name: str):
    """`vgg13_gpu3` -> `vgg13_gpu*`; None for a name without a trailing number."""
    m = FAMILY.match(name)
    return f"{m.group(1)}*" if m and m.group(1) else None


def families(cards) -> dict:
    """{family label: [names]} for every two or more cards of one architecture that differ only in a trailing
    number (seeds of one recipe); ensembles and fine-tunes of a shipped model (`vgg13_s_wild2` -> `vgg13_s_wild3`
    are steps, not seeds) are never folded."""
    groups = {}
    for c in cards:
        label = family(c["name"])
        if label and c["arch"] != "ensemble" and not c.get("initialized_from"):
            groups.setdefault((label, c["arch"]), []).append(c["name"])
    return {label: sorted(names) for (label, _), names in groups.items() if len(names) > 1}


def family_rows(rows, cards) -> list:
    """`rows` with each seed family's rows replaced (where its first member was) by one row: the mean of each
    number, `seeds` = how many, and SPREAD = the standard deviation of FER2013 val accuracy across them."""
    members = {n: label for label, names in families(cards).items() for n in names}
    out, done = [], set()
    for row in rows:
        label = members.get(row["model"])
        if label is None:
            out.append({**row, SPREAD: 0.0 if row[ACC] is not None else None})
            continue
        if label in done:
            continue
        done.add(label)
        group = [r for r in rows if members.get(r["model"]) == label]
        folded = {**group[0], "model": label, "default": any(r["default"] for r in group),
                  "shipped": all(r["shipped"] for r in group), "seeds": len(group)}
        for key in group[0].keys() - {"model", "arch", "default", "shipped", "seeds"}:
            values = [r[key] for r in group if r[key] is not None]  # the mean of the seeds that have it
            folded[key] = round(statistics.fmean(values), 6) if values else None
        accs = [r[ACC] for r in group if r[ACC] is not None]
        folded[SPREAD] = round(statistics.stdev(accs), 6) if len(accs) > 1 else None
        out.append(folded)
    return out


def _pct(value):
    return f"{value:.2%}" if value is not None else "-"


def _num(value):
    return f"{value}" if value is not None else "-"


def results_markdown(cards=None, default=None) -> str:
    """The README table: one line per card, best FER2013 val accuracy first."""
    if cards is None:
        cards, default = read_cards(), default_name()
    cards = sorted(cards, key=val_accuracy, reverse=True)
    rows = results_rows(cards, default)
    others = [dataset_column(ds) for ds in datasets(cards)[1:]] + ([ROBUST] if rows and ROBUST in rows[0] else [])
    head = ["model", "arch", "params", "val acc", "val acc (flip TTA)", "val macro-F1", *others, "CPU ms/face",
            INT8_ACC, INT8_MS, "epochs", "default"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 3) + ":---:|"]
    for r in rows:
        cells = [f"{r['model']} †" if not r["shipped"] else r["model"], r["arch"],
                 f"{(r['params'] or 0) / 1e6:.2f}M", _pct(r[ACC]), _pct(r[TTA]),
                 f"{r[F1]:.3f}" if r[F1] is not None else "-", *(_pct(r[k]) for k in others),
                 _num(r["CPU ms/face"]), _pct(r[INT8_ACC]), _num(r[INT8_MS]), f"{r['epochs'] or '-'}",
                 "yes" if r["default"] else ""]
        lines.append("| " + " | ".join(cells) + " |")
    note = machines_note(cards)
    if note:
        lines.append("\n" + note)
    if not all(r["shipped"] for r in rows):
        lines.append(f"\n† card only: the fp16 weights are over {MAX_SHIPPED_BYTES / 2**20:g} MiB, so the repository "
                     "does not ship them and the app cannot load this model (its card says where the file was kept).")
    return "\n".join(lines)


def machines_note(cards) -> str:
    """Which CPU the table's ms/face figures were measured on (batch 1, median), as the cards record it."""
    timings = [(c["name"], t) for c in cards
               for t in (c.get("cpu_ms_per_face"), (c.get("int8") or {}).get("cpu_ms_per_face")) if t]
    found = {(t["cpu"], t["cores"], " ".join(t["flags"]) or "no AVX2") for _, t in timings if "flags" in t}
    unknown = sorted({name for name, t in timings if "flags" not in t})
    if not found:
        return (f"ms/face: batch 1, median; measured before cards named the CPU's flags: {', '.join(unknown)}."
                if unknown else "")
    if len(found) == 1:
        cpu, cores, flags = found.pop()
        note = f"ms/face: batch 1, median, on {cpu} with {cores} cores ({flags}); other CPUs differ (docs/speed.md)."
    else:
        note = (f"ms/face: batch 1, median, on {len(found)} different CPUs (each card names its own): compare them "
                "only on one machine, `python -m fer_core benchmark --write-card` (docs/speed.md).")
    return note + (f" Measured before cards named the CPU's flags: {', '.join(unknown)}." if unknown else "")


def update_readme(path="README.md", cards=None, default=None) -> bool:
    """Rewrite the table between the markers; returns True when the file changed."""
    path = Path(path)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} markers")
    table = results_markdown(cards, default)
    new = re.sub(f"{re.escape(START)}.*?{re.escape(END)}", lambda _: f"{START}\n{table}\n{END}", text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text
