"""A search that keeps being broken: killed workers, killed drivers, dropped database connections.

A real MiniLM search on the demo task (2 Ray workers, promotion over 2 rungs, PostgreSQL store) runs
while, at random bounded moments, one of three faults strikes:

- ``worker``: SIGKILL to one Ray worker process (the scheduler must retry its trial elsewhere);
- ``driver``: SIGKILL to the driver and its local Ray, then ``autopeft resume``;
- ``database``: every server connection to the job's database is terminated
  (``pg_terminate_backend``); a driver that dies of it is resumed.

Before every driver kill the harness snapshots the completed trials. The report counts trials lost
or re-run (a snapshotted trial that is gone, or whose values or attempt changed), structures run
twice outside confirmation replicates, the budget overrun, and whether the final front's
hypervolume equals the one recomputed from the stored trials.

    python -m bench.chaos --trials 30 --seed 0 --out docs/chaos.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

import psutil
import psycopg

from autopeft.objectives import job_objectives, observed, structure_key
from autopeft.optimizers.hypervolume import hypervolume
from autopeft.reports import reported_front
from autopeft.store import FINAL_JOB_STATES, Store, TrialRole
from autopeft.trials import TrialState
from bench.postgres import ADMIN, fresh_database

FIDELITY = ["--steps", "20", "--train-examples", "200", "--eval-examples", "100", "--batch-size", "8",
            "--max-length", "32"]
FAULTS = ("worker", "driver", "database")


def autopeft(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "autopeft", *args], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if any("TrialWorker" in part for part in p.info["cmdline"] or [])]


def drop_connections(database: str) -> int:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def snapshot(store: Store) -> dict[int, tuple[dict, int]]:
    """Completed trial id -> (values, attempt)."""
    return {t.id: (t.values, t.attempt) for t in store.trials(1) if t.state == TrialState.COMPLETED}


def run(args, database: str, url: str, workdir: Path) -> dict:
    rng = random.Random(args.seed)
    search = ["search", "--model", "minilm", "--task", "demo", "--trials", str(args.trials), "--workers", "2",
              "--rungs", "2", "--eta", "3", "--optimizer", "random", "--seed", str(args.seed), "--storage", url,
              *FIDELITY]
    driver = autopeft(*search, cwd=workdir)
    store = Store(url)
    faults: list[tuple[float, str, str]] = []
    snapshots: list[dict[int, tuple[dict, int]]] = []
    resumes = 0
    started = time.monotonic()
    while time.monotonic() - started < args.limit_s:
        time.sleep(rng.uniform(args.min_gap_s, args.max_gap_s))
        job = store.job(1) if store.jobs() else None
        if job is not None and job.state in FINAL_JOB_STATES:
            break
        if driver.poll() is not None:  # the driver ended (done, or died of a fault): resume unless final
            if job is not None and job.state in FINAL_JOB_STATES:
                break
            driver, resumes = autopeft("resume", "1", "--storage", url, cwd=workdir), resumes + 1
            continue
        if job is None or len(faults) >= args.faults:
            continue
        fault = rng.choice(FAULTS)
        at = time.monotonic() - started
        if fault == "worker" and worker_pids():
            victim = rng.choice(worker_pids())
            os.kill(victim, signal.SIGKILL)
            faults.append((at, fault, f"pid {victim}"))
        elif fault == "driver":
            snapshots.append(snapshot(store))
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
            driver, resumes = autopeft("resume", "1", "--storage", url, cwd=workdir), resumes + 1
            faults.append((at, fault, f"{len(snapshots[-1])} trials completed before"))
        elif fault == "database":
            faults.append((at, fault, f"{drop_connections(database)} connections terminated"))
    while driver.poll() is None and time.monotonic() - started < args.limit_s:
        time.sleep(2)
    return {"faults": faults, "snapshots": snapshots, "resumes": resumes, "seconds": time.monotonic() - started,
            "store": store}


def verdict(result: dict, trials_budget: int) -> dict:
    store: Store = result["store"]
    job, trials = store.job(1), store.trials(1)
    final = {t.id: t for t in trials}
    changed = sum(1 for shot in result["snapshots"] for trial_id, (values, attempt) in shot.items()
                  if trial_id not in final or (final[trial_id].values, final[trial_id].attempt) != (values, attempt))
    searched = [t for t in trials if t.state == TrialState.COMPLETED and t.role != TrialRole.REPLICATE]
    twice = sum(n - 1 for n in Counter(structure_key(t) for t in searched).values() if n > 1)
    spent = sum(3 ** t.rung for t in trials if t.state in (TrialState.COMPLETED, TrialState.FAILED))
    objectives = job_objectives(job)
    history = store.hypervolumes(1)
    front = reported_front(trials, objectives)
    recomputed = None
    if history:
        rung, _, recorded, reference = history[-1]
        rows = [t for t in observed(trials, objectives) if t.rung == rung]
        values = [{o.name: t.value(o.name) for o in objectives} for t in rows]
        recomputed = hypervolume(values, objectives, reference)
    return {
        "state": job.state, "trials": len(trials), "completed": sum(t.state == TrialState.COMPLETED for t in trials),
        "failed": sum(t.state == TrialState.FAILED for t in trials), "lost_or_rerun": changed,
        "structures_run_twice": twice, "budget": trials_budget, "spent_units": spent,
        "overrun_units": max(0.0, spent - trials_budget), "front_size": len(front),
        "recorded_hv": history[-1][2] if history else None, "recomputed_hv": recomputed,
        "retried_attempts": sum(t.attempt - 1 for t in trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--faults", type=int, default=8, help="most faults to inject")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-gap-s", type=float, default=15.0)
    parser.add_argument("--max-gap-s", type=float, default=45.0)
    parser.add_argument("--limit-s", type=float, default=1800.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with fresh_database("autopeft_chaos") as url, tempfile.TemporaryDirectory() as folder:
        result = run(args, url.rsplit("/", 1)[1], url, Path(folder))
        summary = verdict(result, args.trials)
        result["store"].close()
    in_flight = 2  # workers: the most trials that can be under way when the budget is reached
    lines = [
        "# Chaos: a search under worker kills, driver kills and dropped database connections",
        "",
        f"Command: `python -m bench.chaos --trials {args.trials} --faults {args.faults} --seed {args.seed}`.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; PostgreSQL 127.0.0.1:5432; "
        f"load average at the end {os.getloadavg()[0]:.1f}; date {date.today()}.  ",
        f"Search: MiniLM on the demo task, 2 Ray workers, random optimizer, 2 rungs (eta 3), {' '.join(FIDELITY)}; "
        f"faults {args.min_gap_s:g}-{args.max_gap_s:g} s apart. It took {result['seconds']:.0f} s and "
        f"{result['resumes']} resumes.",
        "",
        "| fault at (s) | kind | detail |",
        "|---:|---|---|",
        *[f"| {at:.0f} | {kind} | {detail} |" for at, kind, detail in result["faults"]],
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| final job state | {summary['state']} | completed |",
        f"| trials stored (completed / failed) | {summary['trials']} ({summary['completed']} / {summary['failed']}) | |",
        f"| completed trials lost or re-run | {summary['lost_or_rerun']} | 0 |",
        f"| structures run twice (outside confirmation replicates) | {summary['structures_run_twice']} | 0 |",
        f"| budget spent / budget (trial units) | {summary['spent_units']:g} / {summary['budget']} | overrun <= {in_flight} |",
        f"| retried attempts (lost workers, resumed trials) | {summary['retried_attempts']} | |",
        f"| last recorded HV vs recomputed from the store | {summary['recorded_hv']} vs {summary['recomputed_hv']} | equal |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
