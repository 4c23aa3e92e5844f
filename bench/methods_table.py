"""Every peft method of the ``methods`` space at about 0.3% of MiniLM's parameters, each at its own
learning rate, on SST-2: in the style of peft's method comparison, honestly evaluated.

Each method acts on q and v of every layer (LN tuning on every layer's norms) at the size of its
knob whose exact trainable count is nearest 0.3% of MiniLM on a log scale; methods that cannot
reach it there (LoKr, VeRA, FourierFT, IA3, LN tuning, bias) run at the size nearest to it and
the table shows their count. One shared rate would compare rates, not methods (at 1e-3, 11 of 23
methods barely moved in ``docs/methods.md``), so each method's rate is chosen by its accuracy on
the search split (carved from train) at seed 0; the table reports the dev split, which the choice
never read, at seeds 0, 1 and 2 with the chosen rate. The rates tried start at ``FIRST_RATES``;
while the best of them is the highest (or lowest) tried and ``LADDER`` goes further that way, the
next rung is tried too, so no method is reported at the edge of a grid that was too narrow for it.

After the accuracy runs, one process times every method round-robin (``TIMING_ROUNDS`` rounds of
``TIMING_STEPS`` steps): step time as the median ratio to LoRA's in the same round, and the rise
of the process's RSS over its level before the method (garbage collected and trimmed first, as in
``bench/lisa.py``) as a ratio to LoRA's.

Runs already in the raw rows are not measured again; ``--shard I/N`` splits the methods.

    python -m bench.methods_table --threads 1 --out docs/methods_table.md [--shard I/N]
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from autopeft.allocation.measurement import peak_memory
from autopeft.models import resolve_model
from autopeft.space.cost import count_trainable
from autopeft.errors import SpaceError
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import LoraModules, Structure, TunerModules
from autopeft.space.tuners import NORMS, rate_factor
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.lisa import settle
from bench.module_types import SETUPS
from bench.reporting import machine_line, round_robin_ratios
from bench.shards import Shard, read_rows, row_writer

TARGET_FRACTION = 0.003
LORA_VARIANTS = ("lora", "dora", "rslora", "kasa")
TUNERS = ("adalora", "ia3", "loha", "lokr", "vera", "randlora", "oft", "boft", "hra", "fourierft", "waveft", "c3a",
          "miss", "shira", "delora", "hira", "gralora", "ln_tuning", "bias")
METHODS = (*LORA_VARIANTS, *TUNERS)
SIZELESS = frozenset({"ia3", "ln_tuning", "bias"})
SIZES = tuple(2**i for i in range(14))
"""Candidate sizes (rank, block size or coefficient count, by method); the nearest count wins."""
LADDER = (8e-5, 5e-4, 3e-3, 2e-2, 1.2e-1)
"""Learning rates about 6x apart; the top rung is where FourierFT's and C3A's papers train."""
FIRST_RATES = LADDER[1:4]
SEEDS = (0, 1, 2)
FIDELITY = Fidelity(train_examples=1280, steps=80, batch_size=16, max_length=64, learning_rate=1e-3,
                    eval_examples=500, lr_rescues=0)
"""The proxy for every run; no stall rescue, since the rate is chosen explicitly."""
TIMING_STEPS, TIMING_ROUNDS = 12, 2
RAW = Path(__file__).parent / "results" / "methods_table.csv"
TIMING_RAW = Path(__file__).parent / "results" / "methods_table.timing.csv"
COLUMNS = ("method", "split", "learning_rate", "seed", "size", "trainable", "accuracy", "loss", "seconds")
TIMING_COLUMNS = ("round", "method", "step_time_s", "rss_rise_bytes")


def structure(method: str, size: int, layout: ModelLayout) -> Structure:
    qv = frozenset((i, role) for i in range(layout.num_layers) for role in ("q", "v"))
    if method in LORA_VARIANTS:
        return Structure(lora=LoraModules(dict.fromkeys(qv, size), variant=method))
    if method == "ia3":
        return Structure(ia3=qv)
    if method == "ln_tuning":
        return Structure(tuner=TunerModules(method, 0, frozenset((i, NORMS) for i in range(layout.num_layers))))
    return Structure(tuner=TunerModules(method, size, qv))


def nearest_size(method: str, layout: ModelLayout) -> int:
    """The candidate size whose trainable count is nearest ``TARGET_FRACTION`` of the model (log scale)."""
    target = TARGET_FRACTION * layout.total_params
    counts = {}
    for size in SIZES:
        try:
            counts[size] = count_trainable(structure(method, size, layout), layout)
        except SpaceError:  # a size the method cannot take on this model
            continue
    return min(counts, key=lambda size: (abs(math.log(counts[size] / target)), size))


def run_key(row: dict) -> str:
    return f"{row['method']}/{row['split']}/{float(row['learning_rate']):g}/{row['seed']}"


def measured() -> dict[str, dict]:
    numbers = {"learning_rate": float, "seed": int, "size": int, "trainable": int, "accuracy": float,
               "loss": float, "seconds": float}
    return {key: {c: numbers.get(c, str)(v) for c, v in row.items()} for key, row in read_rows(RAW, run_key).items()}


def search_run(method: str, rate: float) -> dict:
    return {"method": method, "split": "search", "learning_rate": rate, "seed": 0}


def rates_tried(rows: dict[str, dict], method: str) -> tuple[list[float], float | None]:
    """The rates ``method`` is tried at so far, and the chosen one once the ladder rule stops: the
    best search-split accuracy at seed 0 (ties: the lower rate), not at an edge the ladder passes."""
    low, high = LADDER.index(FIRST_RATES[0]), LADDER.index(FIRST_RATES[-1])
    while True:
        tried = list(LADDER[low:high + 1])
        runs = [rows.get(run_key(search_run(method, rate))) for rate in tried]
        if any(run is None for run in runs):
            return tried, None
        best = max(runs, key=lambda run: (_or_lowest(run["accuracy"]), -run["learning_rate"]))["learning_rate"]
        if best == tried[-1] and high + 1 < len(LADDER):
            high += 1
        elif best == tried[0] and low > 0:
            low -= 1
        else:
            return tried, best


def chosen_rate(rows: dict[str, dict], method: str) -> float | None:
    return rates_tried(rows, method)[1]


def _or_lowest(accuracy: float) -> float:
    """A failed run's accuracy (NaN) ranks below every measured one."""
    return -1.0 if math.isnan(accuracy) else accuracy


