"""A store at 100k trials: how long ``pareto``, ``status``, ``jobs`` and ``GET /jobs/{id}/pareto`` take.

Seeds one job of ``--trials`` trials (default 100,000) into a SQLite file and into a PostgreSQL
database of its own (created and dropped here), then times each operation ``--repeats`` times
(median) in two ways:

- **in-process**: the store query and the front computation only, in this process, with the store
  already open (what the CLI verb and the service endpoint do after start-up): the time the
  200 ms target is judged on;
- **whole process**: ``python -m autopeft ...`` as a user runs it, start-up and imports included,
  and ``GET /jobs/{id}/pareto`` through FastAPI's test client (request to response).

It also times the straightforward path (every trial loaded as a record, then
``reports.reported_front`` / ``reports.status_json``) in-process once per backend, and checks that
both paths give the same JSON.

The job is written the way the scheduler writes one: the real ``lora`` space bound to MiniLM on the
demo task (``autopeft.scheduler.prepare``), its practitioner defaults first, distinct random points
of the space (decoded structures, exact parameter counts), seeds from ``trial_seed``, 1% failed
trials with their ``trial_failed`` events, replicates of the front members and of 1% of the others,
the eight values a classification proxy measures (accuracy scored on the 120-example search split,
so ties are common), and one hypervolume row per completed trial. Values and hypervolumes are
synthetic. Trials go in by bulk insert (the ORM's own column types, so JSON is serialised as the
store serialises it); before seeding, a small job is written both ways, bulk and through
``Store.add_trial`` / ``mark_running`` / ``record_outcome``, and their rows are compared.

    nice -n 5 python -m bench.store_scale --trials 100000 --repeats 5 \\
        --out docs/store_scale.md --csv bench/results/store_scale.csv
"""

from __future__ import annotations

import argparse
import csv
import gc
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from autopeft.store import JobState, Store, TrialRole
from autopeft.store.models import Event, HypervolumeRecord, Trial, TrialValue, structure_digest
from autopeft.store.store import COST_COLUMNS
from autopeft.trials import TrialOutcome, TrialState

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 dbname=postgres"
POSTGRES_DATABASE = "autopeft_bench_scale"
TARGET_MS = 200.0
SEARCH_EXAMPLES = 120  # the demo task's search split: accuracy moves in steps of 1/120
FAILED_SHARE = 0.01
DRIVER = "bench-driver"
TOKEN = "bench-token"
CHUNK = 5000


# ------------------------------------------------------------------------------ the seeded job
@dataclass
class SeedTrial:
    """One trial as the scheduler and a worker leave it: request fields, then the outcome."""

    config: dict[str, Any]
    structure: dict[str, Any]
    trainable_params: int
    role: str = TrialRole.EXPLORE
    label: str | None = None
    origin: int | None = None
    """Index (in :attr:`SeedJob.trials`) of the trial this one replicates."""
    state: str = TrialState.COMPLETED
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    worker: str = "worker-0"
    wall_time_s: float | None = None
    step_time_s: float | None = None
    peak_memory_bytes: int | None = None
    dispatch_wait_s: float | None = None
    timings: dict[str, float] | None = None


@dataclass
class SeedJob:
    spec: dict[str, Any]
    fidelity: dict[str, Any]
    job_seed: int
    trials: list[SeedTrial]


