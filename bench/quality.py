"""An honest quality table: a real search's pick against tuned baselines, 3 seeds, dev scored once.

MiniLM (all-MiniLM-L6-v2) on GLUE SST-2 and on GLUE MRPC, each searched on itself. The protocol
below is fixed before anything runs, and the report (``docs/quality.md``) restates it:

1. **Search.** ``autopeft search --model minilm --task <glue>/<task> --space lora --trials 12
   --workers 1 --seed 0`` into its own SQLite store (``bench/results/quality.search.db``), every
   proxy option at its default: 150-step proxies at learning rate 1e-3 with LR rescues, the
   practitioner defaults first, 2 confirmation seeds per front row. Trials train on train minus
   the job's search split and are scored on that split (seeded, class-stratified, 20% of train and
   at most 1,000 examples: :func:`autopeft.tasks.holdout.with_search_split`, as ``prepare`` calls
   it). Dev is never read by the search.
2. **Pick rule.** Of the job's Pareto front (``autopeft pareto JOB --json``), the row with the
   highest search score (the row's ``values``: the mean over its runs, i.e. over its confirmation
   seeds where it has them) among the rows whose trainable parameters, head included, are at most
   LoRA r8 on q,v's count. Ties go to fewer parameters.
3. **Baselines.** LoRA r8 (alpha 16) on q,v; LoRA r8 on every linear layer of the blocks (q, k,
   v, o, up, down); IA3 on k, v and the FFN output (peft's defaults for BERT, as the project's
   IA3 module type); full fine-tuning.
4. **Learning rate.** Every method, the searched one included, trains once (seed 0) at each rate
   of its family's grid (PEFT 3e-4, 1e-3, 3e-3; full fine-tuning 2e-5, 5e-5, 1e-4) at the final
   fidelity. The rate whose run scores best on the job's search split (at its best epoch) is
   kept; nothing else is tuned.
5. **Finals.** Each method at its kept rate with seeds 0, 1, 2 at one fidelity per task (seed 0
   is the grid's run at that rate; seeds 1 and 2 are new runs). SST-2: 2,000 training examples,
   2 epochs, 64 tokens; MRPC: 1,500 examples, 2 epochs, 128 tokens; batch 16, AdamW with 10%
   warm-up and linear decay. Each run is ``autopeft train``'s path
   (:func:`autopeft.training.run.train_model`): training examples drawn from train minus the
   job's search split (the same split for every run), the search split scored after every epoch
   to choose the epoch, and the kept weights scored on dev once.
6. **Report.** Dev metric per seed, mean and sd; the paired (same seed) difference of the
   searched structure to each baseline with a 95% t-interval over the n = 3 differences; the
   search's compute (summed trial seconds and trials, from the store) beside one full fine-tune's
   seconds at the final fidelity; the targets, met or missed.

Estimated compute on the development machine (2 cores, one of them loaded by other work; measured
0.36 s per LoRA step on SST-2 and 0.72 s on MRPC at 1 thread): searches about 15 + 20 minutes,
SST-2 grid and finals (25 runs) about 57 minutes, MRPC (25 runs) about 75 minutes: about 165
core-minutes in all, run as one process at 1 thread.

    nice -n 19 python -m bench.quality --threads 1 --out docs/quality.md      # measure, then report
    python -m bench.quality --report-only --out docs/quality.md               # the report from the rows

Stages resume from the rows (a rerun skips every run already written, and resumes an unfinished
search job with ``autopeft resume``). ``--shard I/N`` splits the runs over processes; a run whose
inputs another shard still owes waits for them. ``--smoke`` runs a tiny version of everything into
``/tmp/autopeft-quality-smoke`` (2-trial searches of 5-step proxies, 10-step runs, 2 rates, 2 seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import torch

from autopeft.export.autopeft_format import AutopeftConfig, TaskHeadSpec, layout_facts
from autopeft.models import TaskHead, load_base_model, resolve_model
from autopeft.space.cost import count_trainable
from autopeft.space.defaults import DEFAULT_RANK, IA3_ROLES
from autopeft.space.layout import ModelLayout, read_layout
from autopeft.space.structure import LoraModules, Structure
from autopeft.tasks import Task, load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.training.model import TrainableModel
from autopeft.training.options import TrainingOptions
from autopeft.training.run import TrainingResult, majority_baseline, train_config, train_model
from bench.shards import Shard, read_rows, row_writer

ROOT = Path(__file__).resolve().parents[1]
GLUE = ROOT.parent / "shared" / "data" / "glue"
MODEL = "minilm"
SEARCH_SEED = 0
"""The search job's seed: it also seeds the carving of the search split that every run here uses."""
SEARCH_ATTEMPTS = 4
"""Runs of ``autopeft search`` / ``autopeft resume`` before the bench gives up on a search."""
RESUME_WAIT_S = 60.0

