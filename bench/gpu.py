"""Searches on a GPU with fractional workers: MiniLM / SST-2 and SmolLM2 / Alpaca (issue 16, item 7).

For each model, a real ``autopeft search`` (the CLI, as a user runs it) with ``--workers W
--gpus-per-worker 1/W``, so W trials share the GPU, on a fresh SQLite store, while ``nvidia-smi``
samples the GPU's utilisation and memory every 0.5 s. Then, in this process, the practitioner
default structure (LoRA r8 on q,v) runs the same proxy on the GPU and on the CPU for a step-time
ratio measured side by side. Writes a table with the machine, the date and the command, and raw
rows (one per trial) to ``--results``.

    python -m bench.gpu --out docs/gpu.md                       # on the GPU machine
    python -m bench.gpu --device cpu --trials 2 --steps 5 --ratio-steps 2 --out /tmp/gpu.md  # plumbing, CPU

It refuses to run without a GPU unless ``--device cpu`` asks for the plumbing check.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from autopeft.models import resolve_model
from autopeft.space import load_space_spec
from autopeft.space.defaults import practitioner_defaults
from autopeft.space.search_space import bind_space
from autopeft.store import Store
from autopeft.tasks import load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.data import SHARED_DATA as DATA

CASES = {"minilm": DATA / "glue" / "SST-2", "smollm2": DATA / "instruct" / "alpaca_en_demo.json"}
COLUMNS = ["model", "trial", "state", "worker", "wall_time_s", "step_time_s", "peak_memory_bytes", "score"]


@dataclass
class GpuSampler:
    """``nvidia-smi`` readings (utilisation %, memory MiB) every ``interval_s`` while running."""

    interval_s: float = 0.5
    utilisation: list[float] = field(default_factory=list)
    memory_mib: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.wait(self.interval_s):
            out = subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines()
            if out:
                used, memory = (float(v) for v in out[0].split(","))
                self.utilisation.append(used)
                self.memory_mib.append(memory)


def search(model: str, task: Path, args: argparse.Namespace, folder: Path) -> tuple[list[dict], float, GpuSampler]:
    """A real CLI search; its trial rows, its wall seconds and the GPU samples taken meanwhile."""
    storage = f"sqlite:///{folder / f'{model}.db'}"
    gpus = 0.0 if args.device == "cpu" else 1.0 / args.workers
    command = [sys.executable, "-m", "autopeft", "search", "--model", model, "--task", str(task),
               "--trials", str(args.trials), "--workers", str(args.workers), "--gpus-per-worker", str(gpus),
               "--cpus-per-worker", str(args.cpus_per_worker), "--steps", str(args.steps), "--storage", storage]  # fmt: skip
    print("$", shlex.join(command), flush=True)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    with GpuSampler() as sampler:
        subprocess.run(command, env=env, check=True, cwd=folder)
    wall = time.perf_counter() - started
    store = Store(storage)
    job = store.jobs()[-1]
    rows = []
    metric = job.spec["task_info"]["metric"]
    for trial in store.trials(job.id):
        rows.append({"model": model, "trial": trial.number, "state": str(trial.state), "worker": trial.worker,
                     "wall_time_s": trial.wall_time_s, "step_time_s": trial.step_time_s,
                     "peak_memory_bytes": trial.peak_memory_bytes, "score": trial.values.get(metric)})  # fmt: skip
    store.close()
    return rows, wall, sampler


def step_times(model: str, task_path: Path, steps: int, devices: list[str], threads: int) -> dict[str, float]:
    """Median step seconds of LoRA r8 q,v's proxy on each device (same structure, data and seed)."""
    task = with_search_split(load_task(str(task_path)))
    ref = resolve_model(model)
    times = {}
    for device in devices:
        torch.set_num_threads(threads)
        trainer = ProxyTrainer(WorkerSpec(ref, task, threads=threads), device=device)
        space = bind_space(load_space_spec("lora"), trainer.model)
        default = next(d for d in practitioner_defaults(space) if "q,v" in d.label)
        structure = space.decode(default.point).to_json()
        fidelity = Fidelity(steps=steps, eval_examples=32, lr_rescues=0)
        outcome = trainer.run(TrialRequest(0, 0, structure, seed=0, fidelity=fidelity))
        times[device] = outcome.step_time_s
        del trainer
        if device == "cuda":
            torch.cuda.empty_cache()
    return times


