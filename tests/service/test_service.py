"""The REST service: auth, limits, allowed sources, errors, and a real job over HTTP that survives a restart."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from peft import PeftConfig, get_peft_model

from autopeft.models import TaskHead, load_base_model
from autopeft.service import JobRunner, ServiceLimits, create_app
from autopeft.store import Store
from autopeft.tasks import TaskKind
from tests.network import free_port

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
    assert bad.status_code == 400 and bad.json()["field"] == "model"
    assert bad.json()["detail"].startswith("model: must be one of (minilm, smollm2)")
    assert client.post("/jobs", json={**JOB, "trials": 0}, headers=AUTH).json()["detail"] == (
        "--trials must be at least 1, got 0"
    )
    assert client.get("/jobs/9", headers=AUTH).json() == {"detail": "no job 9"}  # not the store's file
    assert client.post("/jobs", json={**JOB, "colour": "red"}, headers=AUTH).status_code == 422


def test_openapi_schema_lists_the_endpoints(client):
    paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert {"/health", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/pareto", "/jobs/{job_id}/export",
            "/jobs/{job_id}/cancel", "/jobs/{job_id}/trials", "/jobs/{job_id}/validate"} <= set(paths)


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc"])
def test_the_schema_and_its_pages_need_the_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers=AUTH).status_code == 200


def _bounded_client(tmp_path, **kwargs) -> tuple[TestClient, Store]:
    """A service whose runner accepts jobs but starts none (``max_jobs=0``): they stay pending, no Ray."""
    store = Store(str(tmp_path / "store.db"))
    runner = JobRunner(store, max_jobs=0, max_unfinished=kwargs.pop("max_unfinished", 8))
    return TestClient(create_app(store, TOKEN, runner, **kwargs)), store


OVER_LIMITS = [
    ({"workers": 100000}, "workers", 8),
    ({"cpus_per_worker": 9}, "cpus_per_worker", 8),
    ({"gpus_per_worker": 8.5}, "gpus_per_worker", 8),
    ({"trials": 1001}, "trials", 1000),
    ({"fidelity": {**TINY, "steps": 10001}}, "fidelity.steps", 10000),
    ({"fidelity": {**TINY, "steps": 2000}, "rungs": 3}, "fidelity.steps", 10000),  # 18000 at the top rung
    ({"fidelity": {**TINY, "steps": 10}, "rungs": 100000}, "fidelity.steps", 10000),  # eta^99999 overflows
    ({"fidelity": {**TINY, "train_examples": 10**12}}, "fidelity.train_examples", 1_000_000),
    ({"fidelity": {**TINY, "eval_examples": 100001}}, "fidelity.eval_examples", 100_000),
    ({"fidelity": {**TINY, "batch_size": 10**6}}, "fidelity.batch_size", 1024),
    ({"fidelity": {**TINY, "max_length": 10**6}}, "fidelity.max_length", 8192),
]


@pytest.mark.parametrize(("change", "field", "limit"), OVER_LIMITS)
def test_requests_over_a_limit_are_refused_naming_the_field_and_the_limit(tmp_path, change, field, limit):
    client, store = _bounded_client(tmp_path)
    answer = client.post("/jobs", json={**JOB, **change}, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["field"] == field and answer.json()["limit"] == limit
    assert answer.json()["detail"].startswith(f"{field}: at most {limit}")
    assert store.jobs() == []


def test_limits_are_chosen_when_the_service_is_built(tmp_path):
    client, store = _bounded_client(tmp_path, limits=ServiceLimits(max_workers=1, max_eval_examples=40))
    refused = client.post("/jobs", json={**JOB, "workers": 2}, headers=AUTH)
    assert (refused.status_code, refused.json()["limit"]) == (400, 1)
    whole_split = {**JOB, "workers": 1, "fidelity": {**TINY, "eval_examples": None}}
    accepted = client.post("/jobs", json=whole_split, headers=AUTH)
    assert accepted.status_code == 202
    assert store.job(accepted.json()["id"]).spec["fidelity"]["eval_examples"] == 40


def test_unfinished_jobs_of_a_service_are_bounded(tmp_path):
    client, store = _bounded_client(tmp_path, max_unfinished=1)
    first = client.post("/jobs", json=JOB, headers=AUTH)
    assert first.status_code == 202
    refused = client.post("/jobs", json=JOB, headers=AUTH)
    assert refused.status_code == 429 and refused.json()["limit"] == 1
    assert len(store.jobs()) == 1
    assert client.post(f"/jobs/{first.json()['id']}/cancel", headers=AUTH).json()["state"] == "cancelled"
    assert client.post("/jobs", json=JOB, headers=AUTH).status_code == 202  # a finished job frees its place
    assert len(store.jobs()) == 2


def test_validating_a_submission_is_bounded_in_time(tmp_path):
    store = Store(str(tmp_path / "store.db"))
    client = TestClient(create_app(store, TOKEN, JobRunner(store, max_jobs=0, prepare_timeout_s=0.001)))
    answer = client.post("/jobs", json=JOB, headers=AUTH)
    assert answer.status_code == 503 and answer.json()["detail"].startswith("validating the job took over 0.001 s")
    assert store.jobs() == []


def test_validating_needs_a_finished_job_and_bounded_effort(tmp_path):
    client, store = _bounded_client(tmp_path)
    job = client.post("/jobs", json=JOB, headers=AUTH).json()["id"]
    pending = client.post(f"/jobs/{job}/validate", json={"top": 3}, headers=AUTH)
    assert pending.status_code == 400 and pending.json()["detail"] == f"job {job} is pending; validate it once it has finished"
    over = client.post(f"/jobs/{job}/validate", json={"steps": 10**6}, headers=AUTH)
    assert (over.status_code, over.json()["field"], over.json()["limit"]) == (400, "steps", 10_000)
    assert client.post("/jobs/99/validate", json={}, headers=AUTH).status_code == 404
    assert client.post(f"/jobs/{job}/validate", json={"top": -1}, headers=AUTH).status_code == 422


@pytest.fixture
def allowed(tmp_path) -> Path:
    """An allowed root holding a copy of the demo task, and a link that leads out of it."""
    root = tmp_path / "allowed"
    shutil.copytree(Path(__file__).resolve().parents[2] / "autopeft" / "tasks" / "demo", root / "reviews")
    (root / "escape").symlink_to("/etc")
    return root


SERVER_FILES = ("passwd", "hostname", "hosts", "os-release", ".pwd.lock", "found:")


@pytest.mark.parametrize(("field", "value"), [
    ("task", "/etc"),
    ("task", "../../../../../../etc"),
    ("task", "escape"),  # a link inside the root to /etc
    ("task", "nyu-mll/glue:sst2"),  # hub ids would download
    ("task", "no\x00such"),
    ("model", "/etc"),
    ("model", "bert-base-uncased"),
    ("space", "/etc/passwd"),
    ("space", "escape/passwd"),
])
def test_sources_outside_the_allowed_roots_are_refused_without_a_word_about_server_files(
    tmp_path, allowed, field, value
):
    client, store = _bounded_client(tmp_path, allow_roots=[allowed])
    answer = client.post("/jobs", json={**JOB, field: value}, headers=AUTH)
    assert answer.status_code == 400 and answer.json()["field"] == field
    assert answer.json()["detail"].startswith(f"{field}: must be one of (")
    assert not any(name in answer.text for name in SERVER_FILES)
    assert store.jobs() == []


def test_allowed_sources_load_by_absolute_or_root_relative_path(tmp_path, allowed):
    client, store = _bounded_client(tmp_path, allow_roots=[allowed])
    for task in (str(allowed / "reviews"), "reviews"):
        answer = client.post("/jobs", json={**JOB, "task": task}, headers=AUTH)
        assert answer.status_code == 202, answer.text
        assert answer.json()["task"] == str(allowed.resolve() / "reviews")
    assert len(store.jobs()) == 2


def test_errors_loading_allowed_files_echo_neither_their_names_nor_their_content(tmp_path, allowed):
    (allowed / "table.csv").write_text("confidential_column,other\nsecret-row-value,1\n")
    (allowed / "space.yaml").write_text("name: x\nmodules:\n  lora: {ranks: [secret-yaml-value]}\n")
    client, store = _bounded_client(tmp_path, allow_roots=[allowed])
    for field, value in (("task", "table.csv"), ("space", "space.yaml")):
        answer = client.post("/jobs", json={**JOB, field: value}, headers=AUTH)
        assert answer.status_code == 400 and answer.json()["field"] == field, answer.text
        for private in ("confidential_column", "secret-row-value", "secret-yaml-value", str(allowed), "table.csv"):
            assert private not in answer.text
    assert store.jobs() == []


def _serve(storage: str, port: int, cwd, *options: str) -> subprocess.Popen:
    env = {**os.environ, "AUTOPEFT_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "autopeft", "serve", "--port", str(port), "--storage", storage, *options],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def test_serve_refuses_an_allowed_root_that_is_not_a_folder(tmp_path, capsys, monkeypatch):
    from autopeft.cli import main

    monkeypatch.setenv("AUTOPEFT_TOKEN", TOKEN)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", str(free_port()), "--storage", str(tmp_path / "store.db"),
              "--allow-root", str(tmp_path / "nowhere")])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"--allow-root {tmp_path / 'nowhere'}: not a folder"), lines


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
@pytest.mark.usefixtures("ray_cluster")
def test_a_job_over_http_survives_a_service_restart(tmp_path, minilm_ref):
    storage, port = str(tmp_path / "store.db"), free_port()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=600)
    allowed = tmp_path / "allowed"
    shutil.copytree(Path(__file__).resolve().parents[2] / "autopeft" / "tasks" / "demo", allowed / "reviews")
    service = _serve(storage, port, tmp_path, "--max-workers", "2", "--allow-root", str(allowed))
    try:
        _wait(lambda: http.get("/health").status_code == 200)
        over = http.post("/jobs", json={**JOB, "workers": 3})
        assert (over.status_code, over.json()["field"], over.json()["limit"]) == (400, "workers", 2)
        job = http.post("/jobs", json={**JOB, "task": "reviews"}).json()
        assert job["task"] == str(allowed.resolve() / "reviews")
        assert job["state"] in ("pending", "running")
        _wait(lambda: http.get(f"/jobs/{job['id']}").json()["trial_counts"].get("completed", 0) >= 1)
    finally:
        os.killpg(service.pid, signal.SIGKILL)  # the service; Ray ends its workers with their driver
        service.wait()

    service = _serve(storage, port, tmp_path)
    try:
        _wait(lambda: http.get("/health").status_code == 200)
        status = _wait(lambda: (s := http.get(f"/jobs/{job['id']}").json())["state"] == "completed" and s)
        front = http.get(f"/jobs/{job['id']}/pareto").json()
        chosen = front[0]
        archive = http.get(f"/jobs/{job['id']}/export", params={"trial": chosen["trial"], "format": "peft"})
        assert archive.status_code == 200
        asked = http.post(f"/jobs/{job['id']}/validate", json={"top": 1, "steps": 12, "train_examples": 96})
        assert asked.status_code == 202, asked.text
        validation = _wait(lambda: http.get(f"/jobs/{job['id']}").json()["validation"])
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=60)
    assert status["trial_counts"] == {"completed": 4}
    assert validation["split"] == "dev" and [pair["trial"] for pair in validation["pairs"]] == [chosen["trial"]]
    assert validation["pairs"][0]["fidelity"]["steps"] == 12
    trials = [t for t in Store(storage).trials(job["id"]) if t.role != "validation"]
    assert len(trials) == 4 and any(t.attempt == 2 for t in trials) or all(t.attempt == 1 for t in trials)
    folder = tmp_path / "adapter"
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(folder)
    model = get_peft_model(load_base_model(minilm_ref, TaskHead(TaskKind.CLASSIFICATION, 2)),
                           PeftConfig.from_pretrained(str(folder)))
    assert model.get_nb_trainable_parameters()[0] == chosen["trainable_params"]


def test_trials_come_a_page_at_a_time_and_the_front_as_from_every_trial(tmp_path):
    from autopeft.objectives import job_objectives
    from autopeft.reports import reported_front, trial_json
    from autopeft.service.app import TRIALS_PAGE
    from autopeft.trials import TrialOutcome, TrialState

    store = Store(str(tmp_path / "store.db"))
    objectives = [{"name": "accuracy", "goal": "max"}, {"name": "trainable_params", "goal": "min"}]
    job = store.create_job({"model": "minilm", "task": "demo", "objectives": objectives}, budget_trials=5)
    for number, (accuracy, params) in enumerate([(0.6, 10), (0.7, 20), (0.65, 30), (0.8, 40), (0.5, 5)]):
        trial = store.add_trial(job, config={}, structure={"n": number}, trainable_params=params, seed=0, fidelity={})
        store.record_outcome(TrialOutcome(trial.id, TrialState.COMPLETED, "w", metrics={"accuracy": accuracy}))
    client = TestClient(create_app(store, TOKEN, JobRunner(store)))
    page = client.get(f"/jobs/{job}/trials", params={"limit": 2, "offset": 1}, headers=AUTH)
    assert [t["trial"] for t in page.json()] == [1, 2] and page.headers["X-Total-Count"] == "5"
    assert [t["trial"] for t in client.get(f"/jobs/{job}/trials", headers=AUTH).json()] == [0, 1, 2, 3, 4]
    assert TRIALS_PAGE == 1000
    assert client.get(f"/jobs/{job}/trials", params={"limit": 0}, headers=AUTH).status_code == 422
    everything = reported_front(store.trials(job), job_objectives(store.job(job)))
    expected = [trial_json(t, job_objectives(store.job(job))) for t in everything]
    assert client.get(f"/jobs/{job}/pareto", headers=AUTH).json() == expected
    assert [t["trial"] for t in expected] == [3, 1, 0, 4]
