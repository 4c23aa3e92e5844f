"""Hypervolume per unit of compute, with and without multi-fidelity promotion (same seeds).

Runs real searches on MiniLM / SST-2 through the product's own scheduler and workers: for each
seed, one job without promotion and one with ``--rungs 2 --eta 3`` under the same trial-unit
budget. Compute is the summed trial wall time (worker-seconds). The hypervolume of each job's
reported front (top rung reached, or rung 0) is measured against one common reference point
(derived from all jobs' rung-0 trials), on (accuracy, log10 trainable parameters).

    python -m bench.promotion --seeds 2 --budget 12 --out docs/promotion.md
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

from autopeft.reports import reported_front
from autopeft.objectives import Objective
from autopeft.optimizers.hypervolume import hypervolume, reference_point
from autopeft.scheduler import JobSpec, prepare, run_search
from autopeft.store import Store
from autopeft.trials import Fidelity, TrialState
from bench.data import SST2

BASE = Fidelity(train_examples=800, steps=50, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=872)
OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]


def run(store: Store, seed: int, budget: int, rungs: int, optimizer: str, workers: int) -> int:
    spec = JobSpec(model="minilm", task=str(SST2), trials=budget, workers=workers, optimizer=optimizer,
                   seed=seed, fidelity=BASE, rungs=rungs, eta=3.0)
    return run_search(prepare(spec), store)


def values(trials) -> list[dict[str, float]]:
    return [{o.name: t.value(o.name) for o in OBJECTIVES} for t in trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--optimizer", default="random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, default=Path("/tmp/autopeft-promotion.db"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    store = Store(str(args.store))
    jobs = {(seed, rungs): run(store, seed, args.budget, rungs, args.optimizer, args.workers)
            for seed in range(args.seeds) for rungs in (1, 2)}
    trials = {key: [t for t in store.trials(job) if t.state == TrialState.COMPLETED] for key, job in jobs.items()}
    reference = reference_point(values([t for ts in trials.values() for t in ts if t.rung == 0]), OBJECTIVES)
    rows = []
    for (seed, rungs), done in sorted(trials.items()):
        front = reported_front(done, OBJECTIVES)
        compute = sum(t.wall_time_s for t in done)
        volume = hypervolume(values(front), OBJECTIVES, reference)
        top = max(t.rung for t in done)
        rows.append(f"| {seed} | {'yes' if rungs > 1 else 'no'} | {len(done)} ({sum(t.rung > 0 for t in done)} promoted) "
                    f"| {top} | {compute:.0f} | {volume:.4f} | {1000 * volume / compute:.3f} |")
    args.out.write_text(
        "# Multi-fidelity promotion: hypervolume per compute\n\n"
        f"Command: `python -m bench.promotion --seeds {args.seeds} --budget {args.budget} --optimizer {args.optimizer} "
        f"--out {args.out}`  \nMachine: {platform.machine()}, {args.workers} workers on 2 cores, no GPU; "
        f"date {date.today()}.  \nRung-0 fidelity: {BASE}; rung 1 trains 3x the steps and examples "
        f"(cost 3 trial units).  \nBudget: {args.budget} trial units per job. Reference point: {reference}.\n\n"
        "| seed | promotion | trials | top rung | worker-seconds | HV of reported front | HV per 1000 worker-s |\n"
        "|---:|---|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