SEARCHED = "searched"
LORA_QV = "lora r8 q,v"
LORA_ALL = "lora r8 all-linear"
IA3 = "ia3"
FULL = "full fine-tuning"
BASELINES = (LORA_QV, LORA_ALL, IA3, FULL)
METHODS = (*BASELINES, SEARCHED)
"""In run order: the searched structure last, so that a pick equal to a baseline copies its runs."""
RATES = {"peft": (3e-4, 1e-3, 3e-3), "full": (2e-5, 5e-5, 1e-4)}

COLUMNS = ["run", "stage", "task", "method", "learning_rate", "seed", "trainable_params", "metric",
           "search_score", "dev_score", "dev_accuracy", "best_epoch", "steps", "seconds", "load1", "detail"]  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """How one task's runs train: a training subset, epochs and sequence length (batch 16)."""

    folder: str
    train_examples: int
    epochs: float
    max_length: int

    def options(self, learning_rate: float, seed: int) -> TrainingOptions:
        return TrainingOptions(
            epochs=self.epochs, learning_rate=learning_rate, batch_size=16, max_length=self.max_length,
            train_examples=self.train_examples, seed=seed,
            lr_rescues=0,  # every rate comes from the grid; the recorded rows trained without restarts
        )  # fmt: skip

    def describe(self) -> str:
        return f"{self.train_examples:,} training examples, {self.epochs:g} epochs, {self.max_length} tokens, batch 16"


@dataclass(frozen=True)
class Profile:
    """Everything the protocol fixes in advance; ``--smoke`` swaps in a tiny one."""

    trials: int
    search_flags: tuple[str, ...]
    search_examples: int | None
    settings: dict[str, Setting]
    rate_picks: tuple[int, ...]
    seeds: tuple[int, ...]
    dev_examples: int | None = None

    def rates(self, method: str) -> tuple[float, ...]:
        family = RATES["full" if method == FULL else "peft"]
        return tuple(family[i] for i in self.rate_picks)


REAL = Profile(
    trials=12, search_flags=(), search_examples=None,
    settings={"SST-2": Setting("SST-2", 2000, 2, 64), "MRPC": Setting("MRPC", 1500, 2, 128)},
    rate_picks=(0, 1, 2), seeds=(0, 1, 2),
)  # fmt: skip
SMOKE = Profile(
    trials=2, search_flags=("--steps", "5", "--train-examples", "64", "--confirm-seeds", "1"), search_examples=64,
    settings={"SST-2": Setting("SST-2", 160, 1, 64), "MRPC": Setting("MRPC", 160, 1, 128)},
    rate_picks=(0, 2), seeds=(0, 1), dev_examples=64,
)  # fmt: skip


@dataclass(frozen=True)
class Unit:
    """One row to measure: a task's search, one grid run (method, rate, seed 0) or one final run."""

    stage: str
    task: str
    method: str = SEARCHED
    learning_rate: float | None = None
    seed: int = SEARCH_SEED

    @property
    def run(self) -> str:
        if self.stage == "search":
            return f"{self.task}/search"
        if self.stage == "grid":
            return f"{self.task}/grid/{self.method}/{self.learning_rate:g}"
        return f"{self.task}/final/{self.method}/{self.seed}"


def grid_run(task: str, method: str, rate: float) -> str:
    return Unit("grid", task, method, rate).run


def plan(profile: Profile, tasks: Sequence[str]) -> list[tuple[Unit, tuple[str, ...]]]:
    """Every unit in run order, each with the runs it needs first."""
    units: list[tuple[Unit, tuple[str, ...]]] = []
    for task in tasks:
        search = Unit("search", task)
        units.append((search, ()))
        for method in METHODS:
            needs = (search.run,) if method == SEARCHED else ()
            units += [(Unit("grid", task, method, rate), needs) for rate in profile.rates(method)]
        for seed in profile.seeds[1:]:  # seed 0 is the grid's run at the kept rate
            for method in METHODS:
                needs = tuple(grid_run(task, method, rate) for rate in profile.rates(method))
                units.append((Unit("final", task, method, seed=seed), needs))
    return units


# ------------------------------------------------------------------------------------------ choices