def wanted_runs(rows: dict[str, dict]) -> list[dict]:
    """The search-split runs of every rate tried so far, and the dev runs of each method whose rate is chosen."""
    runs = []
    for method in METHODS:
        tried, rate = rates_tried(rows, method)
        runs += [search_run(method, r) for r in tried]
        if rate is not None:
            runs += [{"method": method, "split": "dev", "learning_rate": rate, "seed": s} for s in SEEDS]
    return runs


class Bench:
    """MiniLM on SST-2 with a search split, loaded once per process."""

    def __init__(self, threads: int) -> None:
        task = with_search_split(load_task(str(SETUPS["minilm"]["task"])))
        self.trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=threads))

    @functools.cache
    def size(self, method: str) -> int:
        return nearest_size(method, self.trainer.layout)

    def request(self, method: str, seed: int, fidelity: Fidelity, split: str) -> TrialRequest:
        built = structure(method, self.size(method), self.trainer.layout)
        return TrialRequest(seed, seed, built.to_json(), seed=seed, fidelity=fidelity, split=split)

    def run(self, wanted: dict) -> dict:
        # The proxy trains a method's parameters at its factor of the run's rate; the rate tried is
        # the method's own, so the run's is that over the factor (the head trains at the run's).
        base = wanted["learning_rate"] / rate_factor(wanted["method"])
        fidelity = replace(FIDELITY, learning_rate=base)
        outcome = self.trainer.run(self.request(wanted["method"], wanted["seed"], fidelity, wanted["split"]))
        if outcome.error:  # a diverged or crashed run is a result: chance, with its reason printed
            print(f"{run_key(wanted)} failed: {outcome.error}", flush=True)
        metrics = outcome.metrics or {}
        return {**wanted, "size": self.size(wanted["method"]), "trainable": outcome.trainable_params or 0,
                "accuracy": metrics.get("accuracy", float("nan")), "loss": metrics.get("loss", float("nan")),
                "seconds": round(outcome.wall_time_s or 0.0, 1)}

    def time_methods(self) -> list[dict]:
        """Step time and RSS rise of every method, round-robin (see the module docstring)."""
        fidelity = replace(FIDELITY, steps=TIMING_STEPS, eval_examples=32)
        rows = []
        for round_ in range(TIMING_ROUNDS):
            for method in METHODS:
                start = settle()
                with peak_memory(self.trainer.device) as peak:
                    outcome = self.trainer.run(self.request(method, round_, fidelity, "dev"))
                rows.append({"round": round_, "method": method, "step_time_s": outcome.step_time_s,
                             "rss_rise_bytes": peak.bytes - start})
        return rows


