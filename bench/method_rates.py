"""Do the per-method learning-rate factors help on a task they were not chosen on?

The proxy trains each module kind at its factor of the run's rate (``autopeft.space.tuners.rate_factor``);
the factors were chosen on SST-2's search split (docs/methods_table.md). This is their verdict on
MRPC, which the choice never read: every method whose factor is not 1 trains with MiniLM at its
methods-table structure (q and v of every layer, the size nearest 0.3% of the model), through the
methods table's proxy (80 steps of 16 x 128 tokens, at LoRA's rate there, 3e-3, without stall
rescues so that the arms differ only in rates), once with the factors and once with every
parameter at the shared rate, as before them. Native sparse deltas, which take SHiRA's factor
because they train the same entries the same way, are measured the same way. Dev accuracy is
reported per method (mean over ``SEEDS``; one seed keeps the study under an hour of 2 cores), with
how many runs ended at the majority class, and the mean paired difference over methods with its 95% t-interval. At 80
steps most MRPC runs stay at the majority class whatever the rate, so the dev loss (cross-entropy,
nats) is the primary measure: it shows how far a method moved when its accuracy cannot yet.

    python -m bench.method_rates --threads 1 --shard I/2 --out docs/method_rates.md
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from autopeft.models import resolve_model
from autopeft.space.structure import SparseDeltas, Structure
from autopeft.space.tuners import LORA_RATE, SPARSE_DELTAS, rate_factor
from autopeft.tasks import load_task
from autopeft.training.run import AT_MAJORITY
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.data import GLUE
from bench.methods_table import METHODS, nearest_size, structure
from bench.reporting import machine_line, paired_interval
from bench.shards import Shard, read_rows, row_writer

TASK = "MRPC"
FIDELITY = Fidelity(train_examples=1280, steps=80, batch_size=16, max_length=128, learning_rate=LORA_RATE,
                    lr_rescues=0)
SEEDS = (0,)
ARMS = ("factors", "shared rate")
RAW = Path(__file__).parent / "results" / "method_rates.csv"
COLUMNS = ("method", "arm", "seed", "size", "trainable", "accuracy", "f1", "loss", "learning_rate", "rescues", "seconds")


def methods() -> list[str]:
    """Methods of the methods table whose factor is not 1 (for the others the arms are the same run),
    then native sparse deltas, which take SHiRA's factor."""
    return [m for m in METHODS if rate_factor(m) != 1.0] + [SPARSE_DELTAS]


def method_structure(method: str, layout) -> tuple[int, Structure]:
    """A method's size and methods-table structure; sparse deltas train as many entries of each q and
    v as SHiRA's structure does, chosen by DSEE's weight-only rule (no measurement to wait for)."""
    if method != SPARSE_DELTAS:
        size = nearest_size(method, layout)
        return size, structure(method, size, layout)
    size = nearest_size("shira", layout)
    shira = structure("shira", size, layout).tuner
    entries = {place: size * (layout.matrix(*place).in_features + layout.matrix(*place).out_features)
               for place in shira.places}
    return size, Structure(sparse=SparseDeltas(entries, "residual"))


def run_key(row: dict) -> str:
    return f"{row['method']}/{row['arm']}/{row['seed']}"