def pick_from_front(front: Sequence[dict[str, Any]], metric: str, budget: int) -> dict[str, Any]:
    """The pick rule: the front row (``autopeft pareto --json``) with the highest search score
    among those with at most ``budget`` trainable parameters; ties go to fewer parameters."""
    affordable = [row for row in front if row["trainable_params"] <= budget and row["values"].get(metric) is not None]
    if not affordable:
        raise SystemExit(f"no front row trains at most {budget:,} parameters; the pick rule has nothing to pick")
    return max(affordable, key=lambda row: (row["values"][metric], -row["trainable_params"]))


def score(value: str) -> float:
    """A stored score; a missing or non-finite one ranks last."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return number if math.isfinite(number) else -math.inf


def kept_rate(rows: dict[str, dict[str, str]], task: str, method: str, rates: Sequence[float]) -> float:
    """The grid's choice: the rate whose seed-0 run scored best on the search split (first on ties).
    Reads the grid rows' search scores only."""
    return max(rates, key=lambda rate: (score(rows[grid_run(task, method, rate)]["search_score"]), -rates.index(rate)))


def final_rows(rows: dict[str, dict[str, str]], profile: Profile, task: str, method: str) -> list[dict[str, str]]:
    """The method's final runs by seed: the grid's run at the kept rate (seed 0), then the others."""
    rate = kept_rate(rows, task, method, profile.rates(method))
    chosen = [rows[grid_run(task, method, rate)]]
    return chosen + [rows[Unit("final", task, method, seed=seed).run] for seed in profile.seeds[1:]]


def paired(differences: Sequence[float]) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided 95% t-interval (n - 1 degrees of freedom)."""
    from scipy.stats import t

    n = len(differences)
    mean = statistics.mean(differences)
    if n < 2:
        return mean, math.nan, math.nan
    half = t.ppf(0.975, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return mean, mean - half, mean + half


# -------------------------------------------------------------------------------------- measuring


@dataclass
class Bench:
    """What the runs share: the profile, where rows and the search store go, and loaded tasks."""

    profile: Profile
    results: Path
    store_path: Path
    command: str
    tasks: dict[str, Task] = field(default_factory=dict)
    layouts: dict[str, ModelLayout] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.store_path}"

    def task_path(self, name: str) -> str:
        return str(GLUE / self.profile.settings[name].folder)

    def task(self, name: str) -> Task:
        """The task with the search job's split carved out of train, exactly as ``prepare`` carves it."""
        if name not in self.tasks:
            task = with_search_split(load_task(self.task_path(name)), self.profile.search_examples, seed=SEARCH_SEED)
            if self.profile.dev_examples is not None:
                task = replace(task, dev=task.dev.subset(self.profile.dev_examples, 0))
            self.tasks[name] = task
        return self.tasks[name]

    def layout(self, name: str) -> ModelLayout:
        if name not in self.layouts:
            self.layouts[name] = read_layout(load_base_model(resolve_model(MODEL), TaskHead.of(self.task(name))))
        return self.layouts[name]

    def autopeft(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "autopeft", *args]


