"""Imports point down the layers of docs/architecture.md: a module imports its own layer or below.

Every module under ``autopeft/`` is parsed with :mod:`ast`; every import counts, wherever it
stands: at the top, inside a function (a lazy import is still a dependency), or under
``if TYPE_CHECKING`` (a type names a dependency too). ``importlib.import_module`` calls count
when their argument is a string or an f-string with a constant ``autopeft.`` prefix.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = REPOSITORY / "autopeft"
DOC = REPOSITORY / "docs" / "architecture.md"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("autopeft.errors", "autopeft.options", "autopeft.trials", "autopeft.bundled")),
    ("domain", ("autopeft.space", "autopeft.tasks")),
    ("models", ("autopeft.models",)),
    ("structures", ("autopeft.injection", "autopeft.allocation")),
    ("search", ("autopeft.objectives", "autopeft.optimizers")),
    ("store", ("autopeft.store",)),
    ("results", ("autopeft", "autopeft.api", "autopeft.export", "autopeft.reports", "autopeft.plots")),
    ("workers", ("autopeft.worker",)),
    ("jobs", ("autopeft.scheduler", "autopeft.training")),
    ("service", ("autopeft.service", "autopeft.integrations")),
    ("cli", ("autopeft.cli", "autopeft.__main__")),
)
"""The layers, lowest first, each with the modules and packages it holds (a package holds its
submodules). ``autopeft`` is the package root alone (``__version__`` and the lazy ``apply``), not
every module under it. The one table of ranks; docs/architecture.md describes it."""


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The rank of ``module`` (its longest listed prefix), or None when no entry holds it."""
    best: tuple[int, int] | None = None
    for rank, (_, names) in enumerate(layers):
        for name in names:
            root_only = "." not in name  # the package root holds only itself
            if module == name or (not root_only and module.startswith(name + ".")):
                if best is None or len(name) > best[1]:
                    best = (rank, len(name))
    return None if best is None else best[0]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, importer: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """Every ``autopeft`` module that ``source`` (the module ``importer``) imports, anywhere in it.

    ``from package import name`` depends on ``package.name`` when that is a module (in ``known``),
    else on ``package``.
    """
    here = importer if is_package else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
        elif isinstance(node, ast.Call) and _called_name(node.func) == "import_module" and node.args:
            target = _constant_prefix(node.args[0])
            if target:
                yield target.rstrip(".")


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _constant_prefix(arg: ast.expr) -> str | None:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return arg.values[0].value
    return None


def upward_imports(sources: dict[str, tuple[str, bool]], layers=LAYERS) -> tuple[list[str], list[str]]:
    """``importer -> imported`` for every import of a higher layer, and the modules no layer holds.

    ``sources`` maps a module name to its source text and whether it is a package.
    """
    known = set(sources)
    upward, unplaced = [], sorted(m for m in sources if layer_of(m, layers) is None)
    for importer, (source, is_package) in sorted(sources.items()):
        own = layer_of(importer, layers)
        for imported in sorted(set(imported_modules(source, importer, is_package, known))):
            if imported != "autopeft" and not imported.startswith("autopeft."):
                continue
            rank = layer_of(imported, layers)
            if rank is None:
                unplaced.append(imported)
            elif own is not None and rank > own:
                upward.append(f"{importer} -> {imported}")
    return upward, sorted(set(unplaced))


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    return {
        module_name(path, root): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(root.rglob("*.py"))
    }


def test_every_import_points_down_the_layers():
    upward, unplaced = upward_imports(package_sources())
    assert not unplaced, "modules in no layer of LAYERS: " + ", ".join(unplaced)
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_an_upward_import_is_reported_wherever_it_stands():
    """Guards the checker: top-level, lazy, TYPE_CHECKING and import_module imports all count."""
    sources = {
        "autopeft.objectives": ("from autopeft.store.store import TrialRecord\n", False),
        "autopeft.export.source": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from autopeft.worker import pool\n"
            "def stored():\n    from autopeft.scheduler.spec import StoredJob\n    return StoredJob\n",
            False,
        ),
        "autopeft.space.layout": ("import importlib\nimportlib.import_module('autopeft.models.loading')\n", False),
        "autopeft.tasks": ("from . import glue\nfrom ..store import Store\n", True),
        "autopeft.tasks.glue": ("", False),
        "autopeft.store": ("from autopeft.trials import TrialState\n", True),
        "autopeft.store.store": ("", False),
        "autopeft.worker.pool": ("", False),
        "autopeft.scheduler.spec": ("", False),
        "autopeft.models.loading": ("", False),
        "autopeft.brand_new": ("from autopeft.errors import AutopeftError\n", False),
    }
    upward, unplaced = upward_imports(sources)
    assert upward == [
        "autopeft.export.source -> autopeft.scheduler.spec",
        "autopeft.export.source -> autopeft.worker.pool",
        "autopeft.objectives -> autopeft.store.store",
        "autopeft.space.layout -> autopeft.models.loading",
        "autopeft.tasks -> autopeft.store",
    ]
    assert unplaced == ["autopeft.brand_new"]


def documented_layers(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """The rows of the doc's layer table: ``| rank | layer | `module`, `module` | ... |``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            rows.append((cells[1], tuple(re.findall(r"`(autopeft[\w.]*)`", cells[2]))))
    return rows


def test_the_documented_layers_are_the_checked_ones():
    assert documented_layers(DOC.read_text(encoding="utf-8")) == list(LAYERS)
