"""Does LoRA's initialisation matter? Every init the spaces offer, on one structure, over seeds.

LoRA r8 on q,v of every MiniLM layer, trained by the proxy on SST-2 with each init (peft's
default, gaussian, orthogonal, PiSSA, OLoRA, EVA, CorDA) and several training seeds, scored once
on the dev split (nothing is chosen here, so nothing is reported on data a choice saw). EVA's
vectors and CorDA's triplets are measured once, on the proxy's training subset, as a search
measures them. Writes a markdown table
with mean and sd per init and the paired difference to the default init (95% t-interval), and
the raw rows as CSV.

    python -m bench.lora_inits --threads 1 --seeds 0 1 2 [--inits default eva] --out docs/lora_inits.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from autopeft.allocation.corda import measure_corda
from autopeft.allocation.eva import measure_eva
from autopeft.models import resolve_model
from autopeft.space.structure import LORA_INITS, LoraModules, Structure
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.module_types import SETUPS
from bench.reporting import machine_line, paired_interval, write_rows

RANK = 8
RAW = Path(__file__).parent / "results" / "lora_inits.csv"


def trainer_with_measured_inits(threads: int) -> ProxyTrainer:
    """The proxy trainer on MiniLM / SST-2, holding EVA's and CorDA's measurements on its training subset."""
    setup = SETUPS["minilm"]
    task = with_search_split(load_task(str(setup["task"])))
    trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=threads))
    train, _ = trainer.data(setup["fidelity"])
    inits = {"eva": measure_eva(trainer.model, trainer.layout, train, rank=RANK, seed=0),
             "corda": measure_corda(trainer.model, trainer.layout, train, rank=RANK, seed=0)}
    for init, measured in inits.items():
        print(f"{init} measured in {measured.seconds:.0f} s", flush=True)
    trainer.spec = replace(trainer.spec, inits=inits)
    return trainer


def dev_accuracy(trainer: ProxyTrainer, init: str, seed: int) -> dict[str, float]:
    places = {(i, r) for i in range(trainer.layout.num_layers) for r in ("q", "v")}
    structure = Structure(lora=LoraModules(dict.fromkeys(places, RANK), init=init))
    request = TrialRequest(seed, seed, structure.to_json(), seed=seed, fidelity=SETUPS["minilm"]["fidelity"],
                           split="dev")
    started = time.perf_counter()
    outcome = trainer.run(request)
    if outcome.error:
        raise RuntimeError(f"{init} seed {seed}: {outcome.error}")
    return {"init": init, "seed": seed, "accuracy": outcome.metrics["accuracy"], "loss": outcome.metrics["loss"],
            "lr_rescues": outcome.metrics["lr_rescues"], "trainable": outcome.trainable_params,
            "seconds": round(time.perf_counter() - started, 1)}


def table(rows: list[dict], inits: list[str]) -> str:
    by_init = {init: {r["seed"]: r for r in rows if r["init"] == init} for init in inits}
    lines = ["| init | trainable | dev accuracy mean | sd | n | minus default (paired, 95% CI) | rescued runs |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for init, runs in by_init.items():
        accuracies = [r["accuracy"] for r in runs.values()]
        sd = f"{statistics.stdev(accuracies):.4f}" if len(accuracies) > 1 else "n/a"
        diffs = [runs[s]["accuracy"] - by_init["default"][s]["accuracy"] for s in runs]
        lines.append(
            f"| {init} | {next(iter(runs.values()))['trainable']:,} | {statistics.mean(accuracies):.4f} | {sd} "
            f"| {len(accuracies)} | {'—' if init == 'default' else paired_interval(diffs)} "
            f"| {sum(r['lr_rescues'] > 0 for r in runs.values())} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--inits", nargs="+", choices=LORA_INITS, default=list(LORA_INITS),
                        help="the inits to compare (default first: the differences are to it)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.inits[0] != "default":
        parser.error("--inits must start with default (the differences are to it)")
    torch.set_num_threads(args.threads)
    trainer = trainer_with_measured_inits(args.threads)
    rows = []
    for seed in args.seeds:
        for init in args.inits:
            rows.append(dev_accuracy(trainer, init, seed))
            print(rows[-1], flush=True)
    write_rows(rows, RAW)
    command = (f"python -m bench.lora_inits --threads {args.threads} --seeds {' '.join(map(str, args.seeds))} "
               f"--inits {' '.join(args.inits)} --out {args.out}")
    args.out.write_text(
        "# LoRA initialisations on real weights\n\n"
        f"Command: `{command}`  \n"
        f"{machine_line(args.threads)}  \n"
        f"Structure: LoRA r{RANK} on q and v of every MiniLM layer. Proxy: {SETUPS['minilm']['fidelity']}; "
        "every run scored once on SST-2's dev split (872 examples). EVA and CorDA measured once on the proxy's "
        f"training subset ({trainer.spec.inits['eva'].seconds:.0f} s and {trainer.spec.inits['corda'].seconds:.0f} s). "
        "Raw rows: `bench/results/lora_inits.csv`.\n\n"
        + table(rows, args.inits) + "\n"
    )


if __name__ == "__main__":
    main()