def _synthetic_outcome(rng: random.Random, trial: SeedTrial, total_params: int) -> None:
    """Values like a classification proxy's: larger structures tend to score higher, with noise."""
    if rng.random() < FAILED_SHARE:
        trial.state = TrialState.FAILED
        trial.error = rng.choice([
            f"non-finite loss (nan) at step {rng.randrange(1, 150)} (learning rate 0.003)",
            "out of memory: tried to allocate 64.00 MiB",
            "cancelled",
        ])  # fmt: skip
        trial.wall_time_s = rng.uniform(1.0, 20.0)
        trial.peak_memory_bytes = rng.randrange(400, 900) * 2**20
        trial.timings = {"data": 0.01, "inject": 0.02}
        return
    share = trial.trainable_params / total_params
    expected = 0.62 + 0.3 * (1 - math.exp(-share * 400))
    correct = min(SEARCH_EXAMPLES, max(SEARCH_EXAMPLES // 2, round(rng.gauss(expected, 0.04) * SEARCH_EXAMPLES)))
    accuracy = correct / SEARCH_EXAMPLES
    rescues = 0 if rng.random() < 0.9 else rng.choice((1, 2))
    trial.metrics = {
        "accuracy": accuracy,
        "f1": min(1.0, max(0.0, accuracy + rng.gauss(0, 0.03))),
        "mcc": max(-1.0, min(1.0, 2 * accuracy - 1 + rng.gauss(0, 0.03))),
        "predicted_classes": 1.0 if correct == SEARCH_EXAMPLES // 2 else 2.0,
        "train_loss_first": rng.uniform(0.68, 0.72),
        "train_loss_last": rng.uniform(0.05, 0.6),
        "learning_rate": 0.001 * (1.0, 0.3, 3.0)[rescues],
        "lr_rescues": float(rescues),
    }
    trial.step_time_s = rng.uniform(0.02, 0.08)
    trial.wall_time_s = trial.step_time_s * 150 * (1 + rescues) + rng.uniform(0.5, 2.0)
    trial.peak_memory_bytes = rng.randrange(400, 900) * 2**20
    evaluate = rng.uniform(0.2, 0.5)
    trial.timings = {"data": 0.01, "inject": 0.02, "train": trial.wall_time_s - evaluate - 0.05,
                     "evaluate": evaluate, "remove": 0.01}


class _PrefixMax:
    """Running maxima over buckets ordered by cost, with point updates (a segment tree)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tree = [-math.inf] * (2 * size)

    def set(self, index: int, value: float) -> None:
        index += self.size
        self.tree[index] = value
        while index > 1:
            index //= 2
            self.tree[index] = max(self.tree[2 * index], self.tree[2 * index + 1])

    def below(self, index: int) -> float:
        """The maximum over buckets 0 .. index - 1."""
        best, low, high = -math.inf, self.size, index + self.size
        while low < high:
            if low & 1:
                best, low = max(best, self.tree[low]), low + 1
            if high & 1:
                high -= 1
                best = max(best, self.tree[high])
            low, high = low // 2, high // 2
        return best


def scheduler_like_job(n_trials: int, seed: int = 0) -> SeedJob:
    """A finished job of ``n_trials`` trials on the real lora space (see the module docstring).

    Confirmation follows the scheduler's rule (``confirm_seeds`` 2): a structure whose pooled
    observation is on the front (accuracy up, trainable parameters down) when its run completes
    gets a second run right after. Unlike the scheduler, a structure that joins the front later,
    when a replicate lowers another's mean, is not confirmed then.
    """
    from autopeft.scheduler import JobSpec, prepare
    from autopeft.space.defaults import practitioner_defaults

    prepared = prepare(JobSpec(model="minilm", task="demo", trials=n_trials, workers=2, optimizer="random", seed=seed))
    space, total = prepared.space, prepared.space.layout.total_params
    rng = random.Random(seed)

    def trial_of(point: dict[str, Any], **fields: Any) -> SeedTrial:
        trial = SeedTrial(dict(point), space.decode(point).to_json(), space.trainable_params(point), **fields)
        _synthetic_outcome(rng, trial, total)
        trial.dispatch_wait_s = rng.uniform(0.0, 0.05)
        trial.worker = f"worker-{rng.randrange(2)}"
        return trial

    defaults = practitioner_defaults(space)
    points = [(d.point, d.label) for d in defaults]
    seen = {space.structure_key(d.point) for d in defaults}
    while len(points) < n_trials:
        point = space.from_unit([rng.random() for _ in space.dimensions])
        key = space.structure_key(point)
        if key not in seen and space.is_feasible(point):
            seen.add(key)
            points.append((point, None))
    costs = sorted({space.trainable_params(point) for point, _ in points})
    bucket_of = {cost: index for index, cost in enumerate(costs)}
    cheaper = _PrefixMax(len(costs))
    in_bucket: list[dict[int, float]] = [{} for _ in costs]  # structure -> pooled accuracy
    runs: dict[int, list[float]] = {}

    def observe(structure: int, trial: SeedTrial) -> bool:
        """Pool a completed run; whether its structure is on the front now."""
        runs.setdefault(structure, []).append(trial.metrics["accuracy"])
        bucket = bucket_of[trial.trainable_params]
        in_bucket[bucket][structure] = statistics.fmean(runs[structure])
        best = max(in_bucket[bucket].values())
        cheaper.set(bucket, best)
        return in_bucket[bucket][structure] == best and best > cheaper.below(bucket)

    trials: list[SeedTrial] = []
    for structure, (point, label) in enumerate(points):
        if len(trials) >= n_trials:
            break
        role = TrialRole.DEFAULT if label else TrialRole.EXPLORE
        trials.append(trial_of(point, role=role, label=label))
        origin = len(trials) - 1
        if trials[origin].state == TrialState.COMPLETED and observe(structure, trials[origin]) and len(trials) < n_trials:
            trials.append(trial_of(point, role=TrialRole.REPLICATE, origin=origin))
            if trials[-1].state == TrialState.COMPLETED:
                observe(structure, trials[-1])
    return SeedJob(prepared.stored_spec(), prepared.spec.fidelity.to_json(), seed, trials)


# ---------------------------------------------------------------------------------- writing it
def _trial_seed(job_seed: int, number: int) -> int:
    from autopeft.scheduler.scheduler import trial_seed

    return trial_seed(job_seed, number)


def write_through_api(store: Store, job: SeedJob) -> int:
    """The job written trial by trial through the store's API, as the scheduler and workers do."""
    job_id = store.create_job(job.spec, budget_trials=len(job.trials))
    store.claim_job(job_id, DRIVER, stale_after_s=60)
    ids: list[int] = []
    for number, trial in enumerate(job.trials):
        record = store.add_trial(
            job_id, config=trial.config, structure=trial.structure, trainable_params=trial.trainable_params,
            seed=_trial_seed(job.job_seed, number), fidelity=job.fidelity, role=trial.role,
            origin_id=None if trial.origin is None else ids[trial.origin], label=trial.label,
        )
        ids.append(record.id)
        store.mark_running(record.id, trial.worker, dispatch_wait_s=trial.dispatch_wait_s)
        store.record_outcome(TrialOutcome(
            record.id, trial.state, trial.worker, metrics=trial.metrics, trainable_params=trial.trainable_params,
            peak_memory_bytes=trial.peak_memory_bytes, wall_time_s=trial.wall_time_s,
            step_time_s=trial.step_time_s, error=trial.error, timings=trial.timings,
        ))  # fmt: skip
    store.set_job_state(job_id, JobState.COMPLETED)
    return job_id


def write_in_bulk(store: Store, job: SeedJob, hypervolumes: bool = True) -> int:
    """The same rows as :func:`write_through_api`, inserted a chunk at a time."""
    from autopeft.objectives import Objective
    from autopeft.optimizers.hypervolume import reference_point

    job_id = store.create_job(job.spec, budget_trials=len(job.trials))
    store.claim_job(job_id, DRIVER, stale_after_s=60)
    objectives = [Objective.from_json(o) for o in job.spec["objectives"]]
    metric = None if objectives[0].name in COST_COLUMNS else objectives[0].name
    digests = [structure_digest(trial.structure) for trial in job.trials]
    runs = Counter(digests)  # every trial is a search trial at rung 0: twinned when its structure ran twice
    start = datetime.now(timezone.utc) - timedelta(seconds=3 * len(job.trials))
    ids: list[int] = []
    done, hv, reference = 0, 0.0, None
    with store.engine.begin() as connection:
        for first in range(0, len(job.trials), CHUNK):
            rows, chunk = [], job.trials[first:first + CHUNK]
            for number, trial in enumerate(chunk, start=first):
                created = start + timedelta(seconds=3 * number)
                started = created + timedelta(seconds=trial.dispatch_wait_s or 0.0)
                rows.append({
                    "job_id": job_id, "number": number, "state": trial.state, "config": trial.config,
                    "structure": trial.structure, "trainable_params": trial.trainable_params,
                    "seed": _trial_seed(job.job_seed, number), "fidelity": job.fidelity, "worker": trial.worker,
                    "created_at": created, "started_at": started,
                    "finished_at": started + timedelta(seconds=trial.wall_time_s or 0.0),
                    "wall_time_s": trial.wall_time_s, "step_time_s": trial.step_time_s,
                    "peak_memory_bytes": trial.peak_memory_bytes, "error": trial.error, "rung": 0, "attempt": 1,
                    "promoted_from": None, "heartbeat_at": started, "dispatch_wait_s": trial.dispatch_wait_s,
                    "timings": trial.timings, "split": "search", "role": trial.role, "origin_id": None,
                    "label": trial.label, "structure_digest": digests[number], "twinned": runs[digests[number]] > 1,
                    "metric_value": float(trial.metrics[metric]) if metric in trial.metrics else None,
                })  # fmt: skip
            returned = connection.execute(insert(Trial).returning(Trial.id, sort_by_parameter_order=True), rows)
            chunk_ids = [row[0] for row in returned]
            ids += chunk_ids
            values, events, history = [], [], []
            for trial_id, trial in zip(chunk_ids, chunk):
                values += [{"trial_id": trial_id, "name": k, "value": float(v)} for k, v in trial.metrics.items()]
                if trial.state == TrialState.FAILED:
                    events.append({"job_id": job_id, "trial_id": trial_id, "kind": "trial_failed",
                                   "message": trial.error or ""})
                else:  # the scheduler records the hypervolume after each completed trial, once it has a reference
                    done += 1
                    if reference is None and done >= 4:
                        first_four = [t for t in job.trials if t.state == TrialState.COMPLETED][:4]
                        reference = reference_point([{"accuracy": t.metrics["accuracy"],
                                                      "trainable_params": t.trainable_params} for t in first_four],
                                                    objectives)
                    if reference is not None and hypervolumes:
                        hv += (1.0 - hv) * 0.001  # synthetic and increasing
                        history.append({"job_id": job_id, "rung": 0, "trials_done": done, "value": hv,
                                        "reference": reference})
            if values:
                connection.execute(insert(TrialValue), values)
            if events:
                connection.execute(insert(Event), events)
            if history:
                connection.execute(insert(HypervolumeRecord), history)
        replicated = [{"id": ids[i], "origin_id": ids[t.origin]} for i, t in enumerate(job.trials) if t.origin is not None]
        for row in replicated:
            connection.execute(update(Trial).where(Trial.id == row["id"]).values(origin_id=row["origin_id"]))
    store.set_job_state(job_id, JobState.COMPLETED)
    return job_id


def comparable_rows(store: Store, job_id: int) -> list[dict[str, Any]]:
    """A job's trial rows without ids and clock times, origins as trial numbers, values by name."""
    skipped = {"id", "job_id", "created_at", "started_at", "finished_at", "heartbeat_at", "origin_id"}
    with store.engine.connect() as connection:
        trials = connection.execute(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).mappings().all()
        numbers = {row["id"]: row["number"] for row in trials}
        values: dict[int, dict[str, float]] = {}
        for trial_id, name, value in connection.execute(
            select(TrialValue.trial_id, TrialValue.name, TrialValue.value).join(Trial).where(Trial.job_id == job_id)
        ):
            values.setdefault(trial_id, {})[name] = value
        failed_events = connection.execute(
            select(Event.trial_id, Event.kind, Event.message).where(Event.job_id == job_id, Event.trial_id.is_not(None))
        ).all()
    rows = []
    for row in trials:
        kept = {k: v for k, v in row.items() if k not in skipped}
        kept["origin"] = numbers.get(row["origin_id"])
        kept["values"] = values.get(row["id"], {})
        rows.append(kept)
    rows.append({"events": sorted((numbers[t], k, m) for t, k, m in failed_events)})
    return rows


def check_bulk_rows_match_the_api(job: SeedJob, n: int = 60) -> None:
    """Write the first ``n`` trials both ways into a scratch store; their rows must be equal."""
    small = SeedJob(job.spec, job.fidelity, job.job_seed, [t for t in job.trials[:n] if t.origin is None or t.origin < n])
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{Path(folder) / 'check.db'}")
        through_api = comparable_rows(store, write_through_api(store, small))
        in_bulk = comparable_rows(store, write_in_bulk(store, small, hypervolumes=False))
        store.close()
    if through_api != in_bulk:
        for a, b in zip(through_api, in_bulk):
            if a != b:
                raise SystemExit(f"bulk rows differ from the store API's:\n{a}\n{b}")
        raise SystemExit("bulk rows differ from the store API's")


# ------------------------------------------------------------------------------- the databases
@contextmanager
def postgres_database() -> Iterator[str]:
    """A database of its own on the local PostgreSQL (created empty, dropped afterwards)."""
    import psycopg

    admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5)
    admin.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
    try:
        yield f"postgresql://127.0.0.1:5432/{POSTGRES_DATABASE}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)')
        admin.close()


def server_version(store: Store) -> str:
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "sqlite":
            return "SQLite " + connection.exec_driver_sql("select sqlite_version()").scalar()
        return connection.exec_driver_sql("show server_version").scalar().split()[0].join(("PostgreSQL ", ""))


# ---------------------------------------------------------------------------------- the timings
@dataclass
class Timings:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, backend: str, operation: str, measure: str, repeat: int, seconds: float) -> None:
        self.rows.append({"backend": backend, "operation": operation, "measure": measure, "repeat": repeat,
                          "seconds": round(seconds, 6)})

    def median(self, backend: str, operation: str, measure: str) -> float | None:
        found = [r["seconds"] for r in self.rows
                 if (r["backend"], r["operation"], r["measure"]) == (backend, operation, measure)]
        return statistics.median(found) if found else None

    def span(self, backend: str, operation: str, measure: str) -> tuple[float | None, float | None]:
        found = [r["seconds"] for r in self.rows
                 if (r["backend"], r["operation"], r["measure"]) == (backend, operation, measure)]
        return (min(found), max(found)) if found else (None, None)


