"""ComPEFT on export: bytes, search- and dev-split metric of a trained SST-2 LoRA, two ways to store LoRA A.

Trains LoRA r8 on q and v of every MiniLM layer with ``autopeft train``'s code on a seeded SST-2
subset, then runs ``export --compress``'s code at each density once per way of storing LoRA A
(:data:`~autopeft.export.compeft_format.SEEDED_SCHEMES`), on the same trained adapter. The default
way is chosen on the search split (carved from train) by :func:`chosen_scheme`; dev is only
reported. Raw rows go to ``bench/results/compeft.csv``, the tables to ``docs/compeft.md``::

    nice -n 15 python -m bench.compeft --densities 0.05 0.1 0.2 --train-examples 2000
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from autopeft.export.compeft_format import DEFAULT_SEEDED, SEEDED_SCHEMES, load_compressed
from autopeft.models import TaskHead, load_base_model
from autopeft.scheduler import JobSpec, prepare
from autopeft.space import count_trainable
from autopeft.space.structure import LoraModules, Structure
from autopeft.store import JobState, Store
from autopeft.tasks.holdout import with_search_split
from autopeft.training import TrainingOptions
from autopeft.training.compress import compress_trial
from autopeft.training.run import score_dev, train_config
from autopeft.training.sources import config_of_trial, model_of, task_of
from autopeft.trials import Fidelity, TrialOutcome, TrialState
from bench.data import SST2

ROOT = Path(__file__).resolve().parent.parent
STRUCTURE = Structure(lora=LoraModules({(layer, role): 8 for layer in range(6) for role in ("q", "v")}))


def stored_trial(store: Store, task: str):
    """A job on MiniLM/``task`` with one completed trial carrying :data:`STRUCTURE` (no search run)."""
    prepared = prepare(JobSpec(model="minilm", task=task, space="lora"))
    job_id = store.create_job(prepared.stored_spec(), budget_trials=1)
    store.set_job_state(job_id, JobState.RUNNING)
    params = count_trainable(STRUCTURE, prepared.space.layout)
    record = store.add_trial(job_id, config={}, structure=STRUCTURE.to_json(), trainable_params=params, seed=0,
                             fidelity=Fidelity().to_json())
    store.record_outcome(TrialOutcome(record.id, TrialState.COMPLETED, "bench", trainable_params=params))
    return store.job(job_id), store.trial(job_id, record.number)


TOLERANCE = 0.02
"""Search-split accuracy a way of storing LoRA A may lose, at every density, to count as keeping the score."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--train-examples", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    options = TrainingOptions(epochs=args.epochs, learning_rate=1e-3, batch_size=32, max_length=64,
                              train_examples=args.train_examples, seed=0)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-compeft-") as scratch:
        folder = Path(scratch)
        config = config_of_trial(*stored_trial(Store(f"sqlite:///{folder / 'store.db'}"), str(SST2)))
        task = task_of(config)
        trained = train_config(config, model_of(config), task, options, folder / "trained")
        for seeded in SEEDED_SCHEMES:
            for density in args.densities:
                rows.append(measure(config, task, folder, options, trained, seeded, density))
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "bench" / "results" / "compeft.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (ROOT / "docs" / "compeft.md").write_text(report_text(rows, options, trained, time.perf_counter() - started))


def measure(config, task, folder: Path, options: TrainingOptions, trained, seeded: str, density: float) -> dict:
    """One row: ``export --compress density`` of the adapter in ``folder / "trained"`` with LoRA A
    stored as ``seeded``; bytes, and accuracy on search and dev before and after."""
    report = compress_trial(config, folder / "trained", density, task, folder / f"{seeded}-{density:g}", seeded)
    head = TaskHead(config.head.kind, config.head.num_labels)
    reloaded = load_compressed(load_base_model(model_of(config), head), report.path.parent)
    search = score_dev(reloaded.model, model_of(config), search_as_dev(task, options.seed), options)
    print(report.summary_line(), f"search accuracy {search['accuracy']:.4f}", flush=True)
    return {"seeded": seeded, "density": density, "bytes_before": report.bytes_before, "bytes_after": report.bytes_after,
            "search_accuracy_before": trained.best["accuracy"], "search_accuracy_after": search["accuracy"],
            "accuracy_before": report.dev_before["accuracy"], "accuracy_after": report.dev_after["accuracy"],
            "loss_before": report.dev_before["loss"], "loss_after": report.dev_after["loss"]}