def describe_gpu() -> str:
    if not torch.cuda.is_available():
        return "none"
    props = torch.cuda.get_device_properties(0)
    return f"{torch.cuda.device_count()} x {props.name} ({props.total_memory / 2**30:.0f} GiB)"


def report(args, sections: list[str], command: str) -> str:
    return "\n".join([
        "# autopeft on a GPU: fractional workers, step time against the CPU\n",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, GPU {describe_gpu()}, torch {torch.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.  ",
        f"Each search: {args.trials} trials, {args.workers} workers sharing one GPU "
        f"({'no GPU: plumbing check' if args.device == 'cpu' else f'{1 / args.workers:g} GPU each'}), "
        f"{args.cpus_per_worker} CPUs per worker, {args.steps}-step proxies.\n",
        *sections,
    ]) + "\n"


def section(model: str, rows: list[dict], wall: float, sampler: GpuSampler, times: dict[str, float]) -> str:
    done = [r for r in rows if r["state"] == "completed"]
    steps = [r["step_time_s"] for r in done if r["step_time_s"]]
    peaks = [r["peak_memory_bytes"] / 2**20 for r in done if r["peak_memory_bytes"]]
    workers = {r["worker"] for r in done}
    util = sampler.utilisation
    lines = [f"## {model}\n", "| measure | value |", "|---|---:|",
             f"| trials completed / run | {len(done)} / {len(rows)} |",
             f"| distinct workers | {len(workers)} |",
             f"| search wall (s, process start to exit) | {wall:.1f} |",
             f"| trials per minute | {60 * len(done) / wall:.2f} |"]
    if steps:
        lines.append(f"| median step time in the search (s) | {statistics.median(steps):.4f} |")
    if peaks:
        lines.append(f"| peak memory per trial, median / max (MiB) | {statistics.median(peaks):.0f} / {max(peaks):.0f} |")
    if util:
        ordered = sorted(util)
        lines.append(f"| GPU utilisation, mean / p90 (%) | {statistics.fmean(util):.0f} / "
                     f"{ordered[int(0.9 * (len(ordered) - 1))]:.0f} |")
        lines.append(f"| GPU memory used, max (MiB) | {max(sampler.memory_mib):.0f} |")
    for device, seconds in times.items():
        lines.append(f"| LoRA r8 q,v step on {device} (s) | {seconds:.4f} |")
    if "cuda" in times and "cpu" in times:
        lines.append(f"| CPU / GPU step time | {times['cpu'] / times['cuda']:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cpus-per-worker", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--ratio-steps", type=int, default=10, help="proxy steps of each side of the step-time ratio")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--results", type=Path, default=Path("bench/results/gpu.csv"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU here; run on the GPU machine, or pass --device cpu for a plumbing check")
    command = shlex.join(["python", "-m", "bench.gpu", *sys.argv[1:]])
    sections, all_rows = [], []
    with tempfile.TemporaryDirectory(prefix="autopeft-gpu-") as tmp:
        for model in args.models:
            rows, wall, sampler = search(model, CASES[model], args, Path(tmp))
            devices = ["cuda", "cpu"] if args.device == "cuda" else ["cpu"]
            times = step_times(model, CASES[model], args.ratio_steps, devices, args.cpus_per_worker)
            sections.append(section(model, rows, wall, sampler, times))
            all_rows += rows
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(all_rows)
    args.out.write_text(report(args, sections, command))
    print(f"wrote {args.out} and {args.results}")


if __name__ == "__main__":
    main()
