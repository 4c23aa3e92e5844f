"""Worker throughput: per-trial overhead, step time against a plain peft loop, utilisation.

Three measurements on MiniLM / SST-2, written as one markdown report:

1. A real search (2 Ray workers, random optimizer so that proposal time does not count) whose
   trials report their phase timings: overhead = everything but the training steps, as a share
   of the trial's wall time; utilisation = summed trial wall time / (workers x job wall time);
   dispatch wait = how long finished workers sat idle before their next trial.
2. Step time of the proxy trainer against a plain peft + torch loop on the same LoRA config,
   data, batches and threads, alternated in one process (ratios, not absolute times).

    python -m bench.throughput --out docs/throughput.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
from peft import get_peft_model

from autopeft.injection.peft_modules import lora_config
from autopeft.injection import reset_head
from autopeft.models import load_base_model, resolve_model
from autopeft.scheduler import JobSpec, prepare, run_search
from autopeft.space.structure import LoraModules, Structure
from autopeft.store import Store
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from autopeft.worker.proxy import training_batches

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue" / "SST-2"
FIDELITY = Fidelity(train_examples=2400, steps=100, batch_size=16, max_length=64, learning_rate=1e-3, eval_examples=872)


def search_overheads(trials: int, workers: int, store_path: Path) -> list[str]:
    store_path.unlink(missing_ok=True)
    store = Store(str(store_path))
    spec = JobSpec(model="minilm", task=str(SST2), trials=trials, workers=workers, optimizer="random",
                   fidelity=FIDELITY)
    started = time.perf_counter()
    job_id = run_search(prepare(spec), store)
    job_wall = time.perf_counter() - started
    records = [t for t in store.trials(job_id) if t.timings]
    job = store.job(job_id)
    busy = sum(t.wall_time_s for t in records)
    run_wall = (job.finished_at - job.started_at).total_seconds()
    # Overhead: injection, removal, data and the driver's dispatch, as a share of the trial's wall
    # time; the dev evaluation is the trial's own work and is reported apart.
    overheads = [
        (t.timings["data"] + t.timings["inject"] + t.timings["remove"] + (t.dispatch_wait_s or 0.0)) / t.wall_time_s
        for t in records
    ]
    waits = [t.dispatch_wait_s for t in records if t.dispatch_wait_s is not None]
    phases = {p: statistics.median(t.timings.get(p, 0.0) for t in records)
              for p in ("data", "inject", "train", "evaluate", "remove")}
    return [
        f"| trials | {len(records)} on {workers} workers |",
        f"| job wall time (driver, incl. Ray start and model loads) | {job_wall:.1f} s |",
        f"| scheduler run wall time (first dispatch to last result) | {run_wall:.1f} s |",
        f"| worker utilisation (summed trial time / workers x run time) | {busy / (workers * run_wall):.1%} |",
        f"| median trial wall time | {statistics.median(t.wall_time_s for t in records):.2f} s |",
        "| median phase times | " + ", ".join(f"{p} {v:.2f} s" for p, v in phases.items()) + " |",
        f"| per-trial overhead: data, injection, removal, dispatch wait (median / max) | {statistics.median(overheads):.2%} / {max(overheads):.2%} |",
        f"| dev evaluation on 872 examples, share of the trial (median) | {statistics.median(t.timings['evaluate'] / t.wall_time_s for t in records):.1%} |",
        f"| dispatch wait of idle workers (median / max / sum) | {statistics.median(waits):.3f} / {max(waits):.3f} / {sum(waits):.2f} s |",
    ]


def plain_loop_step_time(model, data, structure: Structure, layout, seed: int) -> float:
    """Mean step time (s) of peft's get_peft_model + AdamW on the same batches."""
    torch.manual_seed(seed)
    reset_head(model, layout, seed)
    peft_model = get_peft_model(model, lora_config(structure.lora, layout, task_type="SEQ_CLS"))
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=FIDELITY.learning_rate)
    peft_model.train()
    started = time.perf_counter()
    for indices in training_batches(len(data), FIDELITY.batch_size, FIDELITY.steps, seed):
        loss = peft_model(**data.batch(indices)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = (time.perf_counter() - started) / FIDELITY.steps
    peft_model.unload()
    return elapsed


def step_time_ratio(rounds: int, threads: int) -> list[str]:
    torch.set_num_threads(threads)
    task = with_search_split(load_task(str(SST2)))
    ref = resolve_model("minilm")
    trainer = ProxyTrainer(WorkerSpec(ref, task, threads=threads))
    train, _ = trainer.data(FIDELITY)
    structure = Structure(lora=LoraModules({(i, r): 8 for i in range(6) for r in ("q", "v")}))
    plain_model = load_base_model(ref, task)
    autopeft_steps, plain_steps = [], []
    for round_ in range(rounds):
        outcome = trainer.run(TrialRequest(round_, round_, structure.to_json(), seed=round_, fidelity=FIDELITY))
        autopeft_steps.append(outcome.step_time_s)
        plain_steps.append(plain_loop_step_time(plain_model, train, structure, trainer.layout, round_))
    ratios = [a / p for a, p in zip(autopeft_steps, plain_steps)]
    return [
        f"| rounds (alternating, {threads} threads, LoRA r8 q,v, batch 16 x 64) | {rounds} |",
        f"| autopeft proxy step time (median) | {statistics.median(autopeft_steps) * 1000:.1f} ms |",
        f"| plain peft + torch loop step time (median) | {statistics.median(plain_steps) * 1000:.1f} ms |",
        f"| ratio autopeft / plain (median, per round: {', '.join(f'{r:.3f}' for r in ratios)}) | {statistics.median(ratios):.3f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    search = search_overheads(args.trials, args.workers, Path("/tmp/autopeft-throughput.db"))
    steps = step_time_ratio(args.rounds, threads=args.workers)
    args.out.write_text(
        "# Worker throughput\n\n"
        f"Command: `python -m bench.throughput --out {args.out} --trials {args.trials} --workers {args.workers} "
        f"--rounds {args.rounds}`  \nMachine: {platform.machine()}, {torch.get_num_threads()} threads, no GPU, "
        f"shared with other work; date {date.today()}.  \nFidelity: {FIDELITY}.\n\n"
        "## A real search on 2 workers\n\n| measure | value |\n|---|---|\n" + "\n".join(search) + "\n\n"
        "## Step time against a plain peft loop\n\n| measure | value |\n|---|---|\n" + "\n".join(steps) + "\n"
    )


if __name__ == "__main__":
    main()
