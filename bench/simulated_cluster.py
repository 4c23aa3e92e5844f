"""Searches at 1-128 simulated workers: the real scheduler on a replay of recorded trials.

Every job here runs autopeft's own :class:`~autopeft.scheduler.scheduler.Scheduler`, proposer,
optimizer (random or MOBO), promotion and SQLite store (a file in a temporary folder) on a
:class:`~autopeft.worker.simulated.SimulatedPool`: no Ray, no training. A trial of the grouped
LoRA space (:mod:`bench.optimizers.grouped_spaces`) replays its row of the recorded MiniLM/SST-2
lookup table (196 real proxy fine-tunes, 150 steps each): its accuracy, trainable parameters and
wall time. Simulated time advances by the recorded wall times and by the proposer's real,
measured time for each ``ask`` and ``tell`` it had to wait for; the driver's own bookkeeping
(store writes, hypervolume) is not charged.

Two questions:

- **Speed-up**: training throughput at N workers (recorded seconds trained per simulated second)
  over that at 1 worker, same optimizer and seed. Random search runs the whole table at every N,
  so this is simulated time at 1 worker / at N. MOBO (seed 0; every proposal really computes)
  runs N + ``--mobo-extra`` trials at N workers: a first wave from its Sobol design, then about
  the same number of model proposals at every N. ``bound`` is the most any scheduler could reach on
  those trials, total time / max(total time / N, longest trial).
- **Promotion**: hypervolume per simulated hour of a job with and without ``--rungs 2 --eta 3``
  under one trial-unit budget, over ``--seeds`` seeds. A promoted trial takes 3x its recorded time
  and scores its recorded rung-0 accuracy (the table has no longer fine-tunes): the replay prices
  promotion, it cannot show what longer fine-tunes would have found.

    nice -n 5 python -m bench.simulated_cluster --seeds 10 --speedup-seeds 3 --mobo-extra 12 \\
        --out docs/simulated_cluster.md --csv bench/results/simulated_cluster.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from autopeft.objectives import Objective
from autopeft.optimizers import make_optimizer
from autopeft.optimizers.hypervolume import hypervolume, reference_point
from autopeft.reports import reported_front
from autopeft.scheduler.budget import Budget
from autopeft.scheduler.promotion import Rungs
from autopeft.scheduler.scheduler import Scheduler, SchedulerSettings
from autopeft.store import Store
from autopeft.trials import TrialState
from autopeft.worker.simulated import RecordedTrial, SimulatedClock, SimulatedPool, recorded_key
from bench.optimizers.grouped_spaces import GroupedSpace
from bench.optimizers.lookup import read_table
from bench.optimizers.proxy_setup import TABLE_FIDELITY, grouped_space
from bench.optimizers.record_table import table_path

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
FIDELITY = TABLE_FIDELITY["lora"]
TABLE = table_path("lora", "sst2")
ETA = 3.0
REPOSITORY = Path(__file__).resolve().parents[1]
DESIGN_ASK_S = 0.5
"""MOBO's asks faster than this (seconds) come from its Sobol design; slower ones fitted its GPs."""


def recorded_table(space: GroupedSpace, path: Path = TABLE) -> dict[str, RecordedTrial]:
    """The lookup table at ``path`` keyed by each point's structure (:func:`recorded_key`)."""
    with path.open(newline="") as handle:
        rows = {row["config"]: row for row in csv.DictReader(handle)}
    table = {}
    for point in space.all_points():
        row = rows[space.config_id(point)]
        failed = row["state"] != "completed" or row["accuracy"] == ""
        table[recorded_key(space.decode(point).to_json())] = RecordedTrial(
            metrics={} if failed else {"accuracy": float(row["accuracy"])},
            trainable_params=int(row["trainable_params"]),
            wall_time_s=float(row["wall_time_s"]),
            peak_memory_bytes=int(row["peak_memory_bytes"]) if row["peak_memory_bytes"] else None,
            step_time_s=float(row["step_time_s"]) if row["step_time_s"] else None,
            error=(row["error"] or "failed") if failed else None,
        )
    return table


