"""Proxies that end at the constant prediction, with one fixed learning rate vs with LR rescue.

For structures of the recorded SST-2 lookup table (the largest ones, whose 1e-3 runs collapse, and
the smallest ones, which barely move in 150 steps) each policy trains the same proxy, same seed:

- ``fixed``: AdamW at the fidelity's rate whatever happens (``lr_rescues=0``);
- ``rescue``: a run whose training loss stays at the constant-prediction level (halfway or at the
  end) or turns non-finite restarts at 0.3x, then 3x the rate (the default, ``lr_rescues=2``).

Both score on the task's search split. A proxy "ends at the majority class" when it predicts one
class for every scored example. Run ``--shard 0/2`` and ``--shard 1/2`` side by side; the shard that
finishes last writes the report.

    python -m bench.lr_rescue --shard 0/2 & python -m bench.lr_rescue --shard 1/2
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
from dataclasses import replace
from datetime import date
from pathlib import Path

from autopeft.models import resolve_model
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import TrialRequest
from autopeft.worker.proxy import ProxyTrainer, WorkerSpec
from bench.optimizers.proxy_setup import FIDELITY, SST2, grouped_space
from bench.shards import Shard, read_rows, row_writer

TABLE = Path(__file__).parent / "optimizers" / "results" / "minilm_sst2_table.csv"
RESULTS = Path(__file__).parent / "results" / "lr_rescue.csv"
POLICIES = {"fixed": 0, "rescue": 2}
TASKS = {"sst2": SST2, "demo": "demo"}
COLUMNS = ("key", "task", "config", "group", "policy", "trainable_params", "accuracy", "predicted_classes",
           "learning_rate", "lr_rescues", "train_loss_first", "train_loss_last", "wall_time_s", "state", "error")


def chosen_configs(per_group: int) -> list[tuple[str, str]]:
    """(group, config id): the ``per_group`` largest and smallest structures of the lookup table."""
    with TABLE.open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: -int(r["trainable_params"]))
    return [("largest", r["config"]) for r in rows[:per_group]] + [("smallest", r["config"]) for r in rows[-per_group:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-group", type=int, default=6)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--out", type=Path, default=Path("docs/lr_rescue.md"))
    args = parser.parse_args()
    shard = Shard.parse(args.shard)
    space = grouped_space()
    points = {space.config_id(p): p for p in space.all_points()}
    runs = [(t, g, c, p) for t in args.tasks for g, c in chosen_configs(args.per_group) for p in POLICIES]
    done = read_rows(RESULTS, "key")
    with row_writer(shard.path(RESULTS), COLUMNS) as write:
        for task_name in args.tasks:
            mine = [r for i, r in enumerate(runs) if shard.owns(i) and r[0] == task_name]
            todo = [r for r in mine if "|".join(r) not in done]
            if not todo:
                continue
            task = with_search_split(load_task(TASKS[task_name]))
            trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=1), device="cpu")
            fidelity = replace(FIDELITY, train_examples=min(FIDELITY.train_examples, len(task.train)))
            for number, (_, group, config, policy) in enumerate(todo):
                point = points[config]
                request = TrialRequest(number, number, space.decode(point).to_json(), seed=0,
                                       fidelity=replace(fidelity, lr_rescues=POLICIES[policy]))
                outcome = trainer.run(request)
                metrics = outcome.metrics
                write({
                    "key": "|".join((task_name, group, config, policy)), "task": task_name, "config": config,
                    "group": group, "policy": policy, "trainable_params": space.trainable_params(point),
                    **{k: metrics.get(k) for k in ("accuracy", "predicted_classes", "learning_rate", "lr_rescues",
                                                   "train_loss_first", "train_loss_last")},
                    "wall_time_s": outcome.wall_time_s, "state": outcome.state, "error": outcome.error,
                })
                print(f"{task_name} {config:28s} {policy:6s} acc={metrics.get('accuracy')} "
                      f"classes={metrics.get('predicted_classes')} lr={metrics.get('learning_rate')}", flush=True)
    rows = read_rows(RESULTS, "key")
    if all("|".join(r) in rows for r in runs):
        args.out.write_text(report(rows, args))
        print(f"wrote {args.out}")


def report(rows: dict[str, dict[str, str]], args) -> str:
    lines = [
        "# Learning-rate rescue: proxies stuck at the constant prediction, before and after",
        "",
        f"Command: `python -m bench.lr_rescue --per-group {args.per_group} --tasks {' '.join(args.tasks)}` "
        "(as `--shard 0/2` + `--shard 1/2`).  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, 1 torch thread per process, no GPU; "
        f"load average at the end {os.getloadavg()[0]:.1f}; date {date.today()}.  ",
        f"Proxy: MiniLM, {FIDELITY.steps} steps, batch {FIDELITY.batch_size}, length {FIDELITY.max_length}, "
        f"AdamW {FIDELITY.learning_rate:g}, up to {FIDELITY.train_examples} training examples, "
        f"{FIDELITY.eval_examples} scored examples of the search split, seed 0. Structures: the "
        f"{args.per_group} largest and {args.per_group} smallest of the recorded SST-2 lookup table. Raw rows: "
        "`bench/results/lr_rescue*.csv`.",
        "",
        "| task | structures | policy | at one class | median accuracy | mean accuracy | restarted | mean wall s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for task in args.tasks:
        for group in ("largest", "smallest"):
            for policy in POLICIES:
                chosen = [r for r in rows.values() if (r["task"], r["group"], r["policy"]) == (task, group, policy)]
                ok = [r for r in chosen if r["state"] == "completed"]
                accuracy = [float(r["accuracy"]) for r in ok]
                stuck = sum(float(r["predicted_classes"]) <= 1 for r in ok) + len(chosen) - len(ok)
                restarted = sum(float(r["lr_rescues"] or 0) > 0 for r in ok)
                lines.append(
                    f"| {task} | {group} {len(chosen)} | {policy} | {stuck} | {statistics.median(accuracy):.4f} | "
                    f"{statistics.fmean(accuracy):.4f} | {restarted} | "
                    f"{statistics.fmean(float(r['wall_time_s']) for r in chosen):.1f} |"
                )
    lines += ["", "Per structure (accuracy fixed -> rescue, rate kept by rescue):", ""]
    for task in args.tasks:
        for r in sorted((r for r in rows.values() if r["task"] == task and r["policy"] == "rescue"),
                        key=lambda r: r["config"]):
            fixed = rows["|".join((task, r["group"], r["config"], "fixed"))]
            lines.append(f"- {task} `{r['config']}`: {float(fixed['accuracy'] or 0):.4f} "
                         f"({fixed['predicted_classes']} classes) -> {float(r['accuracy'] or 0):.4f} "
                         f"({r['predicted_classes']} classes) at lr {float(r['learning_rate']):g}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
