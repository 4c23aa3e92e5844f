"""Every module type, alone and as the AutoPEFT union, trained on real weights.

For each structure: dev loss with freshly initialised modules (step 0), then dev loss (and the
task metric) after a short proxy fine-tune, with trainable parameters and time. Runs MiniLM on
SST-2 and SmolLM2-135M-Instruct on the Alpaca demo set; writes a markdown table.

    python -m bench.module_types --out docs/module_types.md [--models minilm smollm2]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

from autopeft.models import resolve_model
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import LoraModules, Structure
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

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
# IA3 rescales activations and prefix vectors start near zero: both need a larger step than
# low-rank updates (peft's IA3 examples use ~1e-2), so they train at 10x the shared rate.
LEARNING_RATE_SCALE = {"ia3 k,v,down": 10.0, "prefix 8": 10.0}


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


def run(model_name: str, threads: int) -> list[str]:
    setup = SETUPS[model_name]
    task = with_search_split(load_task(str(setup["task"])))
    trainer = ProxyTrainer(WorkerSpec(resolve_model(model_name), task, threads=threads))
    rows = []
    for number, (name, structure) in enumerate(structures(trainer.layout).items()):
        fidelity = setup["fidelity"]
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
        rows.append(
            f"| {model_name} | {name} | {outcome.trainable_params:,} | {before['loss']:.4f} | {after['loss']:.4f} "
            f"| {before[metric]:.4f} → {after[metric]:.4f} ({metric}) | {time.perf_counter() - started:.0f} s |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for model_name in args.models for row in run(model_name, args.threads)]
    fidelities = "; ".join(f"{m}: {SETUPS[m]['fidelity']}" for m in args.models)
    args.out.write_text(
        "# Every module type on real weights\n\n"
        f"Command: `python -m bench.module_types --threads {args.threads} --out {args.out} --models {' '.join(args.models)}`  \n"
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, no GPU; "
        f"date {date.today()}.  \nFidelity: {fidelities}.\n\n"
        "Dev loss at step 0 (fresh modules) and after the proxy fine-tune; seed 0, one run each. "
        f"Learning-rate multipliers: {LEARNING_RATE_SCALE}.\n\n"
        "| model | structure | trainable | dev loss step 0 | dev loss after | metric | time |\n"
        "|---|---|---:|---:|---:|---|---:|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    main()