def search_as_dev(task, seed: int):
    """``task`` with the search split training carved from train (and chose its epoch on) in place of dev."""
    carved = task if task.search is not None else with_search_split(task, seed=seed)
    return replace(carved, dev=carved.search)


def chosen_scheme(rows: list[dict]) -> str:
    """The way of storing LoRA A with the smallest files among those that lose at most
    :data:`TOLERANCE` search-split accuracy at every density; else the best mean search accuracy."""
    by_scheme = {seeded: [r for r in rows if r["seeded"] == seeded] for seeded in dict.fromkeys(r["seeded"] for r in rows)}
    keeping = [seeded for seeded, runs in by_scheme.items()
               if all(r["search_accuracy_before"] - r["search_accuracy_after"] <= TOLERANCE for r in runs)]
    if keeping:
        return min(keeping, key=lambda seeded: sum(r["bytes_after"] for r in by_scheme[seeded]))
    return max(by_scheme, key=lambda seeded: sum(r["search_accuracy_after"] for r in by_scheme[seeded]))


SCHEME_WORDS = {
    "delta": "ternary, as its change from the initial draw (rebuilt from the recorded random state)",
    "dense": "dense float32, as trained",
}


def report_text(rows: list[dict], options: TrainingOptions, trained, seconds: float) -> str:
    chosen = chosen_scheme(rows)
    lines = [
        "# ComPEFT on export: size and score of a trained SST-2 LoRA, two ways to store LoRA A",
        "",
        f"Command: `nice -n {os.nice(0)} python -m bench.compeft {' '.join(sys.argv[1:])}`.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, no GPU; load average at "
        f"the end {os.getloadavg()[0]:.1f}; {datetime.now():%Y-%m-%d %H:%M}; {seconds:.0f} s in all.  ",
        f"Structure: LoRA r8 (alpha 16) on query and value of all 6 MiniLM layers, trained once by `autopeft train`'s "
        f"code: {trained.steps} steps, batch {options.batch_size}, length {options.max_length}, AdamW "
        f"{options.learning_rate:g}, {trained.train_examples} SST-2 training examples, seed 0. Every row compresses "
        "that same adapter. LoRA B is always stored ternary as its change from 0, the task head dense; LoRA A is "
        + "; ".join(f"`{k}`: {v}" for k, v in SCHEME_WORDS.items()) + ". "
        f"Search: the {trained.search_examples} examples carved from train on which training chose its epoch; "
        f"dev: all {trained.dev_examples} SST-2 dev sentences, only reported. Bytes: the adapter's tensors as one "
        "safetensors file, before and after (after includes, for `delta`, torch's 5,056-byte random state). "
        "Raw rows: `bench/results/compeft.csv`.",
        "",
        f"Chosen on the search split, before dev is read: **`{chosen}`**, the smallest files among the ways that lose "
        f"at most {TOLERANCE:g} search accuracy at every density (else the best mean search accuracy). "
        f"`compeft_format.DEFAULT_SEEDED` is `{DEFAULT_SEEDED}`"
        + (" (the same)." if chosen == DEFAULT_SEEDED else f", **not** the choice: set it to `{chosen}`."),
        "",
        "| LoRA A | density | bytes before | bytes after | smaller | search accuracy before | after | "
        "dev accuracy before | after | dev loss before | after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| `{r['seeded']}` | {r['density']:g} | {r['bytes_before']:,} | {r['bytes_after']:,} | "
        f"{r['bytes_before'] / r['bytes_after']:.1f}x | {r['search_accuracy_before']:.4f} | {r['search_accuracy_after']:.4f} | "
        f"{r['accuracy_before']:.4f} | {r['accuracy_after']:.4f} | {r['loss_before']:.4f} | {r['loss_after']:.4f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
