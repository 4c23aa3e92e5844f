"""Folders that live at the top of the repository and ship inside the wheel under another name.

``search_spaces/`` and ``storage/`` are top-level folders of the source tree (README, "Layout") that
setup.py installs as ``autopeft/_search_spaces`` and ``autopeft/_migrations``. They are plain data
folders, not import packages, so they are found by path: inside the installed package first, then
beside it in a source checkout (editable installs).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _bundled(installed_name: str, source_name: str) -> Path:
    for candidate in (_PACKAGE_DIR / installed_name, _PACKAGE_DIR.parent / source_name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"autopeft is installed without its {source_name}/ folder")


def search_spaces_dir() -> Path:
    """The shipped YAML search spaces."""
    return _bundled("_search_spaces", "search_spaces")


def migrations_dir() -> Path:
    """The Alembic environment of the trial store."""
    return _bundled("_migrations", "storage")
