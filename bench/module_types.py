"""Every module type, alone and as the AutoPEFT union, or every peft method, trained on real weights.

For each structure: dev loss with freshly initialised modules (step 0), then dev loss (and the
task metric) after a short proxy fine-tune, with trainable parameters, time, and step time and
peak memory as ratios to LoRA r8 on q,v in the same run. Runs MiniLM on SST-2 and
SmolLM2-135M-Instruct on the Alpaca demo set; writes a markdown table.

    python -m bench.module_types --out docs/module_types.md [--models minilm smollm2]
    python -m bench.module_types --set methods --out docs/methods.md [--steps N]
    python -m bench.module_types --set sparse --out docs/sparse_types.md

``--set methods`` runs every method of ``search_spaces/methods.yaml`` (at one mid-range size,
on q and v of every layer; LN tuning on every layer's norms) and the LoRA inits and KaSA.
``--set sparse`` runs sparse updates by every rule (peft's SHiRA layers and autopeft's sparse
deltas), DSEE and a LISA schedule, each beside LoRA r8 q,v at the same count.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

from autopeft.models import resolve_model
from autopeft.space.layout import ModelLayout
from autopeft.allocation.sparse_rankings import measure_lottery_ranking, measure_sensitivity_ranking
from autopeft.space.structure import LayerSchedule, LoraModules, SparseDeltas, Structure, TunerModules
from autopeft.space.tuners import NORMS
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.data import SHARED_DATA as SHARED

SETUPS = {
    "minilm": dict(
        task=SHARED / "glue" / "SST-2",
        fidelity=Fidelity(train_examples=2400, steps=150, batch_size=16, max_length=64, learning_rate=1e-3,
                          eval_examples=872),
    ),
    "smollm2": dict(
        task=SHARED / "instruct" / "alpaca_en_demo.json",
        fidelity=Fidelity(train_examples=899, steps=12, batch_size=4, max_length=128, learning_rate=5e-4,
                          eval_examples=48),
    ),
}
# Prefix vectors start near zero and need a larger step than low-rank updates, so they train at
# 10x the shared rate. (IA3 did too, at 10x, until the proxy gave every module kind its own factor
# of the rate, autopeft.space.tuners.rate_factor.)
LEARNING_RATE_SCALE = {"prefix 8": 10.0}


def structures(layout: ModelLayout) -> dict[str, Structure]:
    """One structure per module type on every layer, and the AutoPEFT union (SA + PA + prefix)."""
    layers = range(layout.num_layers)
    attention = ("q", "v")
    ffn_roles = [r for r in ("k", "v", "down") if r in layout.layers[0].matrices]
    return {
        "lora r8 q,v": Structure(lora=LoraModules({(i, r): 8 for i in layers for r in attention})),
        "dora r8 q,v": Structure(lora=LoraModules({(i, r): 8 for i in layers for r in attention}, variant="dora")),
        "rslora r8 q,v": Structure(lora=LoraModules({(i, r): 8 for i in layers for r in attention}, variant="rslora")),
        "ia3 k,v,down": Structure(ia3=frozenset((i, r) for i in layers for r in ffn_roles)),
        "serial adapter 16": Structure(serial_adapter={i: 16 for i in layers}),
        "parallel adapter 16": Structure(parallel_adapter={i: 16 for i in layers}),
        "prefix 8": Structure(prefix={i: 8 for i in layers}),
        "AutoPEFT union (SA 16 + PA 16 + prefix 8)": Structure(
            serial_adapter={i: 16 for i in layers}, parallel_adapter={i: 16 for i in layers},
            prefix={i: 8 for i in layers},
        ),
    }


# One mid-range size per method, for a side-by-side run (the space searches several).
METHOD_SIZES = {
    "loha": 8, "lokr": 8, "vera": 256, "randlora": 32, "oft": 32, "boft": 8, "hra": 8, "fourierft": 1024,
    "waveft": 1024, "c3a": 64, "miss": 32, "shira": 32, "delora": 8, "hira": 8, "gralora": 8,
    "ln_tuning": 0, "bias": 0,
}  # fmt: skip
REFERENCE = "lora r8 q,v"


def method_structures(layout: ModelLayout) -> dict[str, Structure]:
    """LoRA r8 q,v, its inits and KaSA, and every other method of the methods space on q,v."""
    qv = {(i, r) for i in range(layout.num_layers) for r in ("q", "v") if layout.matrix(i, r)}
    found = {
        REFERENCE: Structure(lora=LoraModules(dict.fromkeys(qv, 8))),
        **{f"lora r8 q,v ({init})": Structure(lora=LoraModules(dict.fromkeys(qv, 8), init=init))
           for init in ("gaussian", "orthogonal", "pissa", "olora")},
        "kasa r8 q,v": Structure(lora=LoraModules(dict.fromkeys(qv, 8), variant="kasa")),
    }  # fmt: skip
    for method, size in METHOD_SIZES.items():
        if method == "bias" and not all(layout.matrix(*place).bias for place in qv):
            continue  # LLaMA's projections have no bias; the methods space drops bias there too
        places = {(i, NORMS) for i in range(layout.num_layers)} if method == "ln_tuning" else qv
        label = f"{method} {size} q,v" if size else f"{method} q,v" if method != "ln_tuning" else "ln_tuning"
        found[label] = Structure(tuner=TunerModules(method, size, frozenset(places)))
    return found


SPARSE_SIZE = 8


def sparse_structures(layout: ModelLayout) -> dict[str, Structure]:
    """LoRA r8 q,v; sparse updates of as many entries (8 * (in + out) per matrix) by every rule, as
    SHiRA tuners and as sparse deltas; DSEE at the same count; LoRA r8 q,v under a LISA schedule."""
    qv = {(i, r) for i in range(layout.num_layers) for r in ("q", "v") if layout.matrix(i, r)}
    entries = {p: SPARSE_SIZE * (layout.matrix(*p).in_features + layout.matrix(*p).out_features) for p in qv}
    lora = LoraModules(dict.fromkeys(qv, SPARSE_SIZE))
    return {
        REFERENCE: Structure(lora=lora),
        **{f"sparse_{rule} {SPARSE_SIZE} q,v (SHiRA)": Structure(tuner=TunerModules(f"sparse_{rule}", SPARSE_SIZE,
                                                                                   frozenset(qv)))
           for rule in ("random", "magnitude", "principal", "sensitivity", "lottery")},
        **{f"sparse delta ({rule}) q,v": Structure(sparse=SparseDeltas(entries, rule))
           for rule in ("sensitivity", "lottery", "residual")},
        f"dsee r{SPARSE_SIZE - 1} + residual q,v": Structure(
            lora=LoraModules(dict.fromkeys(qv, SPARSE_SIZE - 1)),
            sparse=SparseDeltas({p: layout.matrix(*p).in_features + layout.matrix(*p).out_features for p in qv},
                                "residual")),
        f"{REFERENCE} + LISA (2 layers, K 4)": Structure(lora=lora, schedule=LayerSchedule("lisa", active=2, period=4)),
    }  # fmt: skip


STRUCTURE_SETS = {"module_types": structures, "methods": method_structures, "sparse": sparse_structures}


def with_rankings(trainer: ProxyTrainer, fidelity: Fidelity) -> ProxyTrainer:
    """``trainer`` holding the sensitivity and lottery rankings at ``SPARSE_SIZE``, measured on its
    training subset with small settings (4 batches of 4; a 16-step warm-up), so SmolLM2 fits in minutes."""
    train, _ = trainer.data(fidelity)
    rankings = {
        "sensitivity": measure_sensitivity_ranking(trainer.model, trainer.layout, train, size=SPARSE_SIZE,
                                                   batches=4, batch_size=4),
        "lottery": measure_lottery_ranking(trainer.model, trainer.layout, train, size=SPARSE_SIZE, steps=16,
                                           batch_size=4),
    }
    trainer.spec = replace(trainer.spec, rankings=rankings)
    return trainer


def run(model_name: str, threads: int, structure_set: str, steps: int | None) -> list[str]:
    setup = SETUPS[model_name]
    task = with_search_split(load_task(str(setup["task"])))
    trainer = ProxyTrainer(WorkerSpec(resolve_model(model_name), task, threads=threads))
    if structure_set == "sparse":
        trainer = with_rankings(trainer, setup_fidelity(model_name, steps))
    rows, reference = [], None
    for number, (name, structure) in enumerate(STRUCTURE_SETS[structure_set](trainer.layout).items()):
        fidelity = setup_fidelity(model_name, steps)
        fidelity = replace(fidelity, learning_rate=fidelity.learning_rate * LEARNING_RATE_SCALE.get(name, 1.0))
        request = TrialRequest(number, number, structure.to_json(), seed=0, fidelity=fidelity)
        before = trainer.score_untrained(request)
        started = time.perf_counter()
        outcome = trainer.run(request)
        if outcome.error:
            rows.append(f"| {model_name} | {name} | failed: {outcome.error} |||||")
            continue
        after = outcome.metrics
        metric = "accuracy" if "accuracy" in after else "perplexity"
        reference = reference or outcome  # the first structure of every set is LoRA r8 q,v
        rows.append(
            f"| {model_name} | {name} | {outcome.trainable_params:,} | {before['loss']:.4f} | {after['loss']:.4f} "
            f"| {before[metric]:.4f} → {after[metric]:.4f} ({metric}) | {time.perf_counter() - started:.0f} s "
            f"| {outcome.step_time_s / reference.step_time_s:.2f} "
            f"| {outcome.peak_memory_bytes / reference.peak_memory_bytes:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def setup_fidelity(model_name: str, steps: int | None) -> Fidelity:
    fidelity = SETUPS[model_name]["fidelity"]
    return fidelity if steps is None else replace(fidelity, steps=steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--set", dest="structure_set", choices=list(STRUCTURE_SETS), default="module_types")
    parser.add_argument("--steps", type=int, default=None, help="override every model's proxy steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for model in args.models for row in run(model, args.threads, args.structure_set, args.steps)]
    fidelities = "; ".join(f"{m}: {setup_fidelity(m, args.steps)}" for m in args.models)
    title = {"module_types": "Every module type", "methods": "Every peft method",
             "sparse": "Sparse updates, DSEE and LISA"}[args.structure_set]
    command = (
        f"python -m bench.module_types --set {args.structure_set} --threads {args.threads} --out {args.out} "
        f"--models {' '.join(args.models)}" + (f" --steps {args.steps}" if args.steps else "")
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    args.out.write_text(
        f"# {title} on real weights\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, no GPU; "
        f"load average at the end {load}; date {date.today()}.  \nFidelity: {fidelities}.\n\n"
        "Dev loss at step 0 (fresh modules) and after the proxy fine-tune; seed 0, one run each. "
        f"Learning-rate multipliers: {LEARNING_RATE_SCALE}. Step time and peak memory are ratios to "
        f"{REFERENCE} on the same model in the same run; on CPU the memory is the process's peak RSS during "
        "the trial, which keeps what earlier trials allocated, so a ratio below 1 cannot show.\n\n"
        "| model | structure | trainable | dev loss step 0 | dev loss after | metric | time | step time | peak memory |\n"
        "|---|---|---:|---:|---:|---|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
