"""ComPEFT on export: bytes and dev metric of a trained SST-2 LoRA before and after compression.

Trains LoRA r8 on q and v of every MiniLM layer with ``autopeft train``'s code on a seeded SST-2
subset, then runs ``export --compress``'s code at each density. Raw rows go to
``bench/results/compeft.csv``, the table to ``docs/compeft.md``::

    nice -n 10 python -m bench.compeft --densities 0.05 0.1 0.2
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path

from autopeft.scheduler import JobSpec, prepare
from autopeft.space import count_trainable
from autopeft.space.structure import LoraModules, Structure
from autopeft.store import JobState, Store
from autopeft.training import TrainingOptions
from autopeft.training.compress import compress_trial
from autopeft.training.run import train_config
from autopeft.training.sources import config_of_trial, model_of, task_of
from autopeft.trials import Fidelity, TrialOutcome, TrialState

ROOT = Path(__file__).resolve().parent.parent
SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2"
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
        for density in args.densities:
            report = compress_trial(config, folder / "trained", density, task, folder / f"compressed-{density:g}")
            rows.append({"density": density, "bytes_before": report.bytes_before, "bytes_after": report.bytes_after,
                         "accuracy_before": report.dev_before["accuracy"], "accuracy_after": report.dev_after["accuracy"],
                         "loss_before": report.dev_before["loss"], "loss_after": report.dev_after["loss"]})
            print(report.summary_line(), flush=True)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    with open(ROOT / "bench" / "results" / "compeft.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (ROOT / "docs" / "compeft.md").write_text(report_text(rows, args, options, trained, time.perf_counter() - started))


def report_text(rows: list[dict], args, options: TrainingOptions, trained, seconds: float) -> str:
    lines = [
        "# ComPEFT on export: size and dev accuracy of a trained SST-2 LoRA",
        "",
        f"Command: `nice -n 10 python -m bench.compeft --densities {' '.join(f'{d:g}' for d in args.densities)} "
        f"--train-examples {args.train_examples} --epochs {args.epochs:g}`.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, no GPU; load average at "
        f"the end {os.getloadavg()[0]:.1f}; {datetime.now():%Y-%m-%d %H:%M}; {seconds:.0f} s in all.  ",
        f"Structure: LoRA r8 (alpha 16) on query and value of all 6 MiniLM layers, trained by `autopeft train`'s "
        f"code: {trained.steps} steps, batch {options.batch_size}, length {options.max_length}, AdamW "
        f"{options.learning_rate:g}, {trained.train_examples} SST-2 training examples, seed 0. Dev: all "
        f"{trained.dev_examples} SST-2 dev sentences. Bytes: the adapter's tensors (LoRA and the dense task head) "
        "as one safetensors file, before and after. Raw rows: `bench/results/compeft.csv`.",
        "",
        "| density | bytes before | bytes after | smaller | dev accuracy before | after | dev loss before | after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['density']:g} | {r['bytes_before']:,} | {r['bytes_after']:,} | {r['bytes_before'] / r['bytes_after']:.1f}x | "
        f"{r['accuracy_before']:.4f} | {r['accuracy_after']:.4f} | {r['loss_before']:.4f} | {r['loss_after']:.4f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