def search_environment() -> dict[str, str]:
    """The search's own local Ray (never a Ray head another process started), one thread each."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    ray_dir = Path(tempfile.gettempdir()) / f"aq-ray-{os.getpid()}"
    ray_dir.mkdir(exist_ok=True)
    env.update(RAY_TMPDIR=str(ray_dir), RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")  # fmt: skip
    return env


def lora_r8(layout: ModelLayout, roles: Sequence[str]) -> Structure:
    places = {(layer, role): DEFAULT_RANK for layer in range(layout.num_layers) for role in roles if layout.matrix(layer, role)}
    return Structure(lora=LoraModules(places))


def baseline_structure(method: str, layout: ModelLayout) -> Structure:
    if method == LORA_QV:
        return lora_r8(layout, ("q", "v"))
    if method == LORA_ALL:
        return lora_r8(layout, layout.roles)
    if method == IA3:
        return Structure(ia3=frozenset((layer, role) for layer in range(layout.num_layers) for role in IA3_ROLES))
    raise ValueError(method)


def structure_config(task: Task, layout: ModelLayout, structure: Structure) -> AutopeftConfig:
    return AutopeftConfig(
        base_model=resolve_model(MODEL).hub_id, model=MODEL, head=TaskHeadSpec(task.kind, task.num_labels, task.label_names),
        structure=structure, layout=layout_facts(layout), trainable_params=count_trainable(structure, layout),
    )  # fmt: skip


def full_model(task: Task) -> TrainableModel:
    """MiniLM with every weight trainable (train_model seeds before building it)."""
    base = load_base_model(resolve_model(MODEL), TaskHead.of(task))
    base.requires_grad_(True)
    return TrainableModel(base, "full", lambda folder: base.save_pretrained(str(folder)))


def run_search(bench: Bench, name: str) -> dict[str, Any]:
    """The search row: run (or resume) the real search, then apply the pick rule to its front."""
    from autopeft.store import JobState, Store

    store = Store(bench.store_url)
    path = bench.task_path(name)

    def ours() -> list:
        jobs = [j for j in store.jobs() if j.spec.get("task") == path and j.budget_trials == bench.profile.trials]
        return sorted(jobs, key=lambda j: j.id)

    search = bench.autopeft(
        "search", "--model", MODEL, "--task", path, "--space", "lora", "--trials", str(bench.profile.trials),
        "--workers", "1", "--seed", str(SEARCH_SEED), "--storage", bench.store_url, *bench.profile.search_flags,
        *(("--search-examples", str(bench.profile.search_examples)) if bench.profile.search_examples else ()),
    )  # fmt: skip
    started = time.perf_counter()
    ran: list[str] = []
    for attempt in range(SEARCH_ATTEMPTS):
        jobs = ours()
        if jobs and jobs[-1].state == JobState.COMPLETED:
            break
        if jobs and jobs[-1].state == JobState.CANCELLED:
            raise SystemExit(f"search job {jobs[-1].id} in {bench.store_path} was cancelled; remove it to search again")
        if attempt:
            time.sleep(RESUME_WAIT_S)  # a dead driver's lease must expire before resume may claim the job
        # No job yet: search. A job whose driver stopped (its Ray killed under it, the bench interrupted):
        # resume, which loses no completed trial and runs none twice.
        command = bench.autopeft("resume", str(jobs[-1].id), "--storage", bench.store_url) if jobs else search
        print("$", shlex.join(command), flush=True)
        ran.append(command[3])
        if subprocess.run(command, env=search_environment()).returncode != 0:
            print(f"{shlex.join(command[2:4])} failed (attempt {attempt + 1} of {SEARCH_ATTEMPTS})", flush=True)
    job = ours()[-1]
    if job.state != JobState.COMPLETED:
        raise SystemExit(f"search job {job.id} ended {job.state}: {job.error}")
    pareto = bench.autopeft("pareto", str(job.id), "--json", "--storage", bench.store_url)
    front = json.loads(subprocess.run(pareto, env=search_environment(), check=True, capture_output=True, text=True).stdout)

    task, layout = bench.task(name), bench.layout(name)
    splits = job.spec["task_info"]["splits"]
    if (splits["train"], splits["search"]) != (len(task.train), len(task.search)):
        raise SystemExit(f"job {job.id} split train/search {splits}; this bench carved {len(task.train)}/{len(task.search)}")
    budget = count_trainable(baseline_structure(LORA_QV, layout), layout)
    picked = pick_from_front(front, task.metric, budget)
    trials = store.trials(job.id)
    roles: dict[str, int] = {}
    for trial in trials:
        roles[trial.role] = roles.get(trial.role, 0) + 1
    detail = {
        "job": job.id, "store": str(bench.store_path), "trial": picked["trial"], "n": picked["n"],
        "std": picked["std"].get(task.metric), "replicate_trials": picked["replicate_trials"], "label": picked["label"],
        "structure": picked["structure"], "budget": budget, "trials": len(trials),
        "completed": sum(t.state == "completed" for t in trials), "failed": sum(t.state == "failed" for t in trials),
        "roles": roles, "fidelity": job.spec["fidelity"], "splits": splits, "run_seconds": job.run_seconds,
        "wall_seconds_now": round(time.perf_counter() - started, 1) if ran == ["search"] else None, "invocations": ran,
        "commands": [shlex.join(c[2:]) for c in (search, pareto)],
        "front": [{"trial": r["trial"], "params": r["trainable_params"], "score": r["values"][task.metric], "n": r["n"],
                   "label": r["label"]} for r in front],
    }  # fmt: skip
    return {
        "stage": "search", "method": SEARCHED, "seed": SEARCH_SEED, "trainable_params": picked["trainable_params"],
        "metric": task.metric, "search_score": picked["values"][task.metric],
        "steps": job.spec["fidelity"]["steps"], "seconds": round(sum(t.wall_time_s or 0.0 for t in trials), 1),
        "detail": detail,
    }  # fmt: skip


def train_unit(bench: Bench, unit: Unit, rows: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A grid or final row: one ``autopeft train``-path run of the unit's method, rate and seed."""
    task, layout = bench.task(unit.task), bench.layout(unit.task)
    rate = unit.learning_rate
    if rate is None:
        rate = kept_rate(rows, unit.task, unit.method, bench.profile.rates(unit.method))
    if unit.method == SEARCHED:
        structure = Structure.from_json(json.loads(rows[Unit("search", unit.task).run]["detail"])["structure"])
        twin = next((m for m in BASELINES[:-1] if baseline_structure(m, layout).to_json() == structure.to_json()), None)
        twin_run = replace(unit, method=twin).run
        if twin_run in rows:  # the same structure at the same rate and seed trains to the same weights
            copied = dict(rows[twin_run])
            detail = {**json.loads(copied.pop("detail")), "same_structure_as": twin}
            return {**{k: v for k, v in copied.items() if k in COLUMNS}, "method": SEARCHED, "detail": detail}
    setting = bench.profile.settings[unit.task]
    options = setting.options(rate, unit.seed)
    with tempfile.TemporaryDirectory(prefix="autopeft-quality-") as out:
        if unit.method == FULL:
            result = train_model(lambda: full_model(task), resolve_model(MODEL), task, options, Path(out))
            params = full_model(task).trainable_params  # a second load (~1 s) to count what trained
        else:
            structure = structure if unit.method == SEARCHED else baseline_structure(unit.method, layout)
            config = structure_config(task, layout, structure)
            result = train_config(config, resolve_model(MODEL), task, options, Path(out))
            params = config.trainable_params
    return result_row(unit, rate, params, result)