def measure(args: argparse.Namespace, shard: Shard) -> None:
    done = read_rows(RAW, run_key)
    todo = [{"method": m, "arm": arm, "seed": seed} for m in methods() for seed in SEEDS for arm in ARMS]
    todo = [run for number, run in enumerate(todo) if shard.owns(number) and run_key(run) not in done]
    if not todo:
        return
    task = load_task(str(GLUE / TASK))
    trainers = {arm: None for arm in ARMS}
    with row_writer(shard.path(RAW), COLUMNS) as write:
        for run in todo:
            if trainers[run["arm"]] is None:  # one model per arm, loaded when first needed
                trainers[run["arm"]] = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=args.threads),
                                                    kind_rates=run["arm"] == "factors")  # fmt: skip
            trainer = trainers[run["arm"]]
            size, built = method_structure(run["method"], trainer.layout)
            outcome = trainer.run(TrialRequest(run["seed"], run["seed"], built.to_json(), seed=run["seed"],
                                               fidelity=FIDELITY, split="dev"))  # fmt: skip
            metrics = outcome.metrics or {}
            row = {**run, "size": size, "trainable": outcome.trainable_params or 0,
                   "accuracy": metrics.get("accuracy", float("nan")), "f1": metrics.get("f1", float("nan")),
                   "loss": metrics.get("loss", float("nan")), "learning_rate": metrics.get("learning_rate", ""),
                   "rescues": metrics.get("lr_rescues", ""), "seconds": round(outcome.wall_time_s or 0.0, 1)}  # fmt: skip
            write(row)
            print(run_key(row), row["accuracy"], outcome.error or "", flush=True)


def majority_accuracy() -> float:
    labels = list(load_task(str(GLUE / TASK)).dev.labels)
    return max(labels.count(label) for label in set(labels)) / len(labels)


def report(command: str, threads: int) -> str:
    rows = read_rows(RAW, run_key)
    floor = majority_accuracy()
    lines = [
        f"# Per-method learning-rate factors: the verdict on {TASK}\n",
        f"Command: `{command}`  ",
        machine_line(threads) + "  ",
        f"MiniLM on {TASK}, proxy {FIDELITY}, scored on dev; seeds {list(SEEDS)}. Dev loss is the mean "
        f"cross-entropy (nats). Majority-class dev accuracy {floor:.4f}; a run within {AT_MAJORITY} of it "
        "learned nothing.\n",
        "| method | factor | size | trainable | dev loss, factors | dev loss, shared rate | difference "
        "| dev acc., factors | dev acc., shared rate | runs at the majority (factors / shared) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    differences, stuck = [], {arm: 0 for arm in ARMS}
    for method in methods():
        arms = {arm: [rows.get(run_key({"method": method, "arm": arm, "seed": s})) for s in SEEDS] for arm in ARMS}
        if any(row is None for runs in arms.values() for row in runs):
            lines.append(f"| {method} | {rate_factor(method):.3g} | | | - | - | - | - | - | - |")
            continue
        mean = {(arm, column): statistics.fmean(float(r[column]) for r in runs)
                for arm, runs in arms.items() for column in ("loss", "accuracy")}  # fmt: skip
        at_floor = {arm: sum(float(r["accuracy"]) <= floor + AT_MAJORITY for r in runs) for arm, runs in arms.items()}
        for arm in ARMS:
            stuck[arm] += at_floor[arm]
        differences.append(mean["factors", "loss"] - mean["shared rate", "loss"])
        first = arms["factors"][0]
        lines.append(f"| {method} | {rate_factor(method):.3g} | {first['size']} | {int(first['trainable']):,} | "
                     f"{mean['factors', 'loss']:.4f} | {mean['shared rate', 'loss']:.4f} | {differences[-1]:+.4f} | "
                     f"{mean['factors', 'accuracy']:.4f} | {mean['shared rate', 'accuracy']:.4f} | "
                     f"{at_floor['factors']} / {at_floor['shared rate']} |")
    lines.append("")
    if differences:
        lower = sum(d < 0 for d in differences)
        lines.append(f"Over {len(differences)} methods: dev loss lower with the factors for {lower}; mean difference "
                     f"(factors - shared rate) with its 95% t-interval {paired_interval(differences)} nats. Runs at "
                     f"the majority class: {stuck['factors']} with the factors, {stuck['shared rate']} at the shared "
                     f"rate, of {len(differences) * len(SEEDS)} each.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th run from the I-th")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.report_only:
        measure(args, Shard.parse(args.shard))
    command = f"python -m bench.method_rates --threads {args.threads} --out {args.out}"
    args.out.write_text(report(command, args.threads))


if __name__ == "__main__":
    main()
