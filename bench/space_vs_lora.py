"""Does a richer shipped space beat the ``lora`` space at equal trials? Real searches, side by side.

For each seed, one full ``autopeft search`` (default optimizer, one Ray worker) over each space on
MiniLM / SST-2 with the same trials and proxy; every trial is scored on the search split, as a
search scores it. Hypervolume of each job's completed trials on (accuracy, log10 trainable
parameters), at checkpoints in the order trials finished, against one reference point placed by
autopeft's rule on all jobs' trials together, so every space is measured over the same parameter
range. The report gives HV per space and seed, the paired difference to ``lora`` over seeds with
a 95% t-interval, and which module types end on each job's front. Raw rows (one per trial) go to
``bench/results/space_vs_lora.csv``; a (space, seed) search already in them is not run again.

    python -m bench.space_vs_lora --spaces sparse lora --seeds 0 1 2 --trials 10 --out docs/space_vs_lora.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import Counter
from pathlib import Path

import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.objectives import Objective
from autopeft.optimizers.hypervolume import hypervolume, reference_point
from autopeft.scheduler import JobSpec, prepare, run_search
from autopeft.space.structure import Structure
from autopeft.store import Store
from autopeft.trials import Fidelity, TrialState
from bench.module_types import SETUPS
from bench.reporting import machine_line, paired_interval
from bench.shards import read_rows, row_writer

RAW = Path(__file__).parent / "results" / "space_vs_lora.csv"
COLUMNS = ("space", "seed", "job", "order", "accuracy", "trainable_params", "kind", "seconds")
FIDELITY = Fidelity(train_examples=1600, steps=60, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=400)
OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
CHECKPOINTS = (4, 6, 8, 10, 12, 16, 20)


def kind(structure: Structure) -> str:
    """What a structure is, in a word: its tuner method, DSEE, SPT complete, a LoRA variant, IA3..."""
    if structure.tuner is not None:
        return structure.tuner.method
    if structure.sparse is not None:
        return "dsee" if structure.sparse.rule == "residual" else "lora+sparse"
    if structure.lora is not None:
        return structure.lora.variant + ("+ia3" if structure.ia3 else "")
    return "+".join(structure.module_types) or "none"


def search(space: str, seed: int, trials: int, store: Store) -> list[dict]:
    """Run one search; its completed trials as raw rows, in the order they finished."""
    spec = JobSpec(model="minilm", task=str(SETUPS["minilm"]["task"]), space=space, trials=trials, workers=1,
                   seed=seed, fidelity=FIDELITY)
    job = run_search(prepare(spec), store)
    done = sorted((t for t in store.trials(job) if t.state == TrialState.COMPLETED), key=lambda t: t.finished_at)
    return [{"space": space, "seed": seed, "job": job, "order": order, "accuracy": t.value("accuracy"),
             "trainable_params": t.value("trainable_params"), "kind": kind(Structure.from_json(t.structure)),
             "seconds": round(t.wall_time_s, 1)} for order, t in enumerate(done)]


def front_kinds(rows: list[dict]) -> Counter:
    points = torch.tensor([[r["accuracy"], -r["trainable_params"]] for r in rows], dtype=torch.double)
    return Counter(r["kind"] for r, keep in zip(rows, is_non_dominated(points).tolist()) if keep)


def report(args: argparse.Namespace, runs: dict[tuple[str, int], list[dict]]) -> str:
    every = [r for rows in runs.values() for r in rows]
    reference = reference_point([{o.name: r[o.name] for o in OBJECTIVES} for r in every], OBJECTIVES)
    checkpoints = [k for k in CHECKPOINTS if k <= args.trials]

    def curve(rows: list[dict]) -> list[float]:
        return [hypervolume([{o.name: r[o.name] for o in OBJECTIVES} for r in rows[:k]], OBJECTIVES, reference)
                for k in checkpoints]

    curves = {key: curve(rows) for key, rows in runs.items()}
    lines = ["| space | seed | completed | best accuracy | worker-s | " + " | ".join(f"HV@{k}" for k in checkpoints)
             + " | front (module types) |", "|---|---:|---:|---:|---:|" + "---:|" * len(checkpoints) + "---|"]
    for (space, seed), rows in sorted(runs.items()):
        front = ", ".join(f"{k} x{n}" for k, n in sorted(front_kinds(rows).items()))
        lines.append(f"| {space} | {seed} | {len(rows)} | {max(r['accuracy'] for r in rows):.4f} "
                     f"| {sum(r['seconds'] for r in rows):.0f} | " + " | ".join(f"{v:.4f}" for v in curves[space, seed])
                     + f" | {front} |")
    summary = []
    for space in args.spaces:
        if space == "lora":
            continue
        for index, k in enumerate(checkpoints):
            diffs = [curves[space, s][index] - curves["lora", s][index] for s in args.seeds]
            ratio = statistics.mean(curves[space, s][index] for s in args.seeds) / statistics.mean(
                curves["lora", s][index] for s in args.seeds)
            summary.append(f"| {space} | {k} | {ratio:.3f} | {paired_interval(diffs)} |")
    command = (f"python -m bench.space_vs_lora --spaces {' '.join(args.spaces)} --seeds "
               f"{' '.join(map(str, args.seeds))} --trials {args.trials} --out {args.out}")
    return (
        "# Richer spaces against the lora space at equal trials\n\n"
        f"Command: `{command}` (resumable: a search already in the raw rows is not run again)  \n"
        f"{machine_line(1)}  \n"
        f"Task: SST-2 on MiniLM; each trial scored on the search split ({FIDELITY}); default optimizer, one "
        f"Ray worker per search. Reference point {reference}, placed on all {len(every)} completed trials of "
        "every search, so every space is measured over the same parameter range. Raw rows: "
        "`bench/results/space_vs_lora.csv`.\n\n"
        + "\n".join(lines)
        + "\n\nHypervolume against `lora` (mean over seeds as a ratio; paired difference per seed with a 95% "
        "t-interval):\n\n| space | trials | mean HV / lora's | paired difference |\n|---|---:|---:|---|\n"
        + "\n".join(summary) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["sparse", "lora"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--store", type=Path, default=Path("/tmp/autopeft-space-vs-lora.db"))
    parser.add_argument("--results", type=Path, default=RAW, help="raw rows (CSV)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if "lora" not in args.spaces:
        raise SystemExit("--spaces must include lora, the space the others are compared with")
    measured = read_rows(args.results, lambda row: f"{row['space']}/{row['seed']}")
    store = Store(f"sqlite:///{args.store}")
    with row_writer(args.results, COLUMNS) as write:
        for seed in args.seeds:
            for space in args.spaces:
                if f"{space}/{seed}" not in measured:
                    for row in search(space, seed, args.trials, store):
                        write(row)
    runs: dict[tuple[str, int], list[dict]] = {}
    with args.results.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["space"] in args.spaces and int(row["seed"]) in args.seeds:
                runs.setdefault((row["space"], int(row["seed"])), []).append(
                    {**row, "accuracy": float(row["accuracy"]), "trainable_params": float(row["trainable_params"]),
                     "seconds": float(row["seconds"]), "order": int(row["order"])})
    for rows in runs.values():
        rows.sort(key=lambda r: r["order"])
    args.out.write_text(report(args, runs))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
