"""Sparse updates against LoRA at equal trainable parameters, for every rule that picks the entries.

A sparse update of size r trains r * (in + out) entries of a matrix, exactly LoRA rank r's count,
so each density compares LoRA r with the five sparse rules at r on q and v of every MiniLM layer,
and with DSEE at the same count (LoRA r - 1 plus a sparse residual of in + out entries per matrix):
r = 1, 6 and 24 are 0.04%, 0.24% and 0.97% of MiniLM's parameters. Each run is the proxy fine-tune
on SST-2 at one training seed, scored once on the dev split; nothing is chosen here. The measured
rules' rankings (SPT sensitivity, LT-SFT lottery) are measured once on the proxy's training
subset at the largest r, as a search measures them. Writes a markdown table (mean and sd per
arm, the paired difference to LoRA at the same r with a 95% t-interval, and step time as a ratio
to LoRA's) and the raw rows as CSV.

Step time comes from a timing pass of its own, run whenever the report is written: every arm at
every size trains ``TIMING_STEPS`` steps in one process, round-robin, ``TIMING_ROUNDS`` times, and
the ratio is the median over rounds of arm / LoRA within a round. The full runs' own step times
cannot be compared once a run is resumed: their rows may come from days with another load.

Runs already in the raw rows are not measured again, so a run can be resumed or extended with more
sizes; ``--shard I/N`` splits the remaining runs over processes. A ranking's prefix does not depend
on how many entries were kept, so rows measured with rankings kept at a smaller r stay valid.

    python -m bench.sparse_rules --threads 1 --seeds 0 1 2 --sizes 1 6 24 --out docs/sparse_rules.md
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from autopeft.allocation.sparse_rankings import measure_lottery_ranking, measure_sensitivity_ranking
from autopeft.models import resolve_model
from autopeft.models.loading import build_skeleton
from autopeft.space.layout import ModelLayout, read_layout
from autopeft.space.structure import LoraModules, SparseDeltas, Structure, TunerModules
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.module_types import SETUPS
from bench.reporting import machine_line, paired_interval, round_robin_ratios
from bench.shards import Shard, read_rows, row_writer

RULES = ("random", "magnitude", "principal", "sensitivity", "lottery")
ARMS = ("lora", *RULES, "dsee")
"""LoRA, a SHiRA sparse update by each rule, and DSEE (LoRA r - 1 plus in + out residual entries per
matrix, the same count; from r = 2, as DSEE at r = 1 would have no LoRA)."""
ROLES = ("q", "v")
RAW = Path(__file__).parent / "results" / "sparse_rules.csv"
COLUMNS = ("arm", "size", "seed", "trainable", "accuracy", "loss", "lr_rescues", "step_time_s", "seconds")
TIMING_RAW = Path(__file__).parent / "results" / "sparse_rules.timing.csv"
TIMING_COLUMNS = ("round", "arm", "size", "step_time_s")
TIMING_STEPS, TIMING_ROUNDS = 12, 3
NUMBERS = {"size": int, "seed": int, "trainable": int, "accuracy": float, "loss": float, "lr_rescues": float,
           "step_time_s": float, "seconds": float}


def run_key(row: dict) -> str:
    return f"{row['arm']}/{row['size']}/{row['seed']}"


def measured_rows() -> dict[str, dict]:
    """Every raw row measured so far (all shards), by run key, with numbers parsed."""
    return {key: {column: NUMBERS.get(column, str)(value) for column, value in row.items()}
            for key, row in read_rows(RAW, run_key).items()}


def trainer_with_rankings(threads: int, size: int) -> ProxyTrainer:
    """The proxy trainer on MiniLM / SST-2, holding both measured rankings at ``size``."""
    fidelity = SETUPS["minilm"]["fidelity"]
    task = with_search_split(load_task(str(SETUPS["minilm"]["task"])))
    trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=threads))
    train, _ = trainer.data(fidelity)
    rankings = {
        "sensitivity": measure_sensitivity_ranking(trainer.model, trainer.layout, train, size=size),
        "lottery": measure_lottery_ranking(trainer.model, trainer.layout, train, size=size),
    }
    for rule, ranking in rankings.items():
        print(f"{rule} ranking measured in {ranking.seconds:.0f} s", flush=True)
    trainer.spec = replace(trainer.spec, rankings=rankings)
    return trainer


def structure(arm: str, size: int, layout: ModelLayout) -> Structure:
    places = frozenset((i, role) for i in range(layout.num_layers) for role in ROLES)
    if arm == "lora":
        return Structure(lora=LoraModules(dict.fromkeys(places, size)))
    if arm == "dsee":
        residual = {p: layout.matrix(*p).in_features + layout.matrix(*p).out_features for p in places}
        return Structure(lora=LoraModules(dict.fromkeys(places, size - 1)), sparse=SparseDeltas(residual, "residual"))
    return Structure(tuner=TunerModules(f"sparse_{arm}", size, places))


def run(trainer: ProxyTrainer, arm: str, size: int, seed: int) -> dict:
    request = TrialRequest(seed, seed, structure(arm, size, trainer.layout).to_json(), seed=seed,
                           fidelity=SETUPS["minilm"]["fidelity"], split="dev")
    started = time.perf_counter()
    outcome = trainer.run(request)
    if outcome.error:
        raise RuntimeError(f"{arm} r{size} seed {seed}: {outcome.error}")
    return {"arm": arm, "size": size, "seed": seed, "trainable": outcome.trainable_params,
            "accuracy": outcome.metrics["accuracy"], "loss": outcome.metrics["loss"],
            "lr_rescues": outcome.metrics["lr_rescues"], "step_time_s": round(outcome.step_time_s, 4),
            "seconds": round(time.perf_counter() - started, 1)}


def timing_rows(trainer: ProxyTrainer, arms: list[tuple[str, int]]) -> list[dict]:
    """Mean step time (s) of every (arm, size) over ``TIMING_STEPS`` steps, round-robin, per round."""
    fidelity = replace(SETUPS["minilm"]["fidelity"], steps=TIMING_STEPS, eval_examples=32, lr_rescues=0)
    rows = []
    for round_ in range(TIMING_ROUNDS):
        for arm, size in arms:
            request = TrialRequest(0, 0, structure(arm, size, trainer.layout).to_json(), seed=round_,
                                   fidelity=fidelity, split="dev")
            outcome = trainer.run(request)
            if outcome.error:
                raise RuntimeError(f"timing {arm} r{size}: {outcome.error}")
            rows.append({"round": round_, "arm": arm, "size": size, "step_time_s": round(outcome.step_time_s, 4)})
    return rows


def step_time_ratios(timings: list[dict]) -> dict[tuple[str, int], float]:
    """(arm, size) -> median over rounds of its step time over LoRA's at the same size and round."""
    return round_robin_ratios(timings, "step_time_s", lambda t: (t["arm"], t["size"]), lambda key: ("lora", key[1]))