def result_row(unit: Unit, rate: float, params: int, result: TrainingResult) -> dict[str, Any]:
    return {
        "stage": unit.stage, "method": unit.method, "learning_rate": rate, "seed": unit.seed,
        "trainable_params": params, "metric": result.metric, "search_score": result.best[result.metric],
        "dev_score": result.dev[result.metric], "dev_accuracy": result.dev.get("accuracy"),
        "best_epoch": result.best["epoch"], "steps": result.steps, "seconds": round(result.train_seconds, 1),
        "detail": {"dev": result.dev, "search_history": result.history, "majority": result.baseline,
                   "examples": [result.train_examples, result.search_examples, result.dev_examples]},
    }  # fmt: skip


def measure(bench: Bench, units: list[tuple[Unit, tuple[str, ...]]], shard: Shard, poll_s: float = 30.0) -> None:
    rows = read_rows(bench.results, "run")
    with row_writer(shard.path(bench.results), COLUMNS) as write:
        for position, (unit, needs) in enumerate(units):
            if unit.run in rows or not shard.owns(position):
                continue
            while any(need not in rows for need in needs):  # another shard owes them
                print(f"{unit.run}: waiting for {', '.join(n for n in needs if n not in rows)}", flush=True)
                time.sleep(poll_s)
                rows = read_rows(bench.results, "run")
            row = run_search(bench, unit.task) if unit.stage == "search" else train_unit(bench, unit, rows)
            row.update(run=unit.run, task=unit.task, load1=round(os.getloadavg()[0], 2))
            row["detail"] = json.dumps({**row["detail"], "command": bench.command}, separators=(",", ":"))
            write(row)
            rows[unit.run] = {k: "" if row.get(k) is None else str(row.get(k, "")) for k in COLUMNS}
            print(f"{unit.run}: search {row['metric']} {float(row['search_score']):.4f}"
                  + (f", dev {float(row['dev_score']):.4f}" if row.get("dev_score") not in (None, "") else "")
                  + f" ({row['seconds']} s)", flush=True)  # fmt: skip


# ---------------------------------------------------------------------------------------- report


def points(value: float) -> str:
    return f"{100 * value:.2f}"


def signed(value: float) -> str:
    return f"{100 * value:+.2f}"


def rate_text(rate: float) -> str:
    """3e-4, 1e-3, 2e-5: how learning rates are written."""
    mantissa, exponent = f"{rate:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass
class TaskSummary:
    """What the targets read of one task: searched-minus-baseline (mean, low, high), compute, size."""

    differences: dict[str, tuple[float, float, float]]
    search_seconds: float
    full_seconds: float
    params: int
    budget: int
    spent_seconds: float


def machine_lines(rows: Sequence[dict[str, str]]) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")  # fmt: skip
    loads = sorted(float(r["load1"]) for r in rows if r.get("load1"))
    now = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [
        f"Machine: {platform.machine()}, {cpu}, {os.cpu_count()} cores, no GPU; Python {platform.python_version()}, "
        f"torch {torch.__version__}. Report written {date.today()}; load average then {now} (1, 5, 15 min).",
    ]  # fmt: skip
    if loads:
        lines += ["", f"1-minute load average as each row was written: min {loads[0]:.2f}, median "
                  f"{statistics.median(loads):.2f}, max {loads[-1]:.2f}. Every run used 1 thread; other work "
                  "shared the cores, so seconds are comparable within this report only."]  # fmt: skip
    return lines