def clock(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def _pareto_views(store: Store, job_id: int) -> tuple[list[dict], list]:
    """What ``autopeft pareto JOB`` reads and computes before it prints: the job, its front and
    its practitioner defaults, and the front's JSON rows."""
    from autopeft import reports
    from autopeft.objectives import job_objectives

    record = store.job(job_id, counted=False)
    front = reports.stored_front(store, record)
    return [reports.trial_json(t, job_objectives(record)) for t in front], reports.stored_defaults(store, record)


@contextmanager
def served(store: Store) -> Iterator[tuple[Any, str]]:
    """The service on ``store``: FastAPI's test client, and a uvicorn server on a loopback port."""
    import socket
    import threading

    import uvicorn
    from fastapi.testclient import TestClient

    from autopeft.service import JobRunner, create_app

    app = create_app(store, TOKEN, JobRunner(store))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield TestClient(app), f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def in_process(store: Store, job_id: int, client: Any, url: str) -> dict[str, Callable[[], Any]]:
    """Each operation with the store open and everything imported: the server-side work."""
    import httpx

    from autopeft import reports

    headers = {"Authorization": f"Bearer {TOKEN}"}
    http = httpx.Client(base_url=url, headers=headers, timeout=600)

    def get(path: str, via: Any) -> Any:
        response = via.get(path, headers=headers)
        response.raise_for_status()
        return response.json()

    return {
        "autopeft pareto JOB": lambda: _pareto_views(store, job_id),
        "autopeft status JOB": lambda: reports.stored_status(store, store.job(job_id), history=False),
        "autopeft jobs": lambda: [reports.job_json(job) for job in store.jobs()],
        "GET /jobs/{id}/pareto": lambda: get(f"/jobs/{job_id}/pareto", client),
        "GET /jobs/{id}/pareto over HTTP": lambda: get(f"/jobs/{job_id}/pareto", http),
        "autopeft status JOB --json": lambda: reports.stored_status(store, store.job(job_id)),
    }


def whole_process(job_id: int, url: str) -> dict[str, list[str]]:
    autopeft = [sys.executable, "-m", "autopeft"]
    return {
        "autopeft pareto JOB": [*autopeft, "pareto", str(job_id), "--storage", url],
        "autopeft status JOB": [*autopeft, "status", str(job_id), "--storage", url],
        "autopeft jobs": [*autopeft, "jobs", "--storage", url],
        "python -c pass": [sys.executable, "-c", "pass"],
    }


def straightforward(store: Store, job_id: int, timings: Timings, backend: str) -> dict[str, Any]:
    """The path before the index: every trial loaded as a record, then the front and the status
    computed from them. Times each step once and checks that the indexed path agrees."""
    from autopeft import reports
    from autopeft.objectives import job_objectives, observed

    record = store.job(job_id)
    objectives = job_objectives(record)
    seconds, trials = clock(lambda: store.trials(job_id))
    timings.add(backend, "store.trials(JOB)", "straightforward", 0, seconds)
    seconds, front = clock(lambda: (reports.reported_front(trials, objectives),
                                    [t for t in observed(trials, objectives) if t.role == TrialRole.DEFAULT]))
    timings.add(backend, "autopeft pareto JOB", "straightforward", 0, seconds + timings.median(backend, "store.trials(JOB)", "straightforward"))
    seconds, status = clock(lambda: reports.status_json(record, trials, objectives, store.hypervolumes(job_id)))
    timings.add(backend, "autopeft status JOB", "straightforward", 0, seconds + timings.median(backend, "store.trials(JOB)", "straightforward"))
    same_front = [reports.trial_json(t, objectives) for t in front[0]] == _pareto_views(store, job_id)[0]
    same_defaults = front[1] == _pareto_views(store, job_id)[1]
    same_status = status == reports.stored_status(store, record)
    return {"front": same_front and same_defaults, "status": same_status}


def describe(store: Store, job_id: int) -> dict[str, Any]:
    """What the seeded job holds."""
    from sqlalchemy import func as sql

    from autopeft import reports

    with store.engine.connect() as connection:
        def count(query: Any) -> int:
            return connection.execute(query).scalar()

        searched = (Trial.job_id == job_id,)
        facts = {
            "trials": count(select(sql.count()).select_from(Trial).where(*searched)),
            "completed": count(select(sql.count()).select_from(Trial).where(*searched, Trial.state == TrialState.COMPLETED)),
            "failed": count(select(sql.count()).select_from(Trial).where(*searched, Trial.state == TrialState.FAILED)),
            "replicates": count(select(sql.count()).select_from(Trial).where(*searched, Trial.role == TrialRole.REPLICATE)),
            "twinned trials": count(select(sql.count()).select_from(Trial).where(*searched, Trial.twinned.is_(True))),
            "distinct trainable_params": count(select(sql.count(sql.distinct(Trial.trainable_params))).where(*searched)),
            "trial values": count(select(sql.count()).select_from(TrialValue)),
            "hypervolume rows": count(select(sql.count()).select_from(HypervolumeRecord)),
        }
    facts["front size"] = len(reports.stored_front(store, store.job(job_id)))
    return facts


def run_backend(backend: str, url: str, job: SeedJob, repeats: int, baseline: bool, timings: Timings) -> dict[str, Any]:
    print(f"[{backend}] seeding {len(job.trials)} trials", flush=True)
    store = Store(url)
    seconds, job_id = clock(lambda: write_in_bulk(store, job))
    timings.add(backend, "seed (bulk insert)", "once", 0, seconds)
    if store.engine.dialect.name == "postgresql":  # as autovacuum would soon after such an insert
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    facts = {"server": server_version(store), "seed_s": seconds, **describe(store, job_id)}
    print(f"[{backend}] {facts}", flush=True)
    with served(store) as (client, served_url):
        operations = in_process(store, job_id, client, served_url)
        for function in operations.values():  # warm: imports, caches, the first connection
            function()
        # The seeded job (100k objects and more) stays in this process, not in a CLI's or a
        # service's: frozen, the collector skips it instead of walking it during the timings.
        gc.collect()
        gc.freeze()
        for repeat in range(repeats):
            for name, function in operations.items():
                gc.collect()  # a collection the previous operation left due is not this one's time
                timings.add(backend, name, "in-process", repeat, clock(function)[0])
    commands = whole_process(job_id, url)
    for repeat in range(repeats):  # interleaved, so that load changes hit every command alike
        for name, command in commands.items():
            seconds, done = clock(lambda: subprocess.run(command, capture_output=True, text=True))
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
            timings.add(backend, name, "whole process", repeat, seconds)
    if baseline:
        print(f"[{backend}] the straightforward path, once", flush=True)
        facts["same"] = straightforward(store, job_id, timings, backend)
    store.close()
    print(f"[{backend}] done", flush=True)
    return facts


# ------------------------------------------------------------------------------------ the report
OPERATIONS = ["autopeft pareto JOB", "autopeft status JOB", "autopeft jobs", "GET /jobs/{id}/pareto"]
EXTRA = ["GET /jobs/{id}/pareto over HTTP", "autopeft status JOB --json"]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:,.0f}"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.2f}"