@dataclass
class SimulatedRun:
    """One simulated job: its trials and what it cost, in simulated and in real seconds."""

    optimizer: str
    workers: int
    seed: int
    rungs: int
    budget_units: int
    trials: int
    promoted: int
    simulated_s: float
    trial_s: float
    longest_trial_s: float
    real_s: float
    asks: int
    ask_s: float
    model_asks: int
    model_ask_median_s: float
    tell_s: float
    hv_reported: float = 0.0
    hv_rung0: float = 0.0

    @property
    def bound(self) -> float:
        """Simulated seconds no scheduler can beat on these trials at ``workers`` workers."""
        return max(self.trial_s / self.workers, self.longest_trial_s)

    @property
    def throughput(self) -> float:
        """Recorded training seconds per simulated second (at most ``workers``)."""
        return self.trial_s / self.simulated_s


def simulate(
    store: Store, space: GroupedSpace, table: Mapping[str, RecordedTrial], optimizer: str, *,
    workers: int, budget: int, seed: int, rungs: int = 1,
) -> tuple[SimulatedRun, list]:
    """Run one job on ``workers`` simulated workers; returns its summary and its finished trials."""
    job_id = store.create_job({"objectives": [o.to_json() for o in OBJECTIVES], "simulated": True}, budget)
    clock = SimulatedClock()
    scheduler = Scheduler(
        store, job_id, space=space, optimizer=make_optimizer(optimizer, space, OBJECTIVES, seed),
        objectives=OBJECTIVES, pool=SimulatedPool(table, workers, clock, FIDELITY), fidelity=FIDELITY,
        seed=seed, budget=Budget(budget, clock=clock.now), settings=SchedulerSettings(rungs=Rungs(rungs, ETA)),
        clock=clock,
    )
    started = time.perf_counter()
    scheduler.run()
    real_s = time.perf_counter() - started
    finished = [t for t in store.trials(job_id) if t.state in (TrialState.COMPLETED, TrialState.FAILED)]
    asks = [s for call, s in scheduler.proposer.timings if call == "ask"]
    model = [s for s in asks if s >= DESIGN_ASK_S] if optimizer == "mobo" else []
    run = SimulatedRun(
        optimizer, workers, seed, rungs, budget, len(finished), sum(t.rung > 0 for t in finished), clock.now(),
        sum(t.wall_time_s for t in finished), max(t.wall_time_s for t in finished), real_s, len(asks), sum(asks),
        len(model), statistics.median(model) if model else 0.0,
        sum(s for call, s in scheduler.proposer.timings if call == "tell"),
    )
    return run, finished


def values(trials) -> list[dict[str, float]]:
    return [{o.name: t.value(o.name) for o in OBJECTIVES} for t in trials if t.state == TrialState.COMPLETED]


def speedups(store, space, table, args) -> list[SimulatedRun]:
    """Random (``--speedup-seeds`` seeds, ``--trials``) and MOBO (seed 0, N + ``--mobo-extra``) at each N."""
    runs = []
    plans = [("random", lambda n: args.trials, range(args.speedup_seeds)), ("mobo", lambda n: n + args.mobo_extra, (0,))]
    for optimizer, budget, seeds in plans:
        for seed in seeds:
            for workers in args.workers:
                run, _ = simulate(store, space, table, optimizer, workers=workers, budget=budget(workers), seed=seed)
                runs.append(run)
                print(f"speed-up {optimizer} seed {seed} N={workers}: {run.simulated_s:.0f} sim s, "
                      f"{run.real_s:.1f} real s, {run.asks} asks ({run.ask_s:.1f} s)", flush=True)
    return runs


