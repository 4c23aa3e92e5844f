"""MOBO against random, MOTPE and NSGA-II on a recorded MiniLM lookup table.

Every configuration of a grouped space (:mod:`bench.optimizers.grouped_spaces`) was trained once
for real by :mod:`bench.optimizers.record_table` (150 steps, 2,400 training examples, 400 scored
examples, training seed 0; the adapter and methods tables 80 steps): the LoRA space on SST-2 (the
default table, scored on dev, on which MOBO's defaults were chosen), the adapter space on SST-2
(``--space adapters``, scored on the search split, a table no default was tuned on), or the
conditional methods space (``--space methods``, likewise). Here each optimizer searches that
space through autopeft's own contract, and "evaluating" a point reads its recorded accuracy; trainable
parameters are the exact counts. Two points per batch, as with 2 workers. The noise of a real proxy is frozen
into the table (one draw per configuration), so a seed changes the optimizer, not the scores.

Hypervolume is on (accuracy, log10 trainable parameters) against one reference point for all
runs, placed by autopeft's rule on the whole table; 100% is the HV of the table's true front.

    python -m bench.optimizers.lookup --seeds 10 --optimizers mobo mobo-collapse random motpe nsga2 \
        --out docs/optimizers_lookup.md
    python -m bench.optimizers.lookup --seeds 10 --space adapters --optimizers mobo mobo-collapse random motpe nsga2 \
        --out docs/optimizers_lookup_adapters.md
    python -m bench.optimizers.lookup --seeds 10 --space methods --optimizers mobo random motpe nsga2 \
        --out docs/optimizers_lookup_methods.md

``--space methods`` is conditional: a method's size acts only when that method is chosen. MOBO
encodes inactive sizes at a fixed value; MOTPE samples them define-by-run (``group=True``).

Seeds are 0 .. seeds - 1 unless ``--first-seed`` moves them (seeds 10-19 were used to choose
between MOBO variants on the adapter table, so the reports above stay on seeds they did not see).
Each report also gives the share of the first 40 evaluations that landed on the table's lowest
accuracy (on these tables, collapsed fine-tunes at the majority-class accuracy).
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
from datetime import date
from pathlib import Path

from autopeft.objectives import Objective
from autopeft.optimizers import make_optimizer
from autopeft.optimizers.axes import to_axis
from autopeft.optimizers.hypervolume import reference_axes, reference_point
from autopeft.space import Point
from bench.optimizers.grouped_spaces import GROUPED_SPACES, GroupedSpace
from bench.optimizers.loop import Run, dominated_volume, run_optimizer
from bench.optimizers.proxy_setup import grouped_space
from bench.optimizers.record_table import table_path

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
WORKERS = 2
BUDGETS = {"mobo": 40, "mobo-collapse": 40, "mobo-global": 40, "mobo-2d": 40, "motpe": 40, "nsga2": 40, "random": 64}


def mobo_variant(name: str, space: GroupedSpace) -> dict:
    """Attributes a named MOBO variant changes from the defaults."""
    return {
        "mobo-global": {"local_radius": None},  # acquisition over the whole space, no front neighbourhood
        "mobo-2d": {"initial_points": 2 * len(space.dimensions)},  # the earlier default: two Sobol points per dimension
        "mobo-collapse": {"collapse_aware": True},  # collapsed trials modelled apart (not the default)
    }.get(name, {})


CHECKPOINTS = (10, 20, 30, 40, 64)


def read_table(path: Path) -> dict[str, dict[str, float] | None]:
    """config id -> recorded objective values (None for a failed trial)."""
    table: dict[str, dict[str, float] | None] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            ok = row["state"] == "completed" and row["accuracy"] != ""
            table[row["config"]] = (
                {"accuracy": float(row["accuracy"]), "trainable_params": float(row["trainable_params"])} if ok else None
            )
    return table


def axes(values) -> list[float]:
    return [to_axis(o, values[o.name]) for o in OBJECTIVES]


def search(space: GroupedSpace, table, name: str, seed: int, reference) -> Run:
    optimizer = make_optimizer(name.split("-")[0], space, OBJECTIVES, seed=seed)
    for attribute, value in mobo_variant(name, space).items():
        setattr(optimizer, attribute, value)
    floor = min(v["accuracy"] for v in table.values() if v is not None)
    evaluated: list[bool] = []

    def evaluate(point: Point):
        values = table[space.config_id(point)]
        evaluated.append(values is not None and values["accuracy"] == floor)
        return values

    run = run_optimizer(optimizer, evaluate, axes, reference, BUDGETS[name], initial=WORKERS, q=WORKERS)
    run.floor_hits = evaluated
    return run


def floor_share(run: Run, trials: int = 40) -> float:
    """Share of the first ``trials`` evaluations that landed on the table's lowest accuracy."""
    hits = run.floor_hits[:trials]
    return sum(hits) / len(hits)


