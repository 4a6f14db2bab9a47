"""The package layout shows and keeps the direction of dependencies (docs/architecture.md):
app helpers -> inference -> models -> data, and training -> models -> data.

Every import in fer_core, at the top of a module or inside a function, is read with `ast` and checked
against what its sub-package may import. The entry points (cli.py, __main__.py, __init__.py) may import
anything; errors.py, atomic.py and ort_options.py, which every layer may use, import nothing of fer_core.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fer_core"
BASE = {"errors", "atomic", "ort_options"}  # usable by every layer; they import nothing of fer_core
ENTRY = {"__init__", "__main__", "cli"}  # the public names and `python -m fer_core`: may import anything
MAY_IMPORT = {  # sub-package -> what its modules may import (besides BASE)
    "data": {"data"},
    "models": {"models", "data"},
    "training": {"training", "models", "data"},
    "inference": {"inference", "models", "data"},
    "app": {"app", "inference", "models", "data"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set:
    """Absolute names of everything of fer_core that `path` imports, anywhere in the file (lazy imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}"))
    return {n for n in found if n == "fer_core" or n.startswith("fer_core.")}


def is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def place(name: str) -> str:
    """The part of fer_core a module name belongs to: a sub-package, a root module, or "" for fer_core itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_place():
    loose = [p.relative_to(ROOT).as_posix() for p in SOURCES
             if p.parent == PACKAGE and p.stem not in BASE | ENTRY]
    assert not loose, f"modules at fer_core's root outside the layers (put each in a sub-package): {loose}"
    unknown = {p.parent.name for p in SOURCES if p.parent != PACKAGE} - MAY_IMPORT.keys()
    assert not unknown, f"sub-packages this test does not know (give each its place in MAY_IMPORT): {unknown}"
    for layer in MAY_IMPORT:
        assert (PACKAGE / layer / "__init__.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_point_down(path):
    name = module_name(path)
    where = place(name) if path.parent != PACKAGE else path.stem
    if where in ENTRY or where == "":
        return
    allowed = set() if where in BASE else MAY_IMPORT[where] | BASE
    wrong = sorted(n for n in imported(path) if place(n) not in allowed)
    assert not wrong, (f"{path.relative_to(ROOT)} imports {', '.join(wrong)}; "
                       f"{where} may import only {', '.join(sorted(allowed)) or 'nothing of fer_core'}")


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_sub_packages_do_nothing_when_imported(layer):
    """A sub-package's __init__ is its docstring alone: importing fer_core.models.cards must not load torch
    through fer_core.models (the first page shows before PyTorch loads: tests/test_first_page.py)."""
    body = ast.parse((PACKAGE / layer / "__init__.py").read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), (
        f"fer_core/{layer}/__init__.py should hold only its docstring")


def test_the_streamlit_side_never_trains():
    """app.py, ui.py and the pages use the app helpers, inference, models and data; never training or the CLI."""
    for path in [ROOT / "app.py", ROOT / "ui.py", *sorted((ROOT / "app_pages").glob("*.py"))]:
        wrong = sorted(n for n in imported(path) if place(n) in {"training", "cli", "__main__"})
        assert not wrong, f"{path.relative_to(ROOT)} imports {', '.join(wrong)}"