def promotion(store, space, table, args, reference: dict[str, float], best: float) -> list[SimulatedRun]:
    """Random search with and without promotion, ``--promotion-budget`` units, each seed."""
    runs = []
    for seed in range(args.seeds):
        for rungs in (1, 2):
            run, finished = simulate(store, space, table, "random", workers=args.promotion_workers,
                                     budget=args.promotion_budget, seed=seed, rungs=rungs)
            run.hv_reported = hypervolume(values(reported_front(finished, OBJECTIVES)), OBJECTIVES, reference) / best
            run.hv_rung0 = hypervolume(values(reported_front(finished, OBJECTIVES, 0)), OBJECTIVES, reference) / best
            runs.append(run)
            print(f"promotion seed {seed} rungs {rungs}: HV {100 * run.hv_reported:.1f}% "
                  f"in {run.simulated_s / 3600:.3f} sim h", flush=True)
    return runs


def spread(numbers: Sequence[float], digits: int = 2) -> str:
    """Median [min-max] of ``numbers``; the median alone for one number."""
    if len(numbers) == 1:
        return f"{numbers[0]:.{digits}f}"
    return f"{statistics.median(numbers):.{digits}f} [{min(numbers):.{digits}f}-{max(numbers):.{digits}f}]"


def speedup_rows(runs: list[SimulatedRun]) -> list[str]:
    rows = []
    for optimizer in dict.fromkeys(r.optimizer for r in runs):
        mine = [r for r in runs if r.optimizer == optimizer]
        alone = {r.seed: r.throughput for r in mine if r.workers == 1}
        for workers in dict.fromkeys(r.workers for r in mine):
            at = [r for r in mine if r.workers == workers]
            ratios = [r.throughput / alone[r.seed] for r in at]
            model = [r.model_ask_median_s for r in at if r.model_asks]
            rows.append(
                f"| {optimizer} | {workers} | {at[0].trials} | {len(at)} | {spread([r.simulated_s / 3600 for r in at], 3)} "
                f"| {spread(ratios, 1)} | {statistics.median(ratios) / workers:.2f} "
                f"| {statistics.median(r.trial_s / r.bound for r in at):.1f} "
                f"| {statistics.median(r.asks for r in at):.0f} | {statistics.median(r.model_asks for r in at):.0f} "
                f"| {spread(model, 1) if model else '-'} | {spread([r.ask_s for r in at], 1)} "
                f"| {spread([r.real_s for r in at], 1)} |"
            )
    return rows


def target_line(runs: list[SimulatedRun]) -> str:
    """Whether random search reaches a speed-up of 0.9 N at every N <= 32."""
    rand = [r for r in runs if r.optimizer == "random"]
    alone = {r.seed: r.throughput for r in rand if r.workers == 1}
    checks = []
    for workers in sorted({r.workers for r in rand if 1 < r.workers <= 32}):
        worst = min(r.throughput / alone[r.seed] for r in rand if r.workers == workers)
        checks.append(f"N = {workers}: worst seed {worst:.2f} = {worst / workers:.2f} N "
                      f"({'met' if worst >= 0.9 * workers else 'missed'})")
    return "Target, random search, speed-up >= 0.9 N for N <= 32: " + "; ".join(checks) + "."


def mobo_limit_line(runs: list[SimulatedRun]) -> str:
    """How many workers MOBO's measured proposal time can keep busy."""
    mobo = [r for r in runs if r.optimizer == "mobo" and r.model_asks]
    if not mobo:
        return ""
    ask = statistics.median(r.model_ask_median_s for r in mobo)
    trial = statistics.mean(r.trial_s / r.trials for r in mobo)
    return (f"MOBO's model asks took a median {ask:.1f} s of real compute on this machine (its design asks take "
            f"milliseconds). One proposer thread serves one ask at a time, so at one point per ask and a mean "
            f"trial of {trial:.0f} s, MOBO keeps at most about {trial / ask:.0f} workers busy once its design is "
            "spent. Past that, workers that free up while an ask runs wait for it and are then served together by "
            "one q-point ask (fewer asks than model-phase trials above): the limit shows as speed-up below `bound`, "
            "not as idle workers.")