def report(args: argparse.Namespace, facts: dict[str, dict], timings: Timings, machine: dict[str, Any]) -> str:
    backends = list(facts)
    lines = [
        "# A store at 100k trials",
        "",
        f"How long do `autopeft pareto JOB`, `autopeft status JOB`, `autopeft jobs` and the service's "
        f"`GET /jobs/{{id}}/pareto` take on a store holding one job of {args.trials:,} trials? "
        f"Target: {TARGET_MS:.0f} ms each for the store query and the front computation "
        "(judged on the in-process median below: a whole CLI process also pays roughly 1-3 s of Python "
        "and library imports, shown next to it).",
        "",
        "```bash",
        f"nice -n 5 python -m bench.store_scale --trials {args.trials} --repeats {args.repeats} "
        f"--out {args.out} --csv {args.csv}",
        "```",
        "",
        f"Machine: {machine['date']}, {machine['platform']}, Python {machine['python']}, {machine['cores']} cores; "
        f"load average {machine['load_start']} at the start and {machine['load_end']} at the end "
        "(other benchmarks shared the cores, so every time here is longer than on an idle machine). "
        + "; ".join(f"{b}: {facts[b]['server']}" for b in backends) + ".",
        "",
        "## What was timed",
        "",
        "- **in-process** (median of the repeats, ms): the store already open and everything imported, "
        "as in the service or in a CLI verb after start-up. `pareto`: the job, its front "
        "(`reports.stored_front`), its practitioner defaults and the front's JSON rows. `status`: "
        "`reports.stored_status` as the status panel reads it (the latest hypervolume only). `jobs`: "
        "every job with its trial counts, as JSON rows. `GET /jobs/{id}/pareto`: the request through "
        "FastAPI's test client, serialisation included. Each operation starts after `gc.collect()`, "
        "and the seeded job's objects, which stay in the benchmark's process but would not be in a "
        "CLI's or a service's, are frozen (`gc.freeze()`) so that collections do not walk them.",
        "- **whole process** (median, s): `python -m autopeft VERB ... --storage URL` as a user runs it, "
        "from start to exit, printing included; `python -c pass` for scale.",
        "- **straightforward** (one run, s): the code path before this change, every trial loaded as a "
        "record (`store.trials`) and the front or status computed from the records, in-process. Each "
        "run also checks that the indexed path gives the same JSON.",
        "",
        "## Results",
        "",
        "| operation | backend | in-process (ms) | min-max (ms) | <= 200 ms | whole process (s) | straightforward (s) |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for operation in OPERATIONS + EXTRA:
        for backend in backends:
            inside = timings.median(backend, operation, "in-process")
            low, high = timings.span(backend, operation, "in-process")
            verdict = "-" if operation in EXTRA else ("yes" if inside is not None and inside * 1000 <= TARGET_MS else "**no**")
            lines.append(
                f"| {operation} | {backend} | {_ms(inside)} | {_ms(low)}-{_ms(high)} | {verdict} | "
                f"{_s(timings.median(backend, operation, 'whole process'))} | "
                f"{_s(timings.median(backend, operation, 'straightforward'))} |"
            )
    for backend in backends:
        lines.append(f"| python -c pass | {backend} | - | - | - | "
                     f"{_s(timings.median(backend, 'python -c pass', 'whole process'))} | - |")
    lines += [
        "",
        "The last two operations are not part of the target: the same request over HTTP to a uvicorn "
        "server on the loopback, and `status --json`, which lists the whole hypervolume history "
        "(one entry per completed trial).",
        "",
        "## The seeded job",
        "",
        "| | " + " | ".join(backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]
    for key in ("trials", "completed", "failed", "replicates", "twinned trials", "distinct trainable_params",
                "trial values", "hypervolume rows", "front size", "seed_s"):
        label = "seeding (bulk insert, s)" if key == "seed_s" else key
        cells = [_s(facts[b][key]) if key == "seed_s" else f"{facts[b][key]:,}" for b in backends]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    same = {b: facts[b].get("same") for b in backends}
    lines += [
        "",
        "The job is written as the scheduler and workers write one (`bench/store_scale.py`, module "
        "docstring): the real `lora` space on MiniLM and the demo task, its practitioner defaults, "
        "distinct random points with their exact parameter counts, 1% failed trials, a second run of "
        "each structure that is on the front when it completes (the scheduler's confirmation rule), eight "
        "values per completed trial (accuracy on a 120-example search split, so ties are common) and one "
        "hypervolume row per completed trial. Values and hypervolumes are synthetic. The rows go in by "
        "bulk insert; before that, a small job written both ways (bulk, and through `Store.add_trial`, "
        "`mark_running` and `record_outcome`) gave equal rows."
        + (" PostgreSQL ran `VACUUM ANALYZE` after the insert, as autovacuum soon would." if "postgresql" in backends else ""),
        "",
        "Same JSON from the indexed and the straightforward path: "
        + ("; ".join(f"{b}: front and defaults {'yes' if s['front'] else 'NO'}, status {'yes' if s['status'] else 'NO'}"
                     for b, s in same.items() if s) or "not checked (--no-baseline)") + ".",
        "",
        "## How",
        "",
        "Migration 0006 adds three columns to `trials` and three indexes. `structure_digest` names a "
        "structure (replicates share it), `metric_value` copies the job's task metric from "
        "`trial_values`, and `twinned` marks trials whose structure the job ran more than once at that "
        "rung. A front is then one pass over the index `(job_id, state, rung, twinned, trainable_params, "
        "metric_value, ...)`. SQL cuts the trials without a twin to their staircase (the best metric per "
        "cost that beats every cheaper cost): an exact rule, since each trial it drops is dominated by "
        "an observation. The twinned trials come back whole, light, and are pooled in Python as "
        "before. botorch's `is_non_dominated` sorts the few dozen that are left "
        "(`autopeft/store/fronts.py`). `tests/store/test_fronts.py` checks that the result equals the "
        "front and status computed from every trial.",
        "",
        "Not covered: jobs with three objectives (`--also-minimize`) and stores with trials written by an "
        "older autopeft fall back to reading every trial; `pareto --plot` still reads every trial of the "
        "rung, since it draws them all.",
        "",
        f"Raw rows: `{args.csv}`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the straightforward path (about a minute per backend at 100k trials)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    machine = {
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "platform": platform.platform(),
        "python": platform.python_version(), "cores": os.cpu_count(),
        "load_start": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    print(f"building a job of {args.trials} trials", flush=True)
    job = scheduler_like_job(args.trials)
    check_bulk_rows_match_the_api(job)
    timings, facts = Timings(), {}
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            if backend == "sqlite":
                facts[backend] = run_backend(backend, f"sqlite:///{Path(folder) / 'store.db'}", job, args.repeats,
                                             args.baseline, timings)
            else:
                with postgres_database() as url:
                    facts[backend] = run_backend(backend, url, job, args.repeats, args.baseline, timings)
    machine["load_end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    for backend in args.backends:
        for operation in OPERATIONS + EXTRA:
            print(f"{backend:10s} {operation:32s} in-process {_ms(timings.median(backend, operation, 'in-process'))} ms, "
                  f"whole process {_s(timings.median(backend, operation, 'whole process'))} s", flush=True)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["backend", "operation", "measure", "repeat", "seconds"])
            writer.writeheader()
            writer.writerows(timings.rows)
    if args.out:
        args.out.write_text(report(args, facts, timings, machine))


if __name__ == "__main__":
    main()
