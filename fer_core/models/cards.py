"""Shipped weights that describe themselves: weights/NAME.pt (fp16 state dict) + weights/NAME.json.

The card (one schema: card_schema.py) holds the architecture and its args, how to preprocess a face,
metrics per dataset, history, recipe, dataset fingerprints, hardware, latency and the sha256 of the
.pt. Loading checks that sha256 before unpickling anything and unpickles with `weights_only=True`.
The default model is named once, in weights/DEFAULT.
"""
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from ..atomic import write_atomic
from ..errors import WeightsError
from . import card_schema

log = logging.getLogger(__name__)
REPO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
MAX_SHIPPED_BYTES = 16 * 2**20  # largest weights file kept in weights/ (and so in the repository and the Space)


def weights_dir(path=None) -> Path:
    return Path(path or os.environ.get("FER_WEIGHTS_DIR") or REPO_WEIGHTS)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model, card: dict, directory=None, overflow_dir=None) -> Path:
    """Write NAME.pt in fp16 and NAME.json with the file's sha256 and size; returns the card path.

    A file over MAX_SHIPPED_BYTES is moved to `overflow_dir` (the run folder) and the card says why it is
    not shipped: the dashboard still compares its metrics, but the app cannot load it.
    """
    import torch
    d = weights_dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = card["name"]
    pt = d / f"{name}.pt"
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    write_atomic(pt, lambda p: torch.save(state, p))
    size = pt.stat().st_size
    card = {**card, "weights_file": pt.name, "dtype": "float16", "size_bytes": size, "sha256": sha256_file(pt)}
    card.pop("not_shipped", None)
    card.pop("kept_at", None)
    if size > MAX_SHIPPED_BYTES:
        if overflow_dir is None:
            pt.unlink()
            raise WeightsError(f"{name}: {size / 2**20:.1f} MiB in fp16 is over the {MAX_SHIPPED_BYTES / 2**20:g} MiB "
                               "limit on shipped weights, and no folder was given to keep it in")
        kept = Path(overflow_dir) / pt.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(pt, kept)  # the run folder may be on another file system
        card.update(weights_file=None, kept_at=f"{Path(overflow_dir).name}/{pt.name}", not_shipped=(
            f"its fp16 weights are {size / 2**20:.1f} MiB, over the {MAX_SHIPPED_BYTES / 2**20:g} MiB limit "
            f"on files in weights/; the file was kept in the run folder {Path(overflow_dir).name}/ of the "
            "machine that trained it"))
    write_card(card, d)
    return d / f"{name}.json"


def write_card(card: dict, directory=None):
    """Write a card after checking it against the schema (a card that does not follow it is not written)."""
    card_schema.check(card, f"card {card.get('name')!r}")
    path = weights_dir(directory) / f"{card['name']}.json"
    write_atomic(path, lambda p: p.write_text(json.dumps(card, indent=1) + "\n"))


def parse_card(text: str, origin="card") -> dict:
    """A card from its JSON text: a version-1 card is migrated, then the card is checked against the schema."""
    card = json.loads(text)
    if not isinstance(card, dict) or not {"name", "arch"} <= card.keys():
        raise WeightsError(f"{origin} lacks 'name' or 'arch'")
    return card_schema.check(card_schema.migrate(card), origin)


def read_cards(directory=None) -> list:
    """Every valid card in the weights folder, sorted by name; unreadable or invalid ones are logged and skipped."""
    cards = []
    d = weights_dir(directory)
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            cards.append(parse_card(path.read_text(), path.name))
        except (OSError, ValueError) as e:
            log.warning("skipping model card %s: %s", path, e)
    return cards


