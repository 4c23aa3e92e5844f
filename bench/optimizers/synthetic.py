"""MOBO, random/Sobol, MOTPE and NSGA-II on BoTorch's multi-objective test problems.

BraninCurrin (d=2) and DTLZ2 (d=6, 2 objectives), both negated so that every objective is
maximised, each optimizer behind autopeft's own contract over a space of ``Real`` dimensions on
[0, 1]^d. Budget as in BoTorch's MOBO tutorial: 6 initial points, then 20 batches of 4. The
hypervolume uses each problem's published reference point and is reported as a share of its
published maximum.

    python -m bench.optimizers.synthetic --seeds 5 --out docs/optimizers_synthetic.md
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import torch
from botorch.test_functions.multi_objective import DTLZ2, BraninCurrin

from autopeft.objectives import Objective
from autopeft.optimizers import OPTIMIZERS, make_optimizer
from autopeft.space import Point
from autopeft.space.dimensions import DimensionVectors, Real
from bench.optimizers.loop import Run, run_optimizer

PROBLEMS = {
    "BraninCurrin": lambda: BraninCurrin(negate=True),
    "DTLZ2 (d=6)": lambda: DTLZ2(dim=6, num_objectives=2, negate=True),
}
INITIAL, BATCH, BATCHES = 6, 4, 20


class UnitCubeSpace(DimensionVectors):
    """The part of the SearchSpace interface the optimizers use, over ``dim`` Real dimensions in [0, 1]."""

    def __init__(self, dim: int) -> None:
        self.dimensions = tuple(Real(f"x{i}", 0.0, 1.0) for i in range(dim))
        self.space_name = f"unit-cube-{dim}"

    def structure_key(self, point: Mapping[str, float]) -> str:
        return json.dumps([round(float(point[name]), 9) for name in self.names])

    def is_feasible(self, point: Mapping[str, float]) -> bool:
        return True

    def trainable_params(self, point: Mapping[str, float]) -> int:
        return 0  # no closed-form objective in these problems


def run_problem(name: str, optimizer_name: str, seed: int) -> Run:
    problem = PROBLEMS[name]()
    space = UnitCubeSpace(problem.dim)
    objectives = [Objective(f"f{j}", "max") for j in range(problem.num_objectives)]
    optimizer = make_optimizer(optimizer_name, space, objectives, seed=seed)
    if optimizer_name == "mobo":
        optimizer.initial_points = INITIAL

    def evaluate(point: Point) -> dict[str, float]:
        x = torch.tensor([space.encode(point)], dtype=torch.double)
        x = problem.bounds[0] + x * (problem.bounds[1] - problem.bounds[0])
        return {f"f{j}": float(v) for j, v in enumerate(problem(x)[0])}

    return run_optimizer(
        optimizer, evaluate, axes=lambda values: [values[o.name] for o in objectives],
        reference=problem.ref_point.double(), budget=INITIAL + BATCH * BATCHES, initial=INITIAL, q=BATCH,
    )  # fmt: skip


def report(results: dict[tuple[str, str], list[Run]], seeds: int, command: str) -> str:
    budget = INITIAL + BATCH * BATCHES
    lines = [
        "# Optimizers on synthetic problems",
        "",
        f"`{command}` — {date.today()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads. {seeds} seeds; {INITIAL} initial points, then "
        f"{BATCHES} batches of {BATCH} ({budget} evaluations). Hypervolume against each problem's "
        "published reference point, as a share of its published maximum.",
        "",
        "| problem | optimizer | median HV | % of max | min–max over seeds | HV after 26 evals (median) | ask s/batch (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (problem_name, optimizer_name), runs in results.items():
        max_hv = PROBLEMS[problem_name]().max_hv
        finals = [r.at(budget) for r in runs]
        early = statistics.median(r.at(26) for r in runs)
        ask = statistics.median(s for r in runs for s in r.ask_seconds)
        lines.append(
            f"| {problem_name} | {optimizer_name} | {statistics.median(finals):.3f} | "
            f"{100 * statistics.median(finals) / max_hv:.1f}% | {min(finals):.3f}–{max(finals):.3f} | "
            f"{early:.3f} | {ask:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[Run]] = {}
    for problem_name in args.problems:
        for optimizer_name in args.optimizers:
            for seed in range(args.seeds):
                run = run_problem(problem_name, optimizer_name, seed)
                results.setdefault((problem_name, optimizer_name), []).append(run)
                print(f"{problem_name} {optimizer_name} seed {seed}: HV {run.hypervolumes[-1]:.3f}", flush=True)
    problems = " ".join(f"'{name}'" for name in args.problems)
    command = f"python -m bench.optimizers.synthetic --seeds {args.seeds} --problems {problems}" + (
        f" --out {args.out}" if args.out else ""
    )
    text = report(results, args.seeds, command)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
