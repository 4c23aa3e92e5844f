"""Final quality: the searched low-budget structure at full fidelity vs LoRA r=8 on q,v vs full FT.

MiniLM on SST-2 and MRPC, several training seeds each, with ``autopeft train``'s own training path
(:func:`autopeft.training.run.train_model`: HF Trainer, the search split carved from train scored
after every epoch, the best epoch's adapter scored once on dev). Three methods:

* ``autopeft pick``: from the real search recorded in the MiniLM / SST-2 lookup table
  (:mod:`bench.optimizers.record_table`), the most accurate Pareto-optimal structure that trains
  no more parameters than LoRA r=8 on q,v. The same structure is trained on MRPC (a transfer: the
  search ran on SST-2 proxies only).
* ``lora r8 q,v``: LoRA rank 8 (alpha 16) on query and value of every layer, the usual default.
* ``full fine-tuning``: every weight trains.

The PEFT methods train at the proxies' learning rate (1e-3); full fine-tuning at 5e-5, the
common BERT rate. Trainable parameters include the classifier head. Runs shard over processes
(:mod:`bench.shards`); the last shard writes the report.

    python -m bench.quality --seeds 3 --threads 1 --shard 0/2 --out docs/quality.md &
    python -m bench.quality --seeds 3 --threads 1 --shard 1/2 --out docs/quality.md
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import tempfile
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch
from botorch.utils.multi_objective.pareto import is_non_dominated
from transformers import PreTrainedModel, set_seed

from autopeft.export.autopeft_format import AutopeftConfig, TaskHeadSpec, layout_facts
from autopeft.models import TaskHead, load_base_model, resolve_model
from autopeft.space.cost import count_trainable
from autopeft.space.layout import read_layout
from autopeft.space.structure import LoraModules, Structure
from autopeft.tasks import Task, load_task
from autopeft.training.model import TrainableModel, prepare_model
from autopeft.training.options import TrainingOptions
from autopeft.training.run import majority_baseline, train_model
from bench.optimizers.proxy_setup import grouped_space
from bench.optimizers.record_table import TABLE
from bench.shards import Shard, read_rows, row_writer

GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
COLUMNS = ["run", "task", "method", "seed", "structure", "trainable_params", "metric", "value", "accuracy",
           "best_epoch", "steps", "seconds"]  # fmt: skip
METHODS = ("autopeft pick", "lora r8 q,v", "full fine-tuning")
PEFT_LEARNING_RATE = 1e-3
FULL_LEARNING_RATE = 5e-5


@dataclass(frozen=True)
class Setting:
    """How one task is trained: a training subset (None: all of it), epochs and sequence length."""

    folder: str
    train_examples: int | None
    epochs: float
    max_length: int

    def options(self, learning_rate: float, seed: int) -> TrainingOptions:
        return TrainingOptions(
            epochs=self.epochs, learning_rate=learning_rate, batch_size=16, max_length=self.max_length,
            train_examples=self.train_examples, seed=seed,
        )  # fmt: skip


# Subsets and two epochs fit 18 runs into about an hour on 2 CPU cores; full splits do not.
SETTINGS = {
    "SST-2": Setting("SST-2", train_examples=2000, epochs=2, max_length=64),
    "MRPC": Setting("MRPC", train_examples=2000, epochs=2, max_length=128),
}


def lora_r8_qv(num_layers: int) -> Structure:
    return Structure(lora=LoraModules({(layer, role): 8 for layer in range(num_layers) for role in ("q", "v")}))


def searched_pick(budget: int) -> tuple[str, Structure]:
    """The lookup table's most accurate Pareto-optimal structure with at most ``budget`` parameters."""
    space = grouped_space()
    points = {space.config_id(p): p for p in space.all_points()}
    with TABLE.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["state"] == "completed" and r["accuracy"]]
    values = torch.tensor([[float(r["accuracy"]), -float(r["trainable_params"])] for r in rows], dtype=torch.double)
    front = [r for r, keep in zip(rows, is_non_dominated(values).tolist()) if keep]
    affordable = [r for r in front if int(r["trainable_params"]) <= budget]
    if not affordable:
        raise SystemExit(f"{TABLE} has no Pareto-optimal structure within {budget:,} trainable parameters")
    best = max(affordable, key=lambda r: float(r["accuracy"]))
    return best["config"], space.decode(points[best["config"]])


def structure_config(task: Task, base: PreTrainedModel, structure: Structure) -> AutopeftConfig:
    ref = resolve_model("minilm")
    layout = read_layout(base)
    return AutopeftConfig(
        base_model=ref.hub_id, model="minilm", head=TaskHeadSpec(task.kind, task.num_labels, task.label_names),
        structure=structure, layout=layout_facts(layout), trainable_params=count_trainable(structure, layout),
    )  # fmt: skip


def full_model(base: PreTrainedModel) -> TrainableModel:
    for parameter in base.parameters():
        parameter.requires_grad_(True)
    return TrainableModel(base, "full", lambda folder: base.save_pretrained(str(folder)))


def trainable_for(method: str, task: Task, seed: int, structures: dict[str, Structure]) -> TrainableModel:
    set_seed(seed)
    base = load_base_model(resolve_model("minilm"), TaskHead.of(task))
    if method == "full fine-tuning":
        return full_model(base)
    return prepare_model(base, structure_config(task, base, structures[method]))


