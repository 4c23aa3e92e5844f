"""How long SPT and IST sensitivity measurements take on MiniLM / SST-2 (the budgeted space's setup).

Settings are the budgeted space's defaults (:class:`autopeft.space.schema.SensitivitySettings`:
SPT over 16 batches of 32 examples; IST with 50 LoRA steps and 4 probe batches of 32), sentences
cut at 64 tokens. Reports wall and process CPU seconds (CPU time is what a busy shared machine
does not inflate) and the spread of the scores across layers.

    python -m bench.sensitivity --out docs/sensitivity.md
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import torch

from autopeft.allocation.ist import measure_ist
from autopeft.allocation.spt import measure_spt
from autopeft.models import load_base_model, load_tokenizer, resolve_model
from autopeft.space.layout import read_layout
from autopeft.space.schema import SensitivitySettings
from autopeft.tasks import load_task, tokenize_split

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue" / "SST-2"


def timed(measure):
    wall, cpu = time.perf_counter(), time.process_time()
    result = measure()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ref, task = resolve_model("minilm"), load_task(str(SST2))
    model = load_base_model(ref, task).requires_grad_(False)
    layout = read_layout(model)
    data = tokenize_split(task.train.subset(512, seed=0), task.kind, load_tokenizer(ref), max_length=64)
    settings = SensitivitySettings()
    spt, spt_wall, spt_cpu = timed(
        lambda: measure_spt(model, layout, data, batches=settings.batches, batch_size=settings.batch_size)
    )
    ist, ist_wall, ist_cpu = timed(
        lambda: measure_ist(model, layout, data, steps=settings.ist_steps, probe_batches=settings.ist_probe_batches,
                            batch_size=settings.batch_size)
    )
    per_layer = [sum(spt.matrix_scores[f"{layer.index}.{role}"] for role in layer.matrices) for layer in layout.layers]
    args.out.write_text(
        "# Sensitivity measurement time on MiniLM / SST-2\n\n"
        f"Command: `python -m bench.sensitivity --threads {args.threads} --out {args.out}`  \n"
        f"Machine: {platform.machine()}, 2 cores ({args.threads} torch threads), no GPU; date {date.today()}.\n\n"
        "| measurement | settings | wall s | CPU s | spread across layers (max / min) |\n|---|---|---:|---:|---:|\n"
        f"| SPT | {settings.batches} batches x {settings.batch_size}, length <= 64 | {spt_wall:.1f} | {spt_cpu:.1f} | {max(per_layer) / min(per_layer):.1f}x |\n"
        f"| IST | {settings.ist_steps} LoRA steps, {settings.ist_probe_batches} probe batches, x {settings.batch_size} | {ist_wall:.1f} | {ist_cpu:.1f} | "
        f"{max(ist.layer_importance) / min(ist.layer_importance):.1f}x |\n"
    )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
