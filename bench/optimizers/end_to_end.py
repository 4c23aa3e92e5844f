"""A real end-to-end comparison: full autopeft searches with MOBO and with random search.

Same store, same seeds, same budget, 2 Ray workers, MiniLM fine-tuned on SST-2 for every trial
(no lookup table). Hypervolume of each job's completed trials, in the order they finished, on
(accuracy, log10 trainable parameters) against one reference point placed by autopeft's rule on
all jobs' trials together.

    python -m bench.optimizers.end_to_end --trials 20 --out docs/optimizers_end_to_end.md
"""

from __future__ import annotations

import argparse
import platform
from datetime import date
from pathlib import Path

from autopeft.objectives import Objective
from autopeft.optimizers.hypervolume import hypervolume, reference_point
from autopeft.scheduler import JobSpec, prepare, run_search
from autopeft.store import Store
from autopeft.trials import Fidelity, TrialState
from bench.data import SST2

SPACE = Path(__file__).with_name("grouped_lora.yaml")
FIDELITY = Fidelity(train_examples=1600, steps=100, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=400)
OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
WORKERS = 2


def values(trials) -> list[dict[str, float]]:
    return [{o.name: t.value(o.name) for o in OBJECTIVES} for t in trials]


def waiting_share(trials, workers: int) -> float:
    """Seconds idle workers waited for their next proposal / (workers x first start to last finish)."""
    span = (max(t.finished_at for t in trials) - min(t.started_at for t in trials)).total_seconds()
    return sum(t.dispatch_wait_s or 0.0 for t in trials) / (workers * span)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizers", nargs="+", default=["mobo", "random"])
    parser.add_argument("--store", type=Path, default=Path("/tmp/autopeft-e2e.db"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    store = Store(str(args.store))
    jobs = {}
    for name in args.optimizers:
        spec = JobSpec(model="minilm", task=str(SST2), space=str(SPACE), trials=args.trials, workers=WORKERS,
                       optimizer=name, seed=args.seed, fidelity=FIDELITY)  # fmt: skip
        jobs[name] = run_search(prepare(spec), store)
    done = {
        name: sorted((t for t in store.trials(job) if t.state == TrialState.COMPLETED), key=lambda t: t.finished_at)
        for name, job in jobs.items()
    }
    reference = reference_point(values([t for ts in done.values() for t in ts]), OBJECTIVES)
    checkpoints = [k for k in (8, 12, 16, 20, 24, 32, 40) if k <= args.trials]
    rows = []
    for name, trials in done.items():
        curve = [hypervolume(values(trials[:k]), OBJECTIVES, reference) for k in checkpoints]
        best = max(t.value("accuracy") for t in trials)
        seconds = sum(t.wall_time_s for t in trials)
        wait = waiting_share(trials, WORKERS)
        rows.append(f"| {name} | {jobs[name]} | {len(trials)} | {best:.4f} | {seconds:.0f} | {100 * wait:.2f}% | "
                    + " | ".join(f"{v:.4f}" for v in curve) + " |")  # fmt: skip
    args.out.write_text(
        "# MOBO vs random search, end to end on MiniLM / SST-2\n\n"
        f"Command: `python -m bench.optimizers.end_to_end --trials {args.trials} --seed {args.seed} --out {args.out}`  \n"
        f"Machine: {platform.machine()}, 2 cores, no GPU, 2 Ray workers; date {date.today()}.  \n"
        f"Space: `bench/optimizers/grouped_lora.yaml`; fidelity {FIDELITY}.  \n"
        f"Reference point: {reference}. One seed: a single real run, not a statistic.\n\n"
        "Proposal wait: seconds idle workers waited for their next configuration, as a share of "
        "2 workers x (first trial start to last trial end).\n\n"
        "| optimizer | job | completed | best accuracy | worker-s | proposal wait | "
        + " | ".join(f"HV@{k}" for k in checkpoints) + " |\n|---|---:|---:|---:|---:|---:|"
        + "---:|" * len(checkpoints) + "\n" + "\n".join(rows) + "\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