def measure(runs: list[tuple[str, str, int]], tasks: dict[str, Task], structures: dict[str, Structure], pick: str,
            results: Path, shard: Shard) -> None:  # fmt: skip
    done = read_rows(results, "run")
    ref = resolve_model("minilm")
    with row_writer(shard.path(results), COLUMNS) as write:
        for position, (task_name, method, seed) in enumerate(runs):
            run = f"{task_name}/{method}/{seed}"
            if run in done or not shard.owns(position):
                continue
            setting, task = SETTINGS[task_name], tasks[task_name]
            trainable = trainable_for(method, task, seed, structures)
            rate = FULL_LEARNING_RATE if method == "full fine-tuning" else PEFT_LEARNING_RATE
            with tempfile.TemporaryDirectory(prefix="autopeft-quality-") as out:
                result = train_model(trainable, ref, task, setting.options(rate, seed), Path(out))
            write({
                "run": run, "task": task_name, "method": method, "seed": seed,
                "structure": pick if method == "autopeft pick" else method,
                "trainable_params": trainable.trainable_params, "metric": result.metric,
                "value": result.dev[result.metric], "accuracy": result.dev.get("accuracy"),
                "best_epoch": result.best["epoch"], "steps": result.steps, "seconds": round(result.train_seconds, 1),
            })  # fmt: skip
            print(run, result.summary_line(), flush=True)


def report(rows: list[dict[str, str]], tasks: dict[str, Task], total_params: int, pick: str, seeds: int,
           command: str) -> str:  # fmt: skip
    metric_of = {r["task"]: r["metric"] for r in rows}
    majority = {name: majority_baseline(tasks[name])[metric_of[name]] for name in metric_of}
    lines = [
        "# Final quality: searched structure vs LoRA r=8 vs full fine-tuning",
        "",
        f"{command}  ",
        f"Machine: {platform.machine()}, 2 cores, no GPU; date {date.today()}. MiniLM (all-MiniLM-L6-v2, "
        f"{total_params:,} parameters with the head), {seeds} training seeds per cell, `autopeft train`'s "
        "Trainer path (epoch chosen on the search split carved from train; the kept adapter scored once on dev).",
        "",
        f"`autopeft pick` = `{pick}` (layer group / rank / LoRA targets of the grouped space): the most accurate "
        "Pareto-optimal structure of the recorded SST-2 search (`bench/optimizers/results/minilm_sst2_table.csv`) "
        "within LoRA r=8 q,v's parameter count. MRPC trains the same structure (found on SST-2).",
        "",
        "| task | setting | method | trainable | % of model | metric | per seed | mean | vs full FT | vs LoRA r8 |",
        "|---|---|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for task_name, setting in SETTINGS.items():
        if not any(r["task"] == task_name for r in rows):
            continue
        cells = {m: [r for r in rows if r["task"] == task_name and r["method"] == m] for m in METHODS}
        means = {m: statistics.mean(float(r["value"]) for r in cells[m]) for m in METHODS}
        described = ", ".join(f"{k} {v}" for k, v in asdict(setting).items() if k != "folder")
        for method in METHODS:
            first = cells[method][0]
            params = int(first["trainable_params"])
            values = [100 * float(r["value"]) for r in sorted(cells[method], key=lambda r: int(r["seed"]))]
            lines.append(
                f"| {task_name} | {described} | {method} | {params:,} | {100 * params / total_params:.3f}% | "
                f"{first['metric']} | {' / '.join(f'{v:.1f}' for v in values)} | {100 * means[method]:.2f} | "
                f"{100 * (means[method] - means['full fine-tuning']):+.2f} | {100 * (means[method] - means['lora r8 q,v']):+.2f} |"
            )
    lines += ["", "Differences are in points of the task metric (mean over seeds). Always predicting the majority "
              "class scores " + ", ".join(f"{n} {metric_of[n]} {100 * v:.2f}" for n, v in majority.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path("bench/results/quality.csv"))
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th training run from the I-th")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = {name: load_task(str(GLUE / SETTINGS[name].folder)) for name in args.tasks}
    base = load_base_model(resolve_model("minilm"), TaskHead.of(next(iter(tasks.values()))))
    layout = read_layout(base)
    lora = lora_r8_qv(layout.num_layers)
    budget = count_trainable(lora, layout)
    pick, picked = searched_pick(budget)
    structures = {"autopeft pick": picked, "lora r8 q,v": lora}
    runs = [(t, m, s) for s in range(args.seeds) for t in args.tasks for m in METHODS]
    measure(runs, tasks, structures, pick, args.results, Shard.parse(args.shard))
    measured = read_rows(args.results, "run")
    missing = [run for run in runs if f"{run[0]}/{run[1]}/{run[2]}" not in measured]
    if missing:
        print(f"{len(runs) - len(missing)} of {len(runs)} runs measured; the last shard writes the report")
        return
    command = f"`python -m bench.quality --seeds {args.seeds} --threads {args.threads} --out {args.out}`"
    if args.threads == 1:
        command += " (run as `--shard 0/2` and `--shard 1/2` side by side)"
    total = sum(p.numel() for p in base.parameters())
    args.out.write_text(report(list(measured.values()), tasks, total, pick, args.seeds, command))


if __name__ == "__main__":
    main()
