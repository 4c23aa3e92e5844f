"""Do cheap proxies rank configurations like longer fine-tunes? Spearman on real SST-2 runs.

Draws ``--configs`` structures from a shipped space (scrambled Sobol, seeded), trains each at the
proxy fidelity and at a higher one on MiniLM / SST-2 (same seed, same process), and reports the
Spearman rank correlation of dev accuracy between the two, with a bootstrap interval. Results
are appended to a CSV as they come, so an interrupted run resumes. ``--shard I/N`` measures every
N-th configuration (one process per core, ``--threads 1``); the last shard to finish, or a run
without ``--shard``, writes the report from all shards' rows.

    python -m bench.fidelity --configs 20 --threads 1 --shard 0/2 --out docs/fidelity.md &
    python -m bench.fidelity --configs 20 --threads 1 --shard 1/2 --out docs/fidelity.md
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from datetime import date
from pathlib import Path

import torch
from scipy.stats import spearmanr

from autopeft.models import resolve_model
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.proxy_study import structures
from bench.shards import Shard, read_rows, row_writer

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue" / "SST-2"
PROXY = Fidelity(train_examples=2400, steps=150, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=872)
# Twice the proxy's steps and examples.
HIGH = Fidelity(train_examples=4800, steps=300, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=872)
COLUMNS = ["index", "structure", "params", "proxy", "high", "proxy_s", "high_s"]


def configurations(space_name: str, count: int, seed: int) -> list[dict]:
    return structures(load_task(str(SST2)), space_name, count, seed)


def measure(structures: list[dict], results: Path, threads: int, shard: Shard) -> None:
    done = read_rows(results, "index")
    trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), with_search_split(load_task(str(SST2))), threads=threads))
    with row_writer(shard.path(results), COLUMNS) as write:
        for index, structure in enumerate(structures):
            if str(index) in done or not shard.owns(index):
                continue
            proxy = trainer.run(TrialRequest(index, index, structure, seed=index, fidelity=PROXY))
            high = trainer.run(TrialRequest(index, index, structure, seed=index, fidelity=HIGH))
            row = {"index": index, "structure": json.dumps(structure), "params": proxy.trainable_params,
                   "proxy": proxy.metrics.get("accuracy"), "high": high.metrics.get("accuracy"),
                   "proxy_s": round(proxy.wall_time_s, 1), "high_s": round(high.wall_time_s, 1)}
            write(row)
            print(row["index"], row["params"], row["proxy"], row["high"], flush=True)


def bootstrap(proxy: list[float], high: list[float], rounds: int = 2000) -> tuple[float, float]:
    rng = random.Random(0)
    samples = []
    for _ in range(rounds):
        picks = [rng.randrange(len(proxy)) for _ in proxy]
        samples.append(spearmanr([proxy[i] for i in picks], [high[i] for i in picks]).statistic)
    samples = sorted(s for s in samples if s == s)
    return samples[int(0.025 * len(samples))], samples[int(0.975 * len(samples))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--space", default="lora")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path("bench/results/fidelity.csv"))
    parser.add_argument("--shard", default="0/1", help="I/N: measure every N-th configuration from the I-th")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    measure(configurations(args.space, args.configs, args.seed), args.results, args.threads, Shard.parse(args.shard))
    measured = read_rows(args.results, "index")
    if len(measured) < args.configs:
        print(f"{len(measured)} of {args.configs} configurations measured; the last shard writes the report")
        return
    rows = [measured[str(i)] for i in range(args.configs)]
    proxy = [float(r["proxy"]) for r in rows]
    high = [float(r["high"]) for r in rows]
    rho = spearmanr(proxy, high)
    low, up = bootstrap(proxy, high)
    table = "\n".join(
        f"| {r['index']} | {int(r['params']):,} | {float(r['proxy']):.4f} | {float(r['high']):.4f} |" for r in rows
    )
    args.out.write_text(
        "# Proxy fidelity against a longer fine-tune\n\n"
        f"Command: `python -m bench.fidelity --configs {args.configs} --space {args.space} --threads {args.threads} "
        f"--out {args.out}` (run as `--shard 0/2` and `--shard 1/2` side by side when threads = 1)  \n"
        f"Machine: {platform.machine()}, 2 cores ({args.threads} thread(s) per process), no GPU; date {date.today()}.  \n"
        f"Proxy: {PROXY}.  \nHigh: {HIGH}.  \n"
        f"{len(rows)} configurations drawn by scrambled Sobol (seed {args.seed}) from `{args.space}`, one seed each "
        "(the same seed at both fidelities); MiniLM on SST-2, dev accuracy on all 872 dev sentences.\n\n"
        f"**Spearman rank correlation proxy vs high: {rho.statistic:.3f}** (p = {rho.pvalue:.3g}; "
        f"95% bootstrap interval {low:.3f} .. {up:.3f}).\n\n"
        "| config | trainable | proxy accuracy | high accuracy |\n|---:|---:|---:|---:|\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
