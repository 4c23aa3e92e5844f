"""Shared fixtures: real data beside the checkout, the MiniLM model, tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data missing: {SHARED_DATA} (the checkout needs ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sst2(shared_data):
    from autopeft.tasks import load_task

    return load_task(str(shared_data / "glue" / "SST-2"))


@pytest.fixture(scope="session")
def minilm_ref():
    from autopeft.models import resolve_model

    return resolve_model("minilm")