def default_name(directory=None):
    """The model named in weights/DEFAULT, or None when there is no such file."""
    path = weights_dir(directory) / "DEFAULT"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def find_card(name=None, directory=None) -> dict:
    """The card called `name`, or the default one when `name` is None."""
    cards = read_cards(directory)
    if not cards:
        raise WeightsError(f"no shipped models: {weights_dir(directory)} holds no model cards (*.json)")
    if name is None:
        shipped = [c for c in cards if not c.get("not_shipped")] or cards
        default = default_name(directory)
        defaults = [c for c in shipped if c["name"] == default]
        return defaults[0] if defaults else max(shipped, key=val_accuracy)
    for c in cards:
        if c["name"] == name:
            return c
    raise WeightsError(f"unknown model {name!r}; shipped: {', '.join(c['name'] for c in cards)}")


def member_cards(card: dict, directory=None) -> list:
    """The cards of an ensemble's members, refusing (WeightsError) members whose weights changed since the
    ensemble was measured."""
    found = []
    for m in card.get("members", []):
        member = find_card(m["name"], directory)
        if member.get("sha256") != m.get("sha256"):
            raise WeightsError(f"ensemble {card['name']!r}: member {m['name']!r} has other weights than the ones it "
                               f"was measured with; rebuild it with: python -m fer_core ensemble ...")
        found.append(member)
    return found


def val_accuracy(card: dict, dataset=card_schema.PRIMARY) -> float:
    """Accuracy on `dataset`'s val split (0 when not measured): what models are ranked by."""
    return card_schema.accuracy(card, dataset) or 0.0


def load_model(name=None, directory=None, device="cpu"):
    """(model in eval mode, card) for a shipped model, after checking its weights' sha256."""
    card = find_card(name, directory)
    if card["arch"] == "ensemble":
        from . import ensemble
        return ensemble.load(card, directory, device), card
    problem = weights_problem(card, directory)
    if problem:
        raise WeightsError(problem if card.get("not_shipped") else f"{problem}; restore it or export the model again")
    return load_file(weights_path(card, directory), card).to(device).eval(), card


def weights_path(card: dict, directory=None) -> Path:
    """Where the card's fp16 file is: in the weights folder, or where a not-shipped one was kept."""
    if card.get("not_shipped"):
        return Path(card["kept_at"])
    return weights_dir(directory) / card.get("weights_file", f"{card['name']}.pt")


def load_file(pt: Path, card: dict):
    """The card's architecture with the fp16 state dict in `pt` (as float32), in train mode."""
    import torch  # here, not at the top: reading cards (the app's first page) needs no PyTorch

    from .registry import create_model
    try:
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model = create_model(card["arch"], **card.get("arch_args", {}))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except Exception as e:  # a foreign pickle, wrong shapes, a truncated zip: all mean "bad weights file"
        raise WeightsError(f"{pt} could not be loaded as {card['arch']}: {e}") from None
    return model


def weights_problem(card: dict, directory=None, digests=None, by_name=None):
    """Why `card`'s model cannot load (a message naming the file), or None when its weights are intact.

    Checks what load_model checks before unpickling: the .pt exists and matches the card's sha256; an
    ensemble is intact when every member is and still has the weights the ensemble was measured with.
    `digests` ({path: sha256} already computed) and `by_name` ({name: card} of the folder) spare work when
    many cards are checked at once (`weights_problems`).
    """
    if card.get("arch") == "ensemble":
        others = by_name if by_name is not None else {c["name"]: c for c in read_cards(directory)}
        for m in card.get("members", []):
            member = others.get(m.get("name"))
            if member is None:
                return f"member {m.get('name')!r} of ensemble {card['name']!r} is not shipped"
            problem = weights_problem(member, directory, digests, others)
            if problem:
                return f"member {member['name']!r}: {problem}"
            if member.get("sha256") != m.get("sha256"):
                return f"member {member['name']!r} has other weights than ensemble {card['name']!r} was measured with"
        return None if card.get("members") else f"ensemble {card['name']!r} lists no members"
    if card.get("not_shipped"):
        return f"{card['name']} is not shipped: {card['not_shipped']}"
    pt = weights_path(card, directory)
    if not pt.exists():
        return f"{pt} is missing (named by the card {card['name']}.json)"
    digest = (digests or {}).get(pt) or sha256_file(pt)
    if digest != card.get("sha256"):
        return f"{pt} does not match the sha256 in {card['name']}.json (corrupt or changed)"
    return None


