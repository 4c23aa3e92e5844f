"""MRPC, and stored MiniLM jobs (MRPC, SST-2, the demo task) whose trials carry chosen structures."""

from __future__ import annotations

import pytest

from autopeft.store import Store
from autopeft.tasks import load_task
from tests.export.conftest import JobBuilder


@pytest.fixture(scope="session")
def mrpc(shared_data):
    return load_task(str(shared_data / "glue" / "MRPC"))


@pytest.fixture(scope="module")
def mrpc_store_job(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("train")
    store_url = f"sqlite:///{folder / 'store.db'}"
    return store_url, JobBuilder(Store(store_url), "minilm", str(shared_data / "glue" / "MRPC"))


@pytest.fixture(scope="module")
def sst2_store_job(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("train-sst2")
    store_url = f"sqlite:///{folder / 'store.db'}"
    return store_url, JobBuilder(Store(store_url), "minilm", str(shared_data / "glue" / "SST-2"))


@pytest.fixture(scope="module")
def demo_store_job(tmp_path_factory):
    """MiniLM on the shipped demo task: 600 short training sentences, 200 dev (quick to score)."""
    folder = tmp_path_factory.mktemp("train-demo")
    store_url = f"sqlite:///{folder / 'store.db'}"
    return store_url, JobBuilder(Store(store_url), "minilm", "demo")
