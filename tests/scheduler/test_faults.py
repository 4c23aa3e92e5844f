"""Faults: a worker killed mid-trial, out-of-memory and NaN trials, a driver killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from autopeft.scheduler import run_search
from autopeft.store import JobState, Store
from autopeft.trials import TrialState
from tests.scheduler.conftest import TINY, tiny_spec

pytestmark = pytest.mark.slow


def wait_for(condition, timeout_s: float = 300.0, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError("condition not reached")


def test_a_worker_killed_mid_trial_is_replaced_and_its_trial_retried(tmp_path, prepared):
    store = Store(str(tmp_path / "store.db"))
    killed: list[int] = []

    def killer():
        running = wait_for(lambda: [t for t in store.trials(1) if t.state == TrialState.RUNNING] if store.jobs() else [])
        pid = int(running[0].worker.rsplit(":", 1)[1])
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        killed.append(running[0].id)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    job_id = run_search(prepared, store)
    thread.join(timeout=5)
    assert killed, "no worker was killed"
    job = store.job(job_id)
    trials = store.trials(job_id)
    assert job.state == JobState.COMPLETED and job.trials_done == 4
    retried = next(t for t in trials if t.id == killed[0])
    assert retried.attempt == 2, "the killed trial was not retried"
    assert retried.state == TrialState.COMPLETED
    events = [message for _, kind, message in store.events(job_id) if kind == "trial_retried"]
    assert events and "died" in events[0]


def test_out_of_memory_and_nan_trials_fail_with_reasons_and_the_search_goes_on(tmp_path, minilm_ref):
    from autopeft.space.structure import LoraModules, Structure
    from autopeft.tasks import load_task
    from autopeft.tasks.holdout import with_search_split
    from autopeft.trials import Fidelity, TrialRequest
    from autopeft.worker.pool import WorkerPool
    from autopeft.worker.proxy import WorkerSpec

    store = Store(str(tmp_path / "store.db"))
    job = store.create_job({}, budget_trials=3)
    pool = WorkerPool(WorkerSpec(minilm_ref, with_search_split(load_task("demo"))), size=1,
                      storage_url=store.absolute_url)

    def run(structure, fidelity):
        """Submit one trial; the worker must have stored its outcome before the driver does anything."""
        row = store.add_trial(job, config={}, structure=structure.to_json(), trainable_params=0, seed=0, fidelity={})
        store.mark_running(row.id, pool.slots[0].name)
        pool.submit(pool.slots[0], TrialRequest(row.id, row.number, structure.to_json(), seed=0, fidelity=fidelity))
        [(_, outcome)] = wait_for(lambda: pool.wait(1.0))
        stored = store.trial(job, row.number)
        assert (stored.state, stored.error, stored.values) == (outcome.state, outcome.error, outcome.metrics)
        return outcome

    try:
        # A rank whose LoRA A matrix alone needs ~77 GB: the allocator refuses it.
        oom = run(Structure(lora=LoraModules({(0, "q"): 50_000_000})), TINY)
        # A learning rate no run survives: LoRA products on every value projection overflow.
        exploding = Fidelity(**{**TINY.to_json(), "learning_rate": 1e30, "steps": 30})
        every_value = Structure(lora=LoraModules({(layer, "v"): 4 for layer in range(6)}))
        nan = run(every_value, exploding)
        fine = run(every_value, TINY)
    finally:
        pool.shutdown()
    assert oom.state == TrialState.FAILED and oom.error.startswith("out of memory"), oom.error
    assert nan.state == TrialState.FAILED and nan.error.startswith("non-finite loss"), nan.error
    assert fine.state == TrialState.COMPLETED


def _cli(*args, cwd):
    # The drivers run on the session's Ray head (RAY_ADDRESS): Ray ends a killed driver's actors.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "autopeft", *args], dict(cwd=cwd, env=env, preexec_fn=_ctrl_c_as_in_a_terminal)


def _ctrl_c_as_in_a_terminal() -> None:
    """Give the driver the SIGINT a terminal's foreground job has.

    A suite started in the background by a non-interactive shell inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: the SIGINT'd driver ran on to exit 0.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_interrupted_and_a_killed_driver_resume_without_losing_or_repeating_completed_trials(tmp_path):
    storage = str(tmp_path / "store.db")
    fidelity = ["--steps", "6", "--train-examples", "96", "--eval-examples", "48", "--batch-size", "8",
                "--max-length", "32"]
    command, options = _cli("search", "--model", "minilm", "--task", "demo", "--trials", "6", "--workers", "2",
                            "--optimizer", "random", "--storage", storage, *fidelity, cwd=tmp_path)
    store = Store(storage)

    def completed_at_least(count: int):
        done = [t for t in store.trials(1) if t.state == TrialState.COMPLETED] if store.jobs() else []
        return done if len(done) >= count else None

    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True, **options)
    wait_for(lambda: completed_at_least(1))
    driver.send_signal(signal.SIGINT)  # Ctrl-C: the job is interrupted, not over
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr.decode()[-2000:]
    assert store.job(1).state == JobState.INTERRUPTED

    command, options = _cli("resume", "1", "--storage", storage, cwd=tmp_path)
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, **options)
    before = wait_for(lambda: completed_at_least(3))
    os.killpg(driver.pid, signal.SIGKILL)  # the driver; Ray ends the workers it owned
    driver.wait()
    assert store.job(1).state == JobState.RUNNING
    ran_before = store.job(1).run_seconds
    assert ran_before > 0  # the drivers' heartbeats carry the job's running time

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900, **options)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    job = store.job(1)
    trials = store.trials(1)
    completed = [t for t in trials if t.state == TrialState.COMPLETED]
    assert job.state == JobState.COMPLETED
    assert job.run_seconds > ran_before  # the --max-time clock went on from where the killed driver left it
    assert len(completed) == 6 and len(trials) == 6
    kept = {t.id: t for t in completed}
    for trial in before:  # completed before the kill: same row, same values, never rerun
        assert kept[trial.id].values == trial.values and kept[trial.id].attempt == trial.attempt
    configs = Counter(json.dumps(t.config, sort_keys=True) for t in completed if t.role != "replicate")
    assert max(configs.values()) == 1  # no structure was proposed twice; replicates repeat their origin's
    origins = {t.id: t.config for t in completed}
    assert all(origins[t.origin_id] == t.config for t in completed if t.role == "replicate")


def test_cancel_stops_a_running_job_cleanly(tmp_path):
    from autopeft.scheduler import prepare

    store = Store(str(tmp_path / "store.db"))
    prepared = prepare(tiny_spec(trials=50))
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("job", run_search(prepared, store)), daemon=True)
    thread.start()
    wait_for(lambda: store.jobs() and [t for t in store.trials(1) if t.state == TrialState.COMPLETED])
    assert store.request_cancel(1) == JobState.CANCELLING
    thread.join(timeout=120)
    assert not thread.is_alive()
    job = store.job(1)
    assert job.state == JobState.CANCELLED and job.trials_done < 50
    assert not [t for t in store.trials(1) if t.state in (TrialState.RUNNING, TrialState.PENDING)]
    assert all(t.error == "cancelled" for t in store.trials(1) if t.state == TrialState.FAILED)