def first_reaching(run: Run, target: float) -> int | None:
    """Evaluations after which ``run`` first has at least ``target`` hypervolume."""
    return next((i + 1 for i, hv in enumerate(run.hypervolumes) if hv >= target - 1e-12), None)


def report(runs: dict[str, list[Run]], best: float, table: Path, table_size: int, reference, command: str) -> str:
    median_at = {name: {c: statistics.median(r.at(c) for r in rs) for c in CHECKPOINTS} for name, rs in runs.items()}
    lines = [
        f"# Optimizers on the lookup table {table.name}",
        "",
        f"`{command}` — {date.today()}, {platform.machine()}, 2 cores, no GPU. Table: {table_size} real proxy "
        f"fine-tunes (`{table}`). Reference point {reference}; the "
        f"table's true front has HV {best:.4f} (= 100%). {len(next(iter(runs.values())))} seeds per optimizer, "
        f"batches of {WORKERS}. Cells: median HV as % of the true front's.",
        "",
        "| optimizer | " + " | ".join(f"{c} trials" for c in CHECKPOINTS)
        + " | ask s/batch (median) | first 40 trials at the table's lowest accuracy (median) |",
        "|---|" + "---|" * (len(CHECKPOINTS) + 2),
    ]
    for name, rs in runs.items():
        cells = [f"{100 * median_at[name][c] / best:.1f}%" if c <= BUDGETS[name] else "" for c in CHECKPOINTS]
        ask = statistics.median(s for r in rs for s in r.ask_seconds)
        floor = statistics.median(floor_share(r) for r in rs)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ask:.2f} | {100 * floor:.0f}% |")
    lines.append("")
    if "random" in runs:
        target = median_at["random"][64]
        lines += [f"Random search's median HV after 64 trials: {100 * target / best:.1f}%.", ""]
    for name in (n for n in runs if n.startswith("mobo")):
        if "random" in runs:
            reached = [first_reaching(r, target) for r in runs[name]]
            shown = ", ".join(str(n) if n else f">{BUDGETS[name]}" for n in reached)
            lines.append(f"- {name} reaches it after (per seed) {shown} trials.")
        for other in (n for n in ("random", "motpe", "nsga2") if n in runs):
            ratio = median_at[name][40] / median_at[other][40]
            lines.append(f"  - HV ratio at 40 trials, {name} / {other}: {ratio:.3f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--space", choices=list(GROUPED_SPACES), default="lora")
    parser.add_argument("--task", default="sst2", help="the task the table was recorded on")
    parser.add_argument("--optimizers", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = table_path(args.space, args.task)
    space = grouped_space(args.space)
    ids = {space.config_id(p) for p in space.all_points()}
    table = {config: values for config, values in read_table(path).items() if config in ids}  # rows of dropped points
    missing = sorted(ids - set(table))
    if missing:
        raise SystemExit(f"{path} lacks {len(missing)} configurations (e.g. {missing[0]}); record them first")
    completed = [v for v in table.values() if v is not None]
    reference = reference_point(completed, OBJECTIVES)
    ref_axes = reference_axes(reference, OBJECTIVES)
    best = dominated_volume([axes(v) for v in completed], ref_axes)
    runs: dict[str, list[Run]] = {}
    for name in args.optimizers:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run = search(space, table, name, seed, ref_axes)
            runs.setdefault(name, []).append(run)
            print(f"{name} seed {seed}: HV {100 * run.hypervolumes[-1] / best:.1f}% after {len(run.hypervolumes)}, "
                  f"{100 * run.at(20) / best:.1f}% after 20, {sum(run.floor_hits[:40])} of 40 at the floor", flush=True)
    command = (
        f"python -m bench.optimizers.lookup --seeds {args.seeds}"
        + (f" --first-seed {args.first_seed}" if args.first_seed else "")
        + f" --space {args.space} --task {args.task} "
        f"--optimizers {' '.join(args.optimizers)}" + (f" --out {args.out}" if args.out else "")
    )
    text = report(runs, best, path.relative_to(Path(__file__).parents[2]), len(table), {k: round(v, 4) for k, v in reference.items()}, command)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