def promotion_rows(runs: list[SimulatedRun]) -> list[str]:
    rows = []
    for rungs in (1, 2):
        at = [r for r in runs if r.rungs == rungs]
        per_hour = [100 * r.hv_reported / (r.simulated_s / 3600) for r in at]
        rows.append(
            f"| {'yes' if rungs > 1 else 'no'} | {len(at)} | {spread([r.trials for r in at], 0)} "
            f"| {spread([r.promoted for r in at], 0)} | {spread([r.simulated_s / 3600 for r in at], 3)} "
            f"| {spread([100 * r.hv_reported for r in at], 1)} | {spread([100 * r.hv_rung0 for r in at], 1)} "
            f"| {spread(per_hour, 0)} |"
        )
    return rows


def promotion_lines(runs: list[SimulatedRun]) -> list[str]:
    """The paired per-seed comparison, and what a longer fine-tune would have to add."""
    by_seed = {(r.seed, r.rungs): r for r in runs}
    seeds = sorted({r.seed for r in runs})
    rate = {key: r.hv_reported / r.simulated_s for key, r in by_seed.items()}
    ratios = [rate[(s, 2)] / rate[(s, 1)] for s in seeds]
    wins = sum(ratio > 1 for ratio in ratios)
    return [
        f"Per seed, HV per simulated hour with promotion / without: {spread(ratios, 3)}; promotion ahead in "
        f"{wins} of {len(seeds)} seeds.",
    ]


def report(speed: list[SimulatedRun], promo: list[SimulatedRun], machine: dict, command: str, args) -> str:
    lines = [
        "# Simulated cluster: the real scheduler on recorded trials",
        "",
        "Generated by `bench/simulated_cluster.py`; do not edit by hand.",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine['date']}, {platform.machine()}, {machine['cores']} cores, no GPU; load average "
        f"(1/5/15 min) {machine['load_start']} at the start, {machine['load_end']} at the end; "
        f"{machine['real_s']:.0f} s in all.  ",
        f"Table: `{TABLE.relative_to(REPOSITORY)}`, {machine['table']} real MiniLM/SST-2 proxy fine-tunes of the "
        f"grouped LoRA space ({FIDELITY.steps} steps, {FIDELITY.train_examples} examples), {machine['table_s']:.0f} s "
        "of recorded wall time in all.",
        "",
        "Each job runs autopeft's scheduler, proposer, optimizer, promotion and SQLite store on a "
        "`SimulatedPool` (`autopeft/worker/simulated.py`): a trial replays its recorded accuracy, parameters and "
        "wall time on a simulated clock, and every proposal the scheduler waits for is charged its real, measured "
        "compute time (the proposer prefetches while workers train, as in production). The driver's bookkeeping "
        "is not charged; the `real s` column bounds it.",
        "",
        "## Speed-up over 1 worker",
        "",
        f"Random search runs {args.trials} trials (196 is the whole table, the same trials at every N) with "
        f"{args.speedup_seeds} seeds. MOBO (qLogNEHVI) runs N + {args.mobo_extra} trials at N workers with seed 0 "
        f"only, because every one of its asks really computes: a first wave from its Sobol design, then "
        f"{args.mobo_extra} more, which come from its GP model once the design ({args.mobo_design} points) is "
        "issued and 4 trials have finished. Speed-up: training throughput (recorded trial seconds per simulated second) at N workers / at "
        "1 worker, same seed; with the same trials at every N that is simulated time at 1 worker / at N. "
        "`bound`: total trial time / max(total / N, longest trial), the most any scheduler reaches on the same "
        f"trials. Model asks: MOBO's asks that took over {DESIGN_ASK_S} s (its design asks take milliseconds). "
        "Cells: median [min-max] over seeds.",
        "",
        "| optimizer | workers | trials | seeds | simulated h | speed-up | speed-up / N | bound | asks | model asks "
        "| s per model ask | ask s total | real s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *speedup_rows(speed),
        "",
        target_line(speed),
        "",
        mobo_limit_line(speed),
        "",
        "## Hypervolume per simulated hour, with and without promotion",
        "",
        f"Random search, {args.promotion_workers} workers, {args.promotion_budget} trial units per job, "
        f"{args.seeds} seeds; promotion is `--rungs 2 --eta {ETA:g}` (rung 1: 3x the steps and examples, 3 units). "
        "HV: of the reported front (the top rung reached, as `autopeft pareto` reports it) on (accuracy, log10 "
        "trainable parameters), as % of the whole table's front, against the table's reference point. "
        "Cells: median [min-max] over seeds.",
        "",
        "| promotion | jobs | trials | promoted | simulated h | HV % (reported front) | HV % (rung 0) "
        "| HV % per simulated hour |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *promotion_rows(promo),
        "",
        *promotion_lines(promo),
        "",
        "What this does and does not answer: the table holds one fidelity, so a promoted trial scores its "
        "recorded rung-0 accuracy and costs 3x its recorded time. The replay therefore measures what promotion "
        "costs (fewer rung-0 trials, a reported front of the promoted few) and not what a 3x longer fine-tune "
        "would change in the scores; docs/fidelity.md measures how far a 4x longer fine-tune reorders the "
        "proxy's structures (it does). A rung-1 table would make the second half answerable.",
        "",
    ]
    return "\n".join(lines)