def protocol_lines(profile: Profile) -> list[str]:
    peft, full = (" / ".join(rate_text(r) for r in profile.rates(m)) for m in (LORA_QV, FULL))
    settings = "; ".join(f"{name}: {s.describe()}" for name, s in profile.settings.items())
    flags = " ".join(profile.search_flags)
    lines = [
        "## Protocol (fixed before the runs)",
        "",
        f"1. Search: a real `autopeft search` per task, on that task (`--space lora --trials {profile.trials} "
        f"--workers 1 --seed {SEARCH_SEED}{' ' + flags if flags else ''}`; otherwise every proxy option at its "
        "default: 150-step proxies at 1e-3 with LR rescues, practitioner defaults first, 2 confirmation seeds per "
        "front row). Trials train on train minus the job's search split and are scored on that split; dev is "
        "never read by the search.",
        "2. Pick rule: of the job's front (`autopeft pareto JOB --json`), the row with the highest search score "
        "(the mean over its runs, i.e. over its confirmation seeds where it has them) among the rows whose "
        "trainable parameters (head included) are at most LoRA r8 q,v's; ties go to fewer parameters.",
        "3. Baselines: LoRA r8 (alpha 16) on q,v; LoRA r8 on every linear layer of the blocks (q, k, v, o, up, "
        "down); IA3 on k, v and the FFN output (peft's defaults for BERT); full fine-tuning.",
        f"4. Learning rate: each method, the searched one too, trains once (seed 0) at each rate of its family's "
        f"grid (PEFT {peft}; full fine-tuning {full}) at the final fidelity; the rate whose run scores best on "
        "the search split (at its best epoch) is kept. Nothing else is tuned.",
        f"5. Finals: seeds {', '.join(map(str, profile.seeds))} at the kept rate (seed 0 is the grid's run at that "
        f"rate). {settings}. `autopeft train`'s path (`train_model`): training examples drawn from train minus "
        "the job's search split (the same split as the search's, for every run), the search split scored after "
        "every epoch to choose the epoch, the kept weights scored once on dev.",
        f"6. Mean and sd over seeds; the searched structure's paired (same seed) difference to each baseline "
        f"with a 95% t-interval over the n = {len(profile.seeds)} differences (scipy.stats.t).",
        "",
    ]  # fmt: skip
    if profile is REAL:
        lines += ["Planned compute (estimated before the run from measured step times: 0.36 s per LoRA step on "
                  "SST-2, 0.72 s on MRPC, about 25 s of scoring per run): searches about 15 + 20 minutes, SST-2 "
                  "grid and finals (25 runs) about 57 minutes, MRPC (25 runs) about 75 minutes: about 165 "
                  "core-minutes.", ""]  # fmt: skip
    return lines