def table(rows: list[dict], total_params: int, ratios: dict[tuple[str, int], float]) -> str:
    lines = ["| r | arm | trainable (% of MiniLM) | dev accuracy mean | sd | n | minus LoRA (paired, 95% CI) "
             "| step time / LoRA's | rescued runs |",
             "|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for size in sorted({r["size"] for r in rows}):
        lora = {r["seed"]: r for r in rows if r["size"] == size and r["arm"] == "lora"}
        for arm in ARMS:
            runs = {r["seed"]: r for r in rows if r["size"] == size and r["arm"] == arm}
            if not runs:
                continue
            accuracies = [r["accuracy"] for r in runs.values()]
            sd = f"{statistics.stdev(accuracies):.4f}" if len(accuracies) > 1 else "n/a"
            diffs = [runs[s]["accuracy"] - lora[s]["accuracy"] for s in runs if s in lora]
            trainable = next(iter(runs.values()))["trainable"]
            lines.append(
                f"| {size} | {arm} | {trainable:,} ({100 * trainable / total_params:.2f}%) "
                f"| {statistics.mean(accuracies):.4f} | {sd} | {len(accuracies)} "
                f"| {'—' if arm == 'lora' else paired_interval(diffs)} | {ratios[arm, size]:.2f} "
                f"| {sum(r['lr_rescues'] > 0 for r in runs.values())} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 6, 24])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th remaining run from the I-th")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shard = Shard.parse(args.shard)
    wanted = [{"arm": arm, "size": size, "seed": seed}
              for seed in args.seeds for size in args.sizes for arm in ARMS if not (arm == "dsee" and size < 2)]
    remaining = [run_ for position, run_ in enumerate(wanted)
                 if run_key(run_) not in measured_rows() and shard.owns(position)]
    trainer = functools.cache(lambda: trainer_with_rankings(args.threads, max(args.sizes)))
    with row_writer(shard.path(RAW), COLUMNS) as write:
        for run_ in remaining:
            row = run(trainer(), run_["arm"], run_["size"], run_["seed"])
            write(row)
            print(row, flush=True)
    rows = measured_rows()
    missing = [run_key(run_) for run_ in wanted if run_key(run_) not in rows]
    if missing:
        print(f"{len(wanted) - len(missing)} of {len(wanted)} runs measured; the last shard writes the report")
        return
    arms = list(dict.fromkeys((run_["arm"], run_["size"]) for run_ in wanted))
    timings = timing_rows(trainer(), arms)
    TIMING_RAW.unlink(missing_ok=True)
    with row_writer(TIMING_RAW, TIMING_COLUMNS) as write:
        for timing in timings:
            write(timing)
    seconds = {rule: trainer().spec.rankings[rule].seconds for rule in ("sensitivity", "lottery")}
    measured = f"sensitivity in {seconds['sensitivity']:.0f} s, the lottery's warm-up in {seconds['lottery']:.0f} s"
    write_report(args, [rows[run_key(run_)] for run_ in wanted], measured, step_time_ratios(timings))


def write_report(args: argparse.Namespace, rows: list[dict], measured: str,
                 ratios: dict[tuple[str, int], float]) -> None:
    command = (f"python -m bench.sparse_rules --threads {args.threads} --seeds {' '.join(map(str, args.seeds))} "
               f"--sizes {' '.join(map(str, args.sizes))} --out {args.out}")
    task = load_task(str(SETUPS["minilm"]["task"]))
    total_params = read_layout(build_skeleton(resolve_model("minilm"), task)).total_params
    args.out.write_text(
        "# Sparse updates against LoRA at equal trainable parameters\n\n"
        f"Command: `{command}` (resumed: runs already in the raw rows were not measured again)  \n"
        f"{machine_line(args.threads)}  \n"
        f"Structures: LoRA rank r, or a sparse update of r * (in + out) entries per matrix (the same count), or "
        f"DSEE (LoRA r - 1 plus in + out entries of the residual W - W_8 per matrix, the same count; from r = 2), "
        f"on q and v of every MiniLM layer; the head trains in all. Proxy: {SETUPS['minilm']['fidelity']}, the same rate "
        "for every arm with the proxy's stall rescue; every run scored once on SST-2's dev split (872 examples). "
        f"Rankings measured once at the largest r of this run ({measured}). Step time comes from a "
        f"timing pass in this run, after the accuracy runs: every arm and r trains {TIMING_STEPS} steps, "
        f"round-robin, {TIMING_ROUNDS} rounds; the column is the median over rounds of the ratio to LoRA's at the "
        "same r and round. Raw rows: `bench/results/sparse_rules.csv`, "
        "`bench/results/sparse_rules.timing.csv`.\n\n"
        + table(rows, total_params, ratios) + "\n"
    )


if __name__ == "__main__":
    main()
