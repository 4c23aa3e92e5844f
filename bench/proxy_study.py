"""Which proxy design ranks structures like real training, at the cost of today's proxy?

Issue 12, item 7. Structures are drawn (scrambled Sobol, seeded) from the ``lora`` space and from
the ``autopeft`` space (LoRA, adapters, prefixes, IA3). On each task every structure trains once at
a *reference* fidelity (4x the default proxy's steps and examples, scored on dev, as a user's real
training would be) and once per *proxy design* (scored on the search split carved from train, as a
search does). Every design spends about the default proxy's training tokens (steps x batch x
tokens) and evaluation examples; they differ in how they spend them:

* ``default``: today's proxy (150 steps of 16 x 64 tokens, LR 1e-3 with stall rescues);
* ``two seeds``: two 75-step runs with other training seeds, each scoring half the search split
  (the same half), reported as their mean;
* ``longer steps``: 300 steps of 8 examples (more optimizer steps, smaller batches);
* ``shorter texts``: 32 tokens per example and 32 examples per step (twice the examples);
* ``smaller eval``: 300 scored examples instead of the whole search split, the saved forward
  passes spent on more training steps (a forward pass costs about a third of a training step);
* ``no rescue``: the default without learning-rate restarts (how much the rescue matters).

The report gives, per task and space, Spearman's rho of each design's score against the reference's
dev score with a bootstrap 95% interval, the *pick's regret* (the best reference score minus the
reference score of the structure the design scored highest: what picking by the proxy costs, which
stays small where the structures it confuses are equally good), and each design's median seconds
relative to ``default``. A pooled table per task ranks its structures of both spaces together, as a
search over a mixed space meets them; the issue's targets are read on it, since one space's
structures can lie within the reference's own noise (stated before the verdict cells had rows).
One reference seed is noisy (LoRA structures 1, 3 and 5 of SST-2 / ``lora`` moved 2.2-2.5 points
between two seeds), so on the choice cell the reference trains at a second seed too: designs are
chosen against the mean of both, and the two seeds' own rho says how far any proxy can agree with a
single seed (the verdict cells' reference). The design is **chosen on the lora structures of SST-2
only**; MRPC and the ``autopeft`` structures are the verdict it never saw. So the study runs in two
stages: every design trains on the SST-2 / ``lora`` structures; the verdict cells train the
reference and ``default`` from the start and the chosen design once the choice is made (the other
designs there would inform nothing, and skipping them takes the study from about 50 to about 30
core-hours on 2 CPU cores; the repeated reference adds about 3). Rows are keyed on the proxy's
revision (``autopeft.worker.proxy.REVISION``): the 55 rows of revision 1 (SST-2 / ``lora``
structures 0-8, five of them complete) were dropped when a collapse after learning became a stall,
since any of them may have trained differently. Revisions 3 and 4 changed rsLoRA's alpha only, so
rows of revision 2 stand for structures without rsLoRA (``still_current``). Rows append to
``--results`` (one file per ``--shard``) as they finish, so a run resumes; a shard owns whole structures, and
picks up the chosen design's runs as soon as the choice is complete. Every process rewrites the
report from all rows so far (a cell still incomplete shows ``-``; ``--report-only`` rewrites it
without training). ``--steps-scale`` shrinks every run's steps for a smoke test only.

    python -m bench.proxy_study --threads 1 --shard 0/2 --out docs/fidelity.md &
    python -m bench.proxy_study --threads 1 --shard 1/2 --out docs/fidelity.md

On a machine with a GPU, run one shard per process (``--device cuda``); each holds MiniLM once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from scipy.stats import spearmanr

from autopeft.models import TaskHead, build_skeleton, resolve_model
from autopeft.optimizers.random_search import RandomSearch
from autopeft.space import load_space_spec
from autopeft.space.search_space import bind_space
from autopeft.space.structure import Structure
from autopeft.tasks import Task, TaskKind, load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.tasks.metrics import evaluate_predictions
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from autopeft.worker.proxy import REVISION as PROXY_REVISION
from autopeft.worker.proxy import revision_for
from bench.data import GLUE
from bench.shards import Shard, read_rows, row_writer

TASKS = {"SST-2": 64, "MRPC": 128}
"""Tasks and the tokens per example their default proxy uses (MRPC's sentence pairs need 128)."""
SPACES = {"lora": 30, "autopeft": 20}
"""Spaces and how many structures each contributes per task."""
CHOICE = ("SST-2", "lora")
"""The only (task, space) the design is chosen on; every other cell is the verdict."""
COLUMNS = ["key", "task", "space", "index", "design", "seed", "params", "score", "seconds", "learning_rate",
           "lr_rescues", "structure"]
REFERENCE = "reference"
REFERENCE_AGAIN = "reference again"
"""The reference at other seeds, on the choice cell only: how well one reference seed ranks like
another (the most any proxy can agree with one seed), and with the first seed a two-seed mean that
the designs are chosen against."""
REFERENCES = (REFERENCE, REFERENCE_AGAIN)
REPEAT_SEED_OFFSET = 500


@dataclass(frozen=True)
class Design:
    """A proxy: its fidelity and the training seeds whose mean score it reports (structure ``i``'s
    seeds are ``i + seed_offset``, then ``+ 1000`` per further seed)."""

    fidelity: Fidelity
    seeds: int = 1
    seed_offset: int = 0


def default_proxy(max_length: int) -> Fidelity:
    return Fidelity(max_length=max_length)


SMALL_EVAL = 300


def designs(max_length: int, search_size: int) -> dict[str, Design]:
    """The proxy designs compared on a task whose default proxy uses ``max_length`` tokens and
    scores a search split of ``search_size`` examples."""
    base = default_proxy(max_length)
    saved_forwards = max(0, search_size - SMALL_EVAL)
    return {
        "default": Design(base),
        "two seeds": Design(replace(base, steps=base.steps // 2, eval_examples=search_size // 2), seeds=2),
        "longer steps": Design(replace(base, steps=base.steps * 2, batch_size=base.batch_size // 2)),
        "shorter texts": Design(replace(base, max_length=max_length // 2, batch_size=base.batch_size * 2,
                                        train_examples=base.train_examples * 2)),
        "smaller eval": Design(replace(base, eval_examples=SMALL_EVAL,
                                       steps=base.steps + round(saved_forwards / 3 / base.batch_size))),
        "no rescue": Design(replace(base, lr_rescues=0)),
    }


def reference(max_length: int, train_size: int) -> Fidelity:
    """4x the default proxy's steps and training examples (capped at the training split), dev-scored."""
    base = default_proxy(max_length)
    return replace(base, steps=base.steps * 4, train_examples=min(base.train_examples * 4, train_size))


def references(max_length: int, train_size: int) -> dict[str, Design]:
    """The reference and its repeat at other seeds (trained on the choice cell only)."""
    fidelity = reference(max_length, train_size)
    return {REFERENCE: Design(fidelity), REFERENCE_AGAIN: Design(fidelity, seed_offset=REPEAT_SEED_OFFSET)}


def study_task(name: str) -> Task:
    return with_search_split(load_task(str(GLUE / name)))


def structures(task: Task, space_name: str, count: int, seed: int) -> list[dict]:
    """``count`` distinct feasible structures of ``space_name``: random search's scrambled Sobol draws."""
    space = bind_space(load_space_spec(space_name), build_skeleton(resolve_model("minilm"), TaskHead.of(task)))
    return [space.decode(point).to_json() for point in RandomSearch(space, [], seed).ask(count)]


@dataclass(frozen=True)
class Unit:
    """One training run of the study: a structure of a space on a task, at a design's fidelity and
    seed, scored on ``split``."""

    task: str
    space: str
    index: int
    design: str
    seed: int
    fidelity: Fidelity
    split: str

    @property
    def structure(self) -> tuple[str, str, int]:
        return self.task, self.space, self.index

    def needed(self, chosen: str | None) -> bool:
        """Whether the study trains this run, given the design chosen so far (None: not yet)."""
        return (self.task, self.space) == CHOICE or self.design in (REFERENCE, "default", chosen)

    @property
    def key(self) -> str:
        """Names the run, its exact fidelity and the proxy's revision, so rows of a changed design or
        of an older proxy are never reused."""
        return self.key_at(PROXY_REVISION)

    def key_at(self, revision: int) -> str:
        run = {"fidelity": self.fidelity.to_json(), "proxy": revision}
        digest = hashlib.sha1(json.dumps(run, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.task}|{self.space}|{self.index}|{self.design}|{self.seed}|{digest}"


def plans(tasks: dict[str, Task]) -> dict[str, dict[str, Design]]:
    """The designs of each task, the dev-scored references included."""
    return {
        name: references(TASKS[name], len(task.train)) | designs(TASKS[name], len(task.search))
        for name, task in tasks.items()
    }


def units(spaces: dict[str, int], plan: dict[str, dict[str, Design]], steps_scale: float = 1.0) -> Iterator[Unit]:
    """Every run, structure by structure (so a partial run has whole structures), tasks in turn."""
    for task, table in plan.items():
        for space, count in spaces.items():
            for index in range(count):
                for name, design in table.items():
                    fidelity = replace(design.fidelity, steps=max(2, round(design.fidelity.steps * steps_scale)))
                    split = "dev" if name in REFERENCES else "search"
                    for replicate in range(design.seeds):
                        seed = index + design.seed_offset + 1000 * replicate
                        yield Unit(task, space, index, name, seed, fidelity, split)


def owned(runs: list[Unit], shard: Shard) -> list[Unit]:
    """The runs of every ``shard.count``-th structure from the ``shard.index``-th: a structure's
    runs stay in one process, so the shards' costs balance whichever designs a cell trains."""
    structures_in_order = list(dict.fromkeys(unit.structure for unit in runs))
    mine = {s for number, s in enumerate(structures_in_order) if shard.owns(number)}
    return [unit for unit in runs if unit.structure in mine]


def current_rows(args: argparse.Namespace, spaces: dict[str, int], plan: dict[str, dict[str, Design]]) -> list[dict]:
    """Rows measured so far whose run (and fidelity) is still part of the study."""
    return still_current(read_rows(args.results, "key").values(), units(spaces, plan, args.steps_scale))


def still_current(rows: Iterable[dict], runs: Iterable[Unit]) -> list[dict]:
    """The rows of ``runs``, keyed as the current proxy keys them: a row of an older proxy revision
    stands when no later revision changed how its structure trains (``revision_for``: revisions 3
    and 4 changed rsLoRA's alpha only, so the rows of LoRA and DoRA structures of revision 2 stand)."""
    wanted = {unit.key_at(revision): (unit.key, revision) for unit in runs for revision in range(1, PROXY_REVISION + 1)}
    kept = {}
    for row in rows:
        current, revision = wanted.get(row["key"], (None, 0))
        if current and revision >= revision_for(Structure.from_json(json.loads(row["structure"]))):
            kept[current] = {**row, "key": current}
    return list(kept.values())


def measure(args: argparse.Namespace, spaces: dict[str, int], tasks: dict[str, Task], shard: Shard) -> None:
    """Train this shard's needed runs until none is left; the choice is re-read after each pass."""
    plan = plans(tasks)
    while True:
        rows = current_rows(args, spaces, plan)
        chosen = choose(rows, plan, spaces[CHOICE[1]])
        done = {row["key"] for row in rows}
        todo = [u for u in owned(list(units(spaces, plan, args.steps_scale)), shard)
                if u.key not in done and u.needed(chosen)]  # fmt: skip
        if not todo:
            return
        for task_name, task in tasks.items():
            if mine := [u for u in todo if u.task == task_name]:
                train_runs(args, mine, spaces, task, shard.path(args.results))


def train_runs(args: argparse.Namespace, runs: list[Unit], spaces: dict[str, int], task: Task, out: Path) -> None:
    """Train ``runs`` (all on ``task``), appending one row each to ``out`` as it finishes."""
    trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=args.threads), device=args.device)
    drawn = {space: structures(task, space, count, args.seed) for space, count in spaces.items()}
    with row_writer(out, COLUMNS) as write:
        for unit in runs:
            structure = drawn[unit.space][unit.index]
            outcome = trainer.run(TrialRequest(unit.index, unit.index, structure, seed=unit.seed,
                                               fidelity=unit.fidelity, split=unit.split))  # fmt: skip
            score = outcome.metrics.get(task.metric) if outcome.metrics else None
            metrics = outcome.metrics or {}
            write({"key": unit.key, "task": unit.task, "space": unit.space, "index": unit.index,
                   "design": unit.design, "seed": unit.seed, "params": outcome.trainable_params,
                   "score": "" if score is None else score, "seconds": round(outcome.wall_time_s, 2),
                   "learning_rate": metrics.get("learning_rate", ""), "lr_rescues": metrics.get("lr_rescues", ""),
                   "structure": json.dumps(structure)})  # fmt: skip
            print(unit.key, outcome.trainable_params, score, f"{outcome.wall_time_s:.1f}s", flush=True)


def bootstrap(xs: list[float], ys: list[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% percentile interval of Spearman's rho over resampled structures (NaN when every
    resample has constant scores, e.g. proxies that all predict one class)."""
    rng = random.Random(0)
    samples = []
    for _ in range(rounds):
        picks = [rng.randrange(len(xs)) for _ in xs]
        rho = spearmanr([xs[i] for i in picks], [ys[i] for i in picks]).statistic
        if rho == rho:
            samples.append(rho)
    samples.sort()
    if not samples:
        return math.nan, math.nan
    return samples[int(0.025 * len(samples))], samples[int(0.975 * len(samples)) - 1]


def design_scores(rows: list[dict], task: str, space: str, count: int,
                  table: dict[str, Design]) -> dict[str, list[float | None]]:
    """Per design (and the reference), one score per structure index: the mean over its seeds."""
    by_design: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        if row["task"] == task and row["space"] == space and row["score"] != "":
            by_design.setdefault(row["design"], {}).setdefault(int(row["index"]), []).append(float(row["score"]))
    expected = {name: design.seeds for name, design in table.items()}
    return {
        name: [statistics.fmean(v) if len(v := per.get(i, [])) == expected[name] else None for i in range(count)]
        for name, per in by_design.items()
    }


def seconds_by_design(rows: list[dict], task: str, space: str) -> dict[str, float]:
    """Median seconds per structure of each design (summed over its seeds)."""
    totals: dict[tuple[str, str], float] = {}
    for row in rows:
        if row["task"] == task and row["space"] == space:
            key = (row["design"], row["index"])
            totals[key] = totals.get(key, 0.0) + float(row["seconds"])
    designs_seen = {design for design, _ in totals}
    return {d: statistics.median(s for (name, _), s in totals.items() if name == d) for d in designs_seen}


@dataclass(frozen=True)
class Agreement:
    """How one design's scores rank the structures of a cell against the reference's. ``regret`` is
    what picking by the design costs, in the task metric's units: the best reference score minus
    the reference score of the structure the design scored highest (ties: their mean)."""

    structures: int
    rho: float
    low: float
    high: float
    regret: float


def paired_scores(rows: list[dict], task: str, space: str, count: int,
                  table: dict[str, Design]) -> dict[str, list[tuple[float, float]]]:
    """Per design with scores, (design score, reference score) over the structures both scored.
    Where the reference was repeated (the choice cell) the reference score is the mean of its two
    seeds, except for the repeat itself, which is paired with the first seed (test-retest)."""
    scores = design_scores(rows, task, space, count, table)
    first = scores.get(REFERENCE, [])
    truth = first
    if again := scores.get(REFERENCE_AGAIN):
        truth = [None if None in (a, b) else (a + b) / 2 for a, b in zip(first, again)]
    return {
        name: [(s, t) for s, t in zip(scores[name], first if name == REFERENCE_AGAIN else truth)
               if s is not None and t is not None]
        for name in table if name != REFERENCE and name in scores
    }


def agreement(pairs: list[tuple[float, float]]) -> Agreement:
    """Spearman's rho of (design, reference) pairs, its bootstrap interval and the pick's regret
    (NaN below 4 pairs)."""
    if len(pairs) < 4:
        return Agreement(len(pairs), math.nan, math.nan, math.nan, math.nan)
    xs, ys = zip(*pairs)
    top = max(xs)
    picked = statistics.fmean(y for x, y in pairs if x == top)
    return Agreement(len(pairs), spearmanr(xs, ys).statistic, *bootstrap(list(xs), list(ys)), max(ys) - picked)


def agreements(rows: list[dict], task: str, space: str, count: int,
               table: dict[str, Design]) -> dict[str, Agreement]:
    """Per design with scores: its :func:`agreement` with the reference on one cell."""
    return {name: agreement(pairs) for name, pairs in paired_scores(rows, task, space, count, table).items()}


def pooled_agreements(rows: list[dict], task: str, spaces: dict[str, int],
                      table: dict[str, Design]) -> dict[str, Agreement]:
    """Per design that trained in every space: its :func:`agreement` over all the task's structures,
    which span more of the quality range than one space's do."""
    cells = [paired_scores(rows, task, space, count, table) for space, count in spaces.items()]
    common = set.intersection(*(set(cell) for cell in cells)) - {REFERENCE_AGAIN}
    return {name: agreement([pair for cell in cells for pair in cell[name]]) for name in table if name in common}


def reference_noise(rows: list[dict], task: Task, space: str, count: int, table: dict[str, Design]) -> str | None:
    """A line on how far one reference seed is from another, where the reference was repeated:
    the span of its dev scores, the seeds' differences, and (accuracy) the dev split's binomial
    standard error at their mean; None where fewer than 2 structures have both seeds."""
    scores = design_scores(rows, task.name, space, count, table)
    pairs = [(a, b) for a, b in zip(scores.get(REFERENCE, []), scores.get(REFERENCE_AGAIN) or [])
             if a is not None and b is not None]
    if len(pairs) < 2:
        return None
    values = [value for pair in pairs for value in pair]
    gaps = [abs(a - b) for a, b in pairs]
    line = (f"Reference noise over the {len(pairs)} structures with both seeds: dev {task.metric} spans "
            f"{min(values):.3f} .. {max(values):.3f}; the seeds differ by {statistics.median(gaps):.3f} "
            f"(median; largest {max(gaps):.3f})")
    if task.metric == "accuracy":
        mean = statistics.fmean(values)
        line += f"; dev's binomial standard error at {mean:.3f} is {math.sqrt(mean * (1 - mean) / len(task.dev)):.3f}"
    return line + ".\n"


def one_class_scores(task: Task, split: str) -> list[float]:
    """What predicting each class everywhere scores on ``split`` (search or dev), in the task's
    metric: a run at one of these learned nothing that can rank. Empty unless classification."""
    labels = getattr(task, split).labels
    if task.kind != TaskKind.CLASSIFICATION:
        return []
    return [evaluate_predictions(task.kind, [label] * len(labels), labels)[task.metric]
            for label in range(task.num_labels)]


def at_one_class(score: float, levels: list[float]) -> bool:
    return any(math.isclose(score, level, abs_tol=1e-9) for level in levels)


def one_class_line(rows: list[dict], task: Task, spaces: dict[str, int], table: dict[str, Design]) -> str | None:
    """A line counting, per design with scores over ``spaces``, the structures it scored exactly at a
    single class's level (:func:`one_class_scores` on the split it scored): ties that no ranking can
    order. Per proxy design it adds Spearman's rho over the structures it scored off that level, which
    tells a proxy that collapses apart from one whose learned scores are noise. None when no score
    sits there."""
    levels = {split: one_class_scores(task, split) for split in ("search", "dev")}
    rows = [row for row in rows if row["design"] in table]
    counts: dict[str, tuple[int, int]] = {}
    learned: dict[str, list[tuple[float, float]]] = {}
    for space, count in spaces.items():
        for name, scores in design_scores(rows, task.name, space, count, table).items():
            found = [s for s in scores if s is not None]
            hits = sum(at_one_class(s, levels["dev" if name in REFERENCES else "search"]) for s in found)
            seen, total = counts.get(name, (0, 0))
            counts[name] = (seen + hits, total + len(found))
        for name, pairs in paired_scores(rows, task.name, space, count, table).items():
            if name not in REFERENCES:
                learned.setdefault(name, []).extend(p for p in pairs if not at_one_class(p[0], levels["search"]))
    if not any(hits for hits, _ in counts.values()):
        return None
    shown = ", ".join(f"{name} {hits} of {total}" for name, (hits, total) in counts.items())
    levels_shown = "; ".join(f"{split} {', '.join(f'{v:.3f}' for v in values)}" for split, values in levels.items())
    off_level = ", ".join(f"{name} {rho:.3f} over {len(pairs)}" if (rho := agreement(pairs).rho) == rho
                          else f"{name} - over {len(pairs)}" for name, pairs in learned.items())
    return (f"At a single class's {task.metric} (the run predicts one class everywhere; {levels_shown}): "
            f"{shown}. Spearman rho over the structures a design scored off that level: {off_level}.\n")


def choose(rows: list[dict], plan: dict[str, dict[str, Design]], count: int) -> str | None:
    """The design with the highest rho (against both reference seeds) on the choice cell once
    every design and both references there scored all its ``count`` structures (NaN, from constant
    scores, never wins); None before."""
    task, space = CHOICE
    table = plan[task]
    found = agreements(rows, task, space, count, table)
    complete = {name: a.rho for name, a in found.items()
                if name not in REFERENCES and a.structures == count and a.rho == a.rho}
    if len(complete) < len(table) - len(REFERENCES):
        return None
    return max(complete, key=complete.get)


def agreement_table(found: dict[str, Agreement], shown: list[str | None], seconds: dict[str, float]) -> list[str]:
    """Markdown rows of the ``shown`` designs' agreements (a design without scores shows dashes)."""
    label = {REFERENCE_AGAIN: f"{REFERENCE_AGAIN} (test-retest, against the first seed)"}
    lines = ["| design | structures | Spearman rho | 95% bootstrap | pick's regret | median s | s vs default |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for name in filter(None, shown):
        a = found.get(name, Agreement(0, math.nan, math.nan, math.nan, math.nan))
        if a.rho != a.rho:
            rho = "constant scores" if a.structures >= 4 else "-"
            lines.append(f"| {label.get(name, name)} | {a.structures} | {rho} | - | - | - | - |")
            continue
        cost = "- | -"
        if name in seconds and seconds.get("default"):
            cost = f"{seconds[name]:.1f} | {seconds[name] / seconds['default']:.2f}"
        lines.append(f"| {label.get(name, name)} | {a.structures} | {a.rho:.3f} | {a.low:.2f} .. {a.high:.2f} | "
                     f"{a.regret:.3f} | {cost} |")
    return lines + [""]


def report(args: argparse.Namespace, spaces: dict[str, int], tasks: dict[str, Task]) -> str:
    plan = plans(tasks)
    rows = current_rows(args, spaces, plan)
    chosen = choose(rows, plan, spaces[CHOICE[1]])
    lines = [
        "# Proxy designs: which one ranks structures like real training?\n",
        f"Command: `{args.command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, device {args.device or 'auto'}, "
        f"{args.threads} torch thread(s) per process; load average {os.getloadavg()[0]:.1f}; "
        f"written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.  ",
        f"Structures per task: {', '.join(f'{n} from `{s}`' for s, n in spaces.items())} (Sobol seed {args.seed}). "
        "Proxies score the search split carved from train; the reference trains 4x the default's steps "
        "and examples and scores dev.\n",
        f"The design is chosen on {CHOICE[0]} / `{CHOICE[1]}` only, where every design trains; every other "
        "table is the verdict, where only `default` and the chosen design train. On the choice cell the "
        f"reference also trains at a second seed (`{REFERENCE_AGAIN}`): the designs are ranked against the "
        "mean of the two seeds, and the repeat's rho against the first seed is the test-retest agreement "
        "of one reference seed, the most a proxy can reach against it. The verdict cells have one seed. "
        "Pick's regret: the best reference score minus the reference score of the structure the design "
        "scored highest, in the metric's units. The pooled tables rank both spaces' structures together; "
        "the targets are read on them.\n",
    ]
    for task in TASKS:
        lines.append(f"Runs on {task} (search split {len(tasks[task].search)} examples):\n")
        lines += [f"- {name}: {design.seeds} x {design.fidelity}" for name, design in plan[task].items()]
        lines.append("")
        for space, count in spaces.items():
            shown = [n for n in plan[task] if n != REFERENCE and ((task, space) == CHOICE or n in ("default", chosen))]
            lines += [f"## {task}, `{space}` ({count} structures)\n"]
            lines += agreement_table(agreements(rows, task, space, count, plan[task]), shown,
                                     seconds_by_design(rows, task, space))
            if noise := reference_noise(rows, tasks[task], space, count, plan[task]):
                lines.append(noise)
            if constant := one_class_line(rows, tasks[task], {space: count}, plan[task]):
                lines.append(constant)
        lines += [f"## {task}, all {sum(spaces.values())} structures pooled\n"]
        lines += agreement_table(pooled_agreements(rows, task, spaces, plan[task]),
                                 list(dict.fromkeys(["default", chosen])), {})
        pooled_designs = {n: d for n, d in plan[task].items() if n in (REFERENCE, "default", chosen)}
        if constant := one_class_line(rows, tasks[task], spaces, pooled_designs):
            lines.append(constant)
    lines.append(f"**Chosen design (highest rho on {CHOICE[0]} / `{CHOICE[1]}`): {chosen or 'not yet: incomplete'}.**")
    lines.append("Targets (issue 12, on the pooled tables): Spearman >= 0.7 on SST-2 with the interval's lower "
                 "bound >= 0.4; >= 0.6 on MRPC.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lora", type=int, default=SPACES["lora"], help="structures from the lora space")
    parser.add_argument("--autopeft", type=int, default=SPACES["autopeft"], help="structures from the autopeft space")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every run's steps (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--results", type=Path, default=Path("bench/results/proxy_study.csv"))
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th unit from the I-th")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the rows measured so far, training nothing")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.command = "python -m bench.proxy_study " + " ".join(
        f"--{name} {value}" for name, value in (("lora", args.lora), ("autopeft", args.autopeft), ("seed", args.seed),
                                               ("threads", args.threads), ("steps-scale", args.steps_scale))
    ) + f" --out {args.out}"
    torch.set_num_threads(args.threads)
    spaces = {"lora": args.lora, "autopeft": args.autopeft}
    tasks = {name: study_task(name) for name in TASKS}
    started = time.perf_counter()
    if not args.report_only:
        measure(args, spaces, tasks, Shard.parse(args.shard))
    plan = plans(tasks)
    rows = current_rows(args, spaces, plan)
    chosen = choose(rows, plan, spaces[CHOICE[1]])
    needed = [u for u in units(spaces, plan, args.steps_scale) if u.needed(chosen)]
    verdict = sum(spaces.values()) * len(TASKS) - spaces[CHOICE[1]]
    later = "" if chosen else f", plus the chosen design's runs on {verdict} verdict structures"
    print(f"{len(rows)} of {len(needed)} needed runs measured{later} "
          f"({time.perf_counter() - started:.0f} s this process)")
    args.out.write_text(report(args, spaces, tasks))


if __name__ == "__main__":
    main()
