"""Ray Tune trials against autopeft's persistent Ray actors, on the same trials.

Tune runs every trial in a fresh trainable, so each one loads the base model and tokenizes its
data again; autopeft's actors load once and keep both. Both paths run the same structures
(drawn by the same optimizer and seed), on the same fidelity and worker count, one after the
other in one process; the report gives wall time per trial and the time spent before training.

    python -m bench.tune_vs_actors --trials 6 --out docs/tune_vs_actors.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import ray
from ray import tune

from autopeft.integrations.ray_tune import AutopeftSearcher
from autopeft.scheduler import JobSpec, prepare, run_search
from autopeft.store import Store
from autopeft.trials import Fidelity, TrialRequest
from bench.data import SST2

FIDELITY = Fidelity(train_examples=1200, steps=60, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=400)


def with_tune(prepared, trials: int, workers: int, folder: Path) -> dict[str, float]:
    model, task = prepared.model, prepared.task

    def trainable(config):
        from autopeft.worker import ProxyTrainer, WorkerSpec

        started = time.perf_counter()
        trainer = ProxyTrainer(WorkerSpec(model, task, threads=1))
        trainer.data(FIDELITY)
        setup = time.perf_counter() - started
        outcome = trainer.run(TrialRequest(0, 0, config["structure"], seed=0, fidelity=FIDELITY))
        tune.report({**outcome.metrics, "setup_s": setup, "trial_s": time.perf_counter() - started})

    searcher = AutopeftSearcher(prepared.space, prepared.objectives, optimizer="random", seed=0)
    ray.shutdown()  # the actor run before leaves its local Ray up; Tune gets a fresh one
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    try:
        results = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials, max_concurrent_trials=workers),
            run_config=tune.RunConfig(storage_path=str(folder), verbose=0),
        ).fit()
    finally:
        wall = time.perf_counter() - started
        ray.shutdown()
    frame = results.get_dataframe()
    return {"wall": wall, "setup": statistics.median(frame["setup_s"]), "trial": statistics.median(frame["trial_s"])}


def with_actors(prepared, store_path: Path) -> dict[str, float]:
    store_path.unlink(missing_ok=True)
    store = Store(str(store_path))
    started = time.perf_counter()
    job_id = run_search(prepared, store)
    wall = time.perf_counter() - started
    trials = store.trials(job_id)
    before_training = [t.timings["data"] + t.timings["inject"] for t in trials]
    return {"wall": wall, "setup": statistics.median(before_training),
            "trial": statistics.median(t.wall_time_s for t in trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = JobSpec(model="minilm", task=str(SST2), trials=args.trials, workers=args.workers, optimizer="random",
                   fidelity=FIDELITY)
    prepared = prepare(spec)
    actors = with_actors(prepared, Path("/tmp/autopeft-tune-vs-actors.db"))
    tuned = with_tune(prepared, args.trials, args.workers, Path("/tmp/autopeft-tune-runs"))
    rows = [
        f"| {name} | {r['wall']:.1f} s | {r['wall'] / args.trials:.1f} s | {r['trial']:.1f} s | {r['setup']:.2f} s |"
        for name, r in (("autopeft actors", actors), ("Ray Tune trainable", tuned))
    ]
    args.out.write_text(
        "# Ray Tune trials against autopeft's persistent actors\n\n"
        f"Command: `python -m bench.tune_vs_actors --trials {args.trials} --workers {args.workers} --out {args.out}`  \n"
        f"Machine: {platform.machine()}, {args.workers} workers on 2 cores, no GPU; date {date.today()}.  \n"
        f"MiniLM on SST-2, fidelity {FIDELITY}; the same {args.trials} structures (random optimizer, seed 0).\n\n"
        "| path | total wall time (incl. Ray start) | per trial | median trial | before training (median) |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(rows) + f"\n\nRatio of total wall time Tune / actors: "
        f"{tuned['wall'] / actors['wall']:.2f}.\n"
    )


if __name__ == "__main__":
    main()