def write_csv(path: Path, runs: list[tuple[str, SimulatedRun]]) -> None:
    fields = ["section", *asdict(runs[0][1])]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for section, run in runs:
            writer.writerow({"section": section, **{k: round(v, 6) if isinstance(v, float) else v
                                                   for k, v in asdict(run).items()}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the promotion comparison")
    parser.add_argument("--speedup-seeds", type=int, default=3, help="seeds of random search's speed-up runs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--trials", type=int, default=196, help="random search's budget in the speed-up runs")
    parser.add_argument("--mobo-extra", type=int, default=12, help="MOBO runs N + this many trials at N workers")
    parser.add_argument("--promotion-workers", type=int, default=8)
    parser.add_argument("--promotion-budget", type=int, default=48, help="trial units per promotion job")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    args = parser.parse_args()
    if 1 not in args.workers:
        parser.error("--workers must include 1, the speed-up's reference")
    machine = {"date": datetime.now().strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
               "load_start": " / ".join(f"{x:.2f}" for x in os.getloadavg())}
    started = time.perf_counter()
    space = grouped_space("lora")
    table = recorded_table(space)
    completed = [v for v in read_table(TABLE).values() if v is not None]
    reference = reference_point(completed, OBJECTIVES)
    best = hypervolume(completed, OBJECTIVES, reference)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(str(Path(folder) / "simulated.db"))
        speed = speedups(store, space, table, args)
        promo = promotion(store, space, table, args, reference, best)
        store.close()
    machine.update(load_end=" / ".join(f"{x:.2f}" for x in os.getloadavg()), real_s=time.perf_counter() - started,
                   table=len(table), table_s=sum(t.wall_time_s for t in table.values()))
    args.mobo_design = make_optimizer("mobo", space, OBJECTIVES).initial_points
    command = (f"nice -n 5 python -m bench.simulated_cluster --seeds {args.seeds} --speedup-seeds "
               f"{args.speedup_seeds} --workers {' '.join(map(str, args.workers))} --trials {args.trials} "
               f"--mobo-extra {args.mobo_extra} "
               f"--promotion-workers {args.promotion_workers} --promotion-budget {args.promotion_budget} "
               f"--out {args.out} --csv {args.csv}")
    text = report(speed, promo, machine, command, args)
    args.out.write_text(text)
    write_csv(args.csv, [("speedup", r) for r in speed] + [("promotion", r) for r in promo])
    print(text)


if __name__ == "__main__":
    main()
