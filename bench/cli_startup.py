"""How long the CLI takes to answer, as whole processes, next to a bare interpreter.

Each command runs ``--repeats`` times (interleaved, so load changes hit all alike); the report
gives the median wall time and its ratio to ``python -c pass``. ``jobs`` and ``status`` read a
SQLite store holding one job with 40 finished trials, written here through the store's API.

    python -m bench.cli_startup --repeats 5 --out docs/cli_startup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from autopeft.store import Store
from autopeft.trials import TrialOutcome, TrialState

TARGETS_S = {"autopeft --help": 1.0, "autopeft jobs": 1.5, "autopeft status 1": 1.5}


def seeded_store(path: Path) -> str:
    """A store with one job of 40 completed trials (distinct structures, accuracy and parameters)."""
    url = f"sqlite:///{path}"
    store = Store(url)
    spec = {"model": "minilm", "task": "demo", "space": "lora",
            "objectives": [{"name": "accuracy", "goal": "max"}, {"name": "trainable_params", "goal": "min"}]}
    job = store.create_job(spec, budget_trials=40)
    for number in range(40):
        trial = store.add_trial(job, config={"n": number}, structure={"lora": {"n": number}},
                                trainable_params=1000 * (number + 1), seed=number, fidelity={"steps": 150})
        store.record_outcome(TrialOutcome(trial.id, TrialState.COMPLETED, "w", metrics={"accuracy": 0.5 + number / 100}))
    store.set_job_state(job, "completed")
    store.close()
    return url


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        url = seeded_store(cwd / "store.db")
        autopeft = [sys.executable, "-m", "autopeft"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "autopeft --help": [*autopeft, "--help"],
            "autopeft jobs": [*autopeft, "jobs", "--storage", url],
            "autopeft status 1": [*autopeft, "status", "1", "--storage", url],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                seconds[name].append(timed(command, cwd))
    base = statistics.median(seconds["python -c pass"])
    lines = [
        "# CLI start-up: whole processes, median of interleaved runs",
        "",
        f"Command: `python -m bench.cli_startup --repeats {args.repeats}`.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, no GPU; load average at the end "
        f"{os.getloadavg()[0]:.1f}; date {date.today()}.",
        "",
        "| command | median s | min s | x python -c pass | target s | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, runs in seconds.items():
        median, target = statistics.median(runs), TARGETS_S.get(name)
        met = "" if target is None else ("yes" if median <= target else "no")
        lines.append(f"| `{name}` | {median:.2f} | {min(runs):.2f} | {median / base:.1f} | "
                     f"{'' if target is None else target} | {met} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