def table(rows: dict[str, dict], timings: list[dict], total_params: int) -> str:
    ratios = {column: round_robin_ratios(timings, column, lambda t: t["method"], lambda _: "lora")
              for column in ("step_time_s", "rss_rise_bytes")}

    def timing_ratio(method: str, column: str) -> str:
        ratio = ratios[column].get(method)
        return "n/a" if ratio is None else f"{ratio:.2f}"

    lines = ["| method | size | trainable (% of MiniLM) | rates tried | rate (chosen on search) "
             "| search acc. at that rate | dev accuracy mean | sd | n | step time / LoRA's | RSS rise / LoRA's |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    ranked = []
    for method in METHODS:
        tried, rate = rates_tried(rows, method)
        dev = [rows[run_key({"method": method, "split": "dev", "learning_rate": rate, "seed": s})] for s in SEEDS]
        search = rows[run_key(search_run(method, rate))]
        accuracies = [run["accuracy"] for run in dev]
        ranked.append((statistics.mean(accuracies), method, tried, rate, dev, search, accuracies))
    for mean, method, tried, rate, dev, search, accuracies in sorted(ranked, reverse=True):
        trainable = dev[0]["trainable"]
        lines.append(
            f"| {method} | {'—' if method in SIZELESS else dev[0]['size']} | {trainable:,} ({100 * trainable / total_params:.2f}%) "
            f"| {tried[0]:g} .. {tried[-1]:g} | {rate:g} "
            f"| {search['accuracy']:.4f} | {mean:.4f} | {statistics.stdev(accuracies):.4f} | {len(accuracies)} "
            f"| {timing_ratio(method, 'step_time_s')} | {timing_ratio(method, 'rss_rise_bytes')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th remaining run from the I-th")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shard = Shard.parse(args.shard)
    bench = functools.cache(lambda: Bench(args.threads))
    with row_writer(shard.path(RAW), COLUMNS) as write:
        while True:  # dev runs become wanted once a method's rates are all measured
            rows = measured()
            remaining = [run for run in wanted_runs(rows)  # a method's runs all go to one shard
                         if run_key(run) not in rows and shard.owns(METHODS.index(run["method"]))]
            if not remaining:
                break
            row = bench().run(remaining[0])
            write(row)
            print(row, flush=True)
    rows = measured()
    wanted = wanted_runs(rows)
    if any(chosen_rate(rows, m) is None for m in METHODS) or any(run_key(r) not in rows for r in wanted):
        print("runs remain in another shard; the last shard to finish writes the report")
        return
    timings = list(read_rows(TIMING_RAW, lambda t: f"{t['round']}/{t['method']}").values())
    if {t["method"] for t in timings} != set(METHODS):  # the rates do not change a step's time: timed once
        timings = bench().time_methods()
        TIMING_RAW.unlink(missing_ok=True)
        with row_writer(TIMING_RAW, TIMING_COLUMNS) as write:
            for timing in timings:
                write(timing)
    write_report(args, rows, timings, bench().trainer.layout.total_params)


def write_report(args: argparse.Namespace, rows: dict[str, dict], timings: list[dict], total_params: int) -> None:
    args.out.write_text(
        "# Every peft method at about 0.3% of MiniLM, each at its own rate (SST-2)\n\n"
        f"Command: `python -m bench.methods_table --threads {args.threads} --out {args.out}` (with `--shard I/N` "
        "processes side by side; runs already in the raw rows were not measured again)  \n"
        f"{machine_line(args.threads)}  \n"
        f"Structures: each method on q and v of every layer (LN tuning: every layer's norms) at the size nearest "
        f"{TARGET_FRACTION:.1%} of MiniLM's {total_params:,} parameters; the head trains in all. Proxy: {FIDELITY}, "
        f"at the rate with the best search-split accuracy at seed 0 among {', '.join(f'{r:g}' for r in FIRST_RATES)}, "
        f"extended one rung at a time along {', '.join(f'{r:g}' for r in LADDER)} while the best is at the edge of "
        "those tried (the search split is carved from train; the choice never reads dev). Dev accuracy: SST-2's dev split "
        f"({FIDELITY.eval_examples} examples), seeds {', '.join(map(str, SEEDS))} at the chosen rate; rows ranked by "
        f"it. Timing: one process, every method round-robin, {TIMING_ROUNDS} rounds of {TIMING_STEPS} steps; the "
        "median over rounds of the ratio to LoRA's in the same round; RSS rise is the peak RSS during the method "
        "minus the RSS just before it, after garbage collection and `malloc_trim(0)`. Raw rows: "
        "`bench/results/methods_table.csv`, `bench/results/methods_table.timing.csv`.\n\n"
        + table(rows, timings, total_params) + "\n"
    )


if __name__ == "__main__":
    main()
