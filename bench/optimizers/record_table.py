"""Record a MiniLM lookup table: every feasible point of a grouped space, trained once.

``--space lora --task sst2`` is the table the optimizer defaults were chosen on (recorded before
trials scored on a search split). ``--space adapters`` and ``--space methods`` (SST-2) and
``--task mrpc`` are tables no default was tuned on.

Appends one CSV row per configuration as soon as it finishes and skips configurations already in
the file, so an interrupted recording resumes where it stopped::

    nice -n 10 python -m bench.optimizers.record_table [--space adapters] [--task mrpc] [--limit N] [--shard I/N]

Two shards (``--shard 0/2`` and ``--shard 1/2``, one thread each) use both cores of a 2-core machine;
each writes its own file (``…table.shard0.csv``) and ``--merge`` joins them into the table.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from bench.optimizers.grouped_spaces import GROUPED_SPACES
from bench.optimizers.proxy_setup import TABLE_FIDELITY, TASKS, grouped_space, proxy_trainer, train

RESULTS = Path(__file__).parent / "results"
TRAINING_SEED = 0
OUTCOME_COLUMNS = [
    "trainable_params", "accuracy", "peak_memory_bytes", "step_time_s", "wall_time_s", "state", "error"
]  # fmt: skip


def table_path(space: str, task: str) -> Path:
    """Where the table of grouped space ``space`` on ``task`` lives (the LoRA tables keep their first names)."""
    return RESULTS / (f"minilm_{task}_table.csv" if space == "lora" else f"minilm_{task}_{space}_table.csv")


TABLE = table_path("lora", "sst2")


def columns(space) -> list[str]:
    return ["config", *space.names, *OUTCOME_COLUMNS]


def recorded(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with path.open(newline="") as handle:
        return {row["config"] for row in csv.DictReader(handle)}


def shard_path(table: Path, index: int) -> Path:
    return table.with_name(f"{table.stem}.shard{index}{table.suffix}")


def merge_shards(table: Path, fieldnames: list[str]) -> None:
    """Append every shard row not yet in ``table``, then delete the shard files."""
    shards = sorted(table.parent.glob(f"{table.stem}.shard*{table.suffix}"))
    done = recorded(table)
    new_file = not table.exists()
    with table.open("a", newline="") as handle:
        # A dimension the space has since dropped (and its rows' column) is left out.
        writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        for shard in shards:
            with shard.open(newline="") as rows:
                writer.writerows(row for row in csv.DictReader(rows) if row["config"] not in done)
    for shard in shards:
        shard.unlink()
    print(f"{table}: {len(recorded(table))} configurations", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="stop after this many new configurations")
    parser.add_argument("--space", choices=list(GROUPED_SPACES), default="lora")
    parser.add_argument("--task", choices=list(TASKS), default="sst2")
    parser.add_argument("--largest-first", action="store_true",
                        help="record the largest structures first (a quick check that the task separates them)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/minilm_<task>[_<space>]_table.csv")
    parser.add_argument("--shard", default="0/1", help="I/N: record every N-th configuration from the I-th")
    parser.add_argument("--merge", action="store_true", help="join the shard files into --out and stop")
    args = parser.parse_args()
    table = args.out or table_path(args.space, args.task)
    args.out = table
    index, count = (int(part) for part in args.shard.split("/"))
    space = grouped_space(args.space)
    if args.merge:
        merge_shards(args.out, columns(space))
        return
    if count > 1:
        args.out = shard_path(args.out, index)

    done = recorded(args.out) | recorded(table)
    points = list(space.all_points())
    if args.largest_first:
        points.sort(key=space.trainable_params, reverse=True)
    mine = [p for number, p in enumerate(points) if number % count == index]
    todo = [p for p in mine if space.config_id(p) not in done][: args.limit]
    fidelity = TABLE_FIDELITY[args.space]
    print(f"{len(done)} recorded, {len(todo)} to go; fidelity {fidelity}", flush=True)
    trainer = proxy_trainer(args.task)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new_file = not args.out.exists()
    with args.out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(space))
        if new_file:
            writer.writeheader()
        for number, point in enumerate(todo):
            started = time.perf_counter()
            outcome = train(trainer, space, point, number, TRAINING_SEED, fidelity)
            writer.writerow({
                "config": space.config_id(point), **point,
                "trainable_params": outcome.trainable_params or space.trainable_params(point),
                "accuracy": outcome.metrics.get("accuracy", ""),
                "peak_memory_bytes": outcome.peak_memory_bytes, "step_time_s": outcome.step_time_s,
                "wall_time_s": outcome.wall_time_s, "state": outcome.state.value, "error": outcome.error or "",
            })  # fmt: skip
            handle.flush()
            accuracy = outcome.metrics.get("accuracy", float("nan"))
            print(f"{len(done) + number + 1:4d} {space.config_id(point):32s} acc={accuracy:.4f} "
                  f"params={outcome.trainable_params} {time.perf_counter() - started:.1f}s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