def weights_problems(cards_list: list, directory=None, by_name=None) -> dict:
    """{name: weights_problem} of the cards whose models cannot load. Each weights file is read once (an
    ensemble's members are other cards' files), and not at all when this process hashed it before and it has
    not changed since (`weights_digests`). `by_name`: {name: card} of the whole folder, when already read."""
    by_name = by_name if by_name is not None else {c["name"]: c for c in read_cards(directory)}
    digests = weights_digests(weights_files(cards_list, directory, by_name))
    return {c["name"]: p for c in cards_list if (p := weights_problem(c, directory, digests, by_name))}


def weights_hashed(cards_list: list, directory=None, by_name=None) -> bool:
    """Whether `weights_problems(cards_list)` would read no file: every one has a digest this process can reuse."""
    by_name = by_name if by_name is not None else {c["name"]: c for c in read_cards(directory)}
    return all(_stat_key(f) in _digests for f in weights_files(cards_list, directory, by_name))


def weights_files(cards_list: list, directory, by_name: dict) -> list:
    """The shipped weights files that exist among those of `cards_list` and their ensembles' members."""
    needed = [by_name.get(m.get("name")) for c in cards_list if c.get("arch") == "ensemble"
              for m in c.get("members", [])] + [c for c in cards_list if c.get("arch") != "ensemble"]
    files = sorted({weights_path(c, directory) for c in needed
                    if c and c.get("arch") != "ensemble" and not c.get("not_shipped")})
    return [f for f in files if f.is_file()]


_digests = {}  # {(path, size, mtime_ns, inode): sha256} of the weights files this process has hashed
RACY_S = 2  # a file changed this recently is hashed again on every check (below)


def weights_digests(files: list) -> dict:
    """{path: sha256} of `files`, two hashed at a time (hashlib lets go of the GIL: the app's sidebar checks some
    150 MB of shipped weights). A file this process hashed before is read again only when its size, mtime or
    inode changed, or when it had changed less than RACY_S before it was hashed: a second change within the
    filesystem's timestamp granularity could keep its mtime (git's "racily clean" files). Loading a model hashes
    its file afresh (`weights_problem`)."""
    from concurrent.futures import ThreadPoolExecutor
    keys = {f: _stat_key(f) for f in files}
    todo = [f for f in files if keys[f] not in _digests]
    with ThreadPoolExecutor(max_workers=2) as pool:
        fresh = dict(zip(todo, pool.map(sha256_file, todo)))
    settled = time.time_ns() - RACY_S * 10**9
    _digests.update({keys[f]: d for f, d in fresh.items() if keys[f][2] < settled})
    return {f: fresh.get(f) or _digests[keys[f]] for f in files}


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


def healthy_default(cards_list: list, directory=None, by_name=None):
    """(name of the model to preselect, {name: problem} of the broken ones): the default card if it is
    intact, else the most accurate intact one; None when none is intact."""
    problems = weights_problems(cards_list, directory, by_name)
    intact = [c for c in cards_list if c["name"] not in problems]
    if not intact:
        return None, problems
    defaults = [c for c in intact if c["name"] == default_name(directory)]
    return (defaults[0] if defaults else max(intact, key=val_accuracy))["name"], problems


def set_default(name, directory=None):
    """Name `name` as the default model in weights/DEFAULT (no card changes)."""
    cards = read_cards(directory)
    if name not in {c["name"] for c in cards}:
        raise WeightsError(f"unknown model {name!r}; shipped: {', '.join(c['name'] for c in cards)}")
    if any(c["name"] == name and c.get("not_shipped") for c in cards):
        raise WeightsError(f"{name} cannot be the default: its weights are not shipped")
    write_atomic(weights_dir(directory) / "DEFAULT", lambda p: p.write_text(name + "\n"))
