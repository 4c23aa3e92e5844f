"""The REST service: auth, errors, and a real job over HTTP that survives a service restart."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile

import httpx
import pytest
from fastapi.testclient import TestClient
from peft import PeftConfig, get_peft_model

from autopeft.models import TaskHead, load_base_model
from autopeft.service import JobRunner, create_app
from autopeft.store import Store
from autopeft.tasks import TaskKind

TOKEN = "s3cret-token-for-tests"
TINY = {"train_examples": 96, "steps": 6, "batch_size": 8, "max_length": 32, "eval_examples": 48}
JOB = {"model": "minilm", "task": "demo", "trials": 4, "workers": 2, "optimizer": "random", "fidelity": TINY}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path):
    store = Store(str(tmp_path / "store.db"))
    return TestClient(create_app(store, TOKEN, JobRunner(store)))


def test_health_is_open_and_everything_else_needs_the_token(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/jobs").status_code == 401
    assert client.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/jobs", headers=AUTH).json() == []


def test_bad_requests_get_one_clear_message(client):
    bad = client.post("/jobs", json={**JOB, "model": "no-such-model"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["detail"].startswith("unknown model 'no-such-model'")
    assert client.post("/jobs", json={**JOB, "trials": 0}, headers=AUTH).json()["detail"] == (
        "--trials must be at least 1, got 0"
    )
    assert client.get("/jobs/9", headers=AUTH).status_code == 404
    assert client.post("/jobs", json={**JOB, "colour": "red"}, headers=AUTH).status_code == 422


def test_openapi_schema_lists_the_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/pareto", "/jobs/{job_id}/export",
            "/jobs/{job_id}/cancel", "/jobs/{job_id}/trials"} <= set(paths)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(storage: str, port: int, cwd) -> subprocess.Popen:
    env = {**os.environ, "AUTOPEFT_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "autopeft", "serve", "--port", str(port), "--storage", storage],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def _wait(condition, timeout_s=600, poll_s=0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError("condition not reached")


@pytest.mark.slow
def test_a_job_over_http_survives_a_service_restart(tmp_path, minilm_ref):
    storage, port = str(tmp_path / "store.db"), _free_port()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=600)
    service = _serve(storage, port, tmp_path)
    try:
        _wait(lambda: http.get("/health").status_code == 200)
        job = http.post("/jobs", json=JOB).json()
        assert job["state"] in ("pending", "running")
        _wait(lambda: http.get(f"/jobs/{job['id']}").json()["trial_counts"].get("completed", 0) >= 1)
    finally:
        os.killpg(service.pid, signal.SIGKILL)  # the service and the local Ray it started
        service.wait()

    service = _serve(storage, port, tmp_path)
    try:
        _wait(lambda: http.get("/health").status_code == 200)
        status = _wait(lambda: (s := http.get(f"/jobs/{job['id']}").json())["state"] == "completed" and s)
        front = http.get(f"/jobs/{job['id']}/pareto").json()
        chosen = front[0]
        archive = http.get(f"/jobs/{job['id']}/export", params={"trial": chosen["trial"], "format": "peft"})
        assert archive.status_code == 200
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=60)
    assert status["trial_counts"] == {"completed": 4}
    trials = Store(storage).trials(job["id"])
    assert len(trials) == 4 and any(t.attempt == 2 for t in trials) or all(t.attempt == 1 for t in trials)
    folder = tmp_path / "adapter"
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(folder)
    model = get_peft_model(load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2)),
                           PeftConfig.from_pretrained(str(folder)))
    assert model.get_nb_trainable_parameters()[0] == chosen["trainable_params"]