def task_section(bench: Bench, rows: dict[str, dict[str, str]], name: str) -> tuple[list[str], TaskSummary]:
    profile, task, layout = bench.profile, bench.task(name), bench.layout(name)
    search = rows[Unit("search", name).run]
    found = json.loads(search["detail"])
    metric, budget, fidelity = search["metric"], found["budget"], found["fidelity"]
    lines = [
        f"## {name}: dev {metric} ({len(task.dev)} examples)",
        "",
        f"**Search**: job {found['job']}: {found['trials']} trials ({found['completed']} completed, "
        f"{found['failed']} failed; by role {found['roles']}), proxies of {fidelity['steps']} steps x batch "
        f"{fidelity['batch_size']} at {fidelity['max_length']} tokens from {fidelity['train_examples']:,} training "
        f"examples, scored on the {found['splits']['search']}-example search split (train keeps "
        f"{found['splits']['train']:,}). Front (search score = mean over the row's n runs):",
        "",
        "| trial | trainable | search score | n | label | within budget |",
        "|---:|---:|---:|---:|---|---|",
    ]  # fmt: skip
    for row in found["front"]:
        mark = "**picked**" if row["trial"] == found["trial"] else ("yes" if row["params"] <= budget else "no")
        lines.append(f"| {row['trial']} | {row['params']:,} | {row['score']:.4f} | {row['n']} | {row['label'] or ''} | {mark} |")
    lines += ["", f"Budget: LoRA r8 q,v's {budget:,} trainable parameters. Picked: trial {found['trial']}, "
              f"`{json.dumps(found['structure'], separators=(',', ':'))}`.", ""]  # fmt: skip
    twin = json.loads(rows[final_rows(rows, profile, name, SEARCHED)[-1]["run"]]["detail"]).get("same_structure_as")
    if twin:
        lines += [f"The pick is the practitioner default {twin} itself, so the searched rows below are that "
                  "baseline's runs (same structure, rates and seeds train to the same weights).", ""]  # fmt: skip

    kept = {m: kept_rate(rows, name, m, profile.rates(m)) for m in METHODS}
    lines += ["**Learning rate** (seed 0; search-split score at the best epoch; kept rate in bold):", "",
              "| method | " + " | ".join(f"rate {i + 1}" for i in range(len(profile.rate_picks))) + " |",
              "|---|" + "---:|" * len(profile.rate_picks)]  # fmt: skip
    for method in METHODS:
        cells = []
        for rate in profile.rates(method):
            cell = f"{rate_text(rate)}: {float(rows[grid_run(name, method, rate)]['search_score']):.4f}"
            cells.append(f"**{cell}**" if rate == kept[method] else cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")

    finals = {m: final_rows(rows, profile, name, m) for m in METHODS}
    values = {m: [float(r["dev_score"]) for r in finals[m]] for m in METHODS}
    seeds = [int(r["seed"]) for r in finals[SEARCHED]]
    lines += ["", f"**Finals** ({profile.settings[name].describe()}; seeds {', '.join(map(str, seeds))}; dev {metric} "
              "in points):", "",
              "| method | trainable | % of model | rate | per seed | mean | sd | best epochs | s per run |",
              "|---|---:|---:|---:|---|---:|---:|---|---:|"]  # fmt: skip
    for method in METHODS:
        params = int(finals[method][0]["trainable_params"])
        sd = statistics.stdev(values[method]) if len(values[method]) > 1 else math.nan
        epochs = ", ".join(f"{float(r['best_epoch']):g}" for r in finals[method])
        seconds = statistics.mean(float(r["seconds"]) for r in finals[method])
        lines.append(f"| {method} | {params:,} | {100 * params / layout.total_params:.3f}% | {rate_text(kept[method])} | "
                     f"{' / '.join(points(v) for v in values[method])} | {points(statistics.mean(values[method]))} | "
                     f"{100 * sd:.2f} | {epochs} | {seconds:.0f} |")  # fmt: skip
    majority = majority_baseline(task)
    if majority:
        lines += ["", f"Always predicting the majority training class scores {points(majority[metric])} on dev."]
    lines += ["", f"**Searched minus baseline**, paired by seed (n = {len(seeds)}, 95% t-interval with "
              f"{len(seeds) - 1} degrees of freedom), in points:", "",
              "| baseline | per seed | mean | 95% CI |", "|---|---|---:|---|"]  # fmt: skip
    differences = {}
    for baseline in BASELINES:
        diffs = [a - b for a, b in zip(values[SEARCHED], values[baseline])]
        differences[baseline] = mean, low, high = paired(diffs)
        lines.append(f"| {baseline} | {' / '.join(signed(d) for d in diffs)} | {signed(mean)} | "
                     f"{signed(low)} to {signed(high)} |")  # fmt: skip
    full_seconds = statistics.mean(float(r["seconds"]) for r in finals[FULL])
    search_seconds = float(search["seconds"])
    process = found.get("wall_seconds_now")
    end_to_end = f"; the `autopeft search` process ran {process:,.0f} s end to end, Ray start-up included" if process else (
        f"; the search was resumed ({' then '.join(found.get('invocations', []))}) after its driver stopped")
    lines += ["", f"**Compute**: the search's {found['trials']} trials took {search_seconds:,.0f} s summed (the "
              f"job's driver recorded {found['run_seconds']:,.0f} s{end_to_end}); one full fine-tune at the final "
              f"fidelity takes {full_seconds:,.0f} s (mean of {len(finals[FULL])} runs, scoring included): the search "
              f"cost {search_seconds / full_seconds:.1f} full fine-tunes.", ""]  # fmt: skip
    spent = search_seconds + sum(float(r["seconds"]) for r in rows.values() if r["task"] == name and r["stage"] != "search")
    summary = TaskSummary(differences, search_seconds, full_seconds, int(finals[SEARCHED][0]["trainable_params"]),
                          budget, spent)  # fmt: skip
    return lines, summary


def target_lines(summaries: dict[str, TaskSummary]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    def interval(difference: tuple[float, float, float]) -> str:
        mean, low, high = difference
        return f"{signed(mean)} points, 95% CI {signed(low)} to {signed(high)}"

    lines = ["## Targets", ""]
    if "SST-2" in summaries:
        sst = summaries["SST-2"]
        gain = sst.differences[LORA_QV]
        lines.append(f"- SST-2, searched >= +1.0 point over LoRA r8 q,v at no more parameters: "
                     f"{verdict(gain[0] >= 0.01 and sst.params <= sst.budget)} ({interval(gain)}; "
                     f"{sst.params:,} vs {sst.budget:,} parameters).")  # fmt: skip
        gap = sst.differences[FULL]
        lines.append(f"- SST-2, searched within 0.5 point of full fine-tuning: {verdict(gap[0] >= -0.005)} "
                     f"({interval(gap)}).")  # fmt: skip
    if "MRPC" in summaries:
        gain = summaries["MRPC"].differences[LORA_QV]
        lines.append(f"- MRPC, searched beats LoRA r8 q,v: {verdict(gain[0] > 0)} ({interval(gain)}).")
    for name, summary in summaries.items():
        lines.append(f"- {name}, search compute <= one full fine-tune: "
                     f"{verdict(summary.search_seconds <= summary.full_seconds)} ({summary.search_seconds:,.0f} s "
                     f"of trials vs {summary.full_seconds:,.0f} s).")  # fmt: skip
    lines += ["", "Met or missed is read off the mean difference. With this few seeds a difference is only "
              "established when its whole 95% interval clears the threshold."]  # fmt: skip
    return lines


def report(bench: Bench, rows: dict[str, dict[str, str]], names: Sequence[str], report_command: str) -> str:
    complete = [n for n in names if all(u.run in rows for u, _ in plan(bench.profile, [n]))]
    measured = [r for r in rows.values() if r["task"] in complete]
    commands = sorted({json.loads(r["detail"]).get("command", "") for r in measured})
    searches = [json.loads(rows[Unit("search", n).run]["detail"])["commands"] for n in complete]
    lines = [
        "# Final quality: a real search's pick vs tuned baselines (MiniLM on SST-2 and MRPC)",
        "",
        *machine_lines(measured),
        "",
        "Commands: the rows were measured by " + "; ".join(f"`{c}`" for c in commands)
        + f", which ran per task `autopeft search ...` and `autopeft pareto ...` as listed below (with "
        "`RAY_TMPDIR` set to a fresh folder so that the search starts its own local Ray, and "
        f"`OMP_NUM_THREADS=1`); this report: `{report_command}`. Raw rows: "
        f"`{bench.results.parent.name}/{bench.results.stem}*{bench.results.suffix}`; search store: "
        f"`{bench.store_path.name}` beside them.",
        "",
        *(f"    {command}" for pair in searches for command in pair),
        "",
        *protocol_lines(bench.profile),
    ]  # fmt: skip
    summaries = {}
    for name in complete:
        section, summaries[name] = task_section(bench, rows, name)
        lines += section
    missing = [n for n in names if n not in complete]
    if missing:
        lines += [f"Not yet measured: {', '.join(missing)}.", ""]
    lines += target_lines(summaries)
    spent = sum(s.spent_seconds for s in summaries.values())
    lines += ["", f"Measured compute: {spent / 60:,.0f} core-minutes (search trials plus every grid and final run; "
              "Ray start-up, model loading and the search driver not counted)."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(REAL.settings), choices=list(REAL.settings))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=None, help="default bench/results/quality.csv")
    parser.add_argument("--store", type=Path, default=None, help="default bench/results/quality.search.db")
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th unit from the I-th")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true", help="write the report from the rows, train nothing")
    parser.add_argument("--smoke", action="store_true", help="a tiny run into /tmp/autopeft-quality-smoke")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    profile = SMOKE if args.smoke else REAL
    home = Path("/tmp/autopeft-quality-smoke") if args.smoke else ROOT / "bench" / "results"
    results = (args.results or home / "quality.csv").resolve()
    store = (args.store or home / "quality.search.db").resolve()
    results.parent.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "bench.quality", *(sys.argv[1:] if argv is None else argv)])
    bench = Bench(profile, results, store, command)
    units = plan(profile, args.tasks)
    if not args.report_only:
        measure(bench, units, Shard.parse(args.shard))
    rows = read_rows(results, "run")
    missing = [u.run for u, _ in units if u.run not in rows]
    if missing and not args.report_only:
        print(f"{len(units) - len(missing)} of {len(units)} rows measured; the last shard writes the report")
        return
    args.out.write_text(report(bench, rows, args.tasks, command))
    print(f"wrote {args.out}" + (f" ({len(missing)} rows still missing)" if missing else ""))


if __name__ == "__main__":
    main()
