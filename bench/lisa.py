"""LISA (gamma = 2 of MiniLM's 6 layers) against full fine-tuning: peak memory and step time, side by side.

LISA (Pan et al. 2024) trains, every K steps, gamma uniformly sampled transformer layers in full,
with the embeddings and the task head always trained, and builds a fresh AdamW each period so that
optimizer state exists only for what trains. On the real MiniLM and SST-2, in one process and for
the same steps, batches, length and seed, this measures:

- ``full``: full fine-tuning, one AdamW over every parameter;
- ``lisa``: gamma = 2 layers' full weights plus everything outside the layers (embeddings, pooler,
  classifier), resampled every K = 20 steps by the proxy's :class:`LayerSampler`, fresh AdamW each;
- ``lisa_no_emb``: the same without the embeddings (they are 11.9M of MiniLM's 22.7M parameters);
- ``lora``, ``lora_lisa``: what the search offers, LoRA r8 on every linear role, without and with
  the ``lisa`` schedule (gamma 2, K 20), run by the proxy trainer itself (``ProxyTrainer.run``).

Full and LISA arms train at 1e-4 (the full fine-tuning rate ``docs/quality.md`` kept on SST-2),
LoRA at the proxy's 1e-3; all with the proxy's warm-up and decay and no rate rescue. Peak memory
is the proxy's own measure (``peak_memory``: on CPU the process's RSS, sampled every 20 ms), both
as the absolute peak the proxy reports and as its rise over the RSS at the arm's start, taken after
``gc.collect()`` and glibc's ``malloc_trim(0)`` so that memory freed by the previous arm does not
count; a warm-up arm runs first. Step time is the median interval between two training forwards
(a forward pre-hook on the model, the same for every arm) and the proxy's mean (loop time / steps).
The arms alternate order between repeats (forward, reversed, forward, ...). Writes the raw rows to
``bench/results/lisa.csv`` and a markdown report; ``--report-only`` rebuilds it from the rows.

    nice -n 10 python -m bench.lisa --threads 1 --out docs/lisa.md
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import os
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psutil
import torch
from torch import nn

from autopeft.injection import reset_head
from autopeft.models import resolve_model
from autopeft.models.loading import build_skeleton
from autopeft.space.structure import LayerSchedule, LoraModules, Structure
from autopeft.tasks import load_task
from autopeft.trials import Fidelity, TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from autopeft.allocation.measurement import peak_memory
from autopeft.worker.proxy import _warmup_decay, training_batches
from autopeft.worker.schedules import LayerSampler, train_only
from bench.module_types import SETUPS
from bench.reporting import machine_line, write_rows

RAW = Path(__file__).parent / "results" / "lisa.csv"
ARMS = ("full", "lisa", "lisa_no_emb", "lora", "lora_lisa")
LABELS = {
    "full": "full fine-tuning",
    "lisa": "LISA: 2 layers + embeddings + pooler + head",
    "lisa_no_emb": "LISA without embeddings: 2 layers + pooler + head",
    "lora": "LoRA r8 all linear (proxy)",
    "lora_lisa": "LoRA r8 all linear + lisa schedule (proxy)",
}
PROXY_ARMS = ("lora", "lora_lisa")
FULL_RATE = 1e-4
LORA_RATE = 1e-3
LORA_RANK = 8
MIB = 2**20


def rss() -> int:
    return psutil.Process().memory_info().rss


def settle() -> int:
    """Free what the previous arm left (Python garbage, glibc's free lists); the RSS after it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline keeps what the allocator keeps
        pass
    return rss()


@contextmanager
def step_clock(model: nn.Module) -> Iterator[list[tuple[float, float]]]:
    """(perf_counter, thread_time) at the start of every training-mode forward of ``model`` (one per step).

    With one torch thread the forward, the backward (autograd runs CPU work on the calling thread) and
    the optimizer step all run on this thread, so its CPU time per step hardly depends on what else the
    shared machine runs; the wall-clock interval does."""
    stamps: list[tuple[float, float]] = []
    handle = model.register_forward_pre_hook(
        lambda module, args: stamps.append((time.perf_counter(), time.thread_time())) if module.training else None)
    try:
        yield stamps
    finally:
        handle.remove()


def weight_groups(model: nn.Module, layer_paths: Sequence[str], embeddings: bool
                  ) -> dict[int | None, list[nn.Parameter]]:
    """LayerSampler's groups over the model's own weights: layer index -> that layer's parameters,
    None -> every parameter outside the layers (without ``bert.embeddings`` unless ``embeddings``)."""
    groups: dict[int | None, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        layer = next((i for i, path in enumerate(layer_paths) if name.startswith(path + ".")), None)
        if layer is None and not embeddings and ".embeddings." in f".{name}":
            continue
        groups.setdefault(layer, []).append(parameter)
    return groups


def lora_structure(trainer: ProxyTrainer, schedule: LayerSchedule | None) -> Structure:
    layout = trainer.layout
    ranks = {(i, role): LORA_RANK for i in range(layout.num_layers) for role in layout.layers[i].matrices}
    return Structure(lora=LoraModules(ranks), schedule=schedule)


def period_sets(groups: Mapping[int | None, Sequence[nn.Parameter]], schedule: LayerSchedule | None, steps: int,
                seed: int) -> list[tuple[list[int], list[nn.Parameter]]]:
    """(layers, parameters that train) of every period, replaying the proxy's sampler (same seed, same draws)."""
    if schedule is None:
        return [(sorted(k for k in groups if k is not None), [p for ps in groups.values() for p in ps])]
    sampler = LayerSampler(schedule, groups, seed)
    return [sampler.sample() for step in range(steps) if sampler.starts_period(step)]


def counts(sets: Sequence[tuple[list[int], Sequence[nn.Parameter]]]) -> dict:
    """Most parameters training at a time and parameters trained over the run, of ``period_sets``."""
    trained = {id(p): p.numel() for _, active in sets for p in active}
    return {"trainable_at_a_time": max(sum(p.numel() for p in active) for _, active in sets),
            "trained_in_total": sum(trained.values())}


def saved_activation_bytes(model: nn.Module, batch: Mapping[str, torch.Tensor], every: Sequence[nn.Parameter],
                           sets: Sequence[tuple[list[int], Sequence[nn.Parameter]]]) -> int:
    """Bytes autograd keeps for the backward of one training forward of ``batch``, largest over the periods'
    trained sets: every saved tensor's storage counted once, the parameters' own storages left out."""
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    largest = 0
    model.train()
    for _, active in sets:
        train_only(every, active)
        seen: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in own:
                seen[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        largest = max(largest, sum(seen.values()))
    model.eval()
    return largest


def train_weights(trainer: ProxyTrainer, fidelity: Fidelity, groups: Mapping[int | None, Sequence[nn.Parameter]],
                  schedule: LayerSchedule | None, seed: int, longest: Mapping[str, torch.Tensor]) -> dict:
    """The proxy's loop over the model's own weights (full fine-tuning, or LISA with ``schedule``)."""
    model, train = trainer.model, trainer.data(fidelity, "dev")[0]
    every = [p for ps in groups.values() for p in ps]
    saved = saved_activation_bytes(model, longest, every, period_sets(groups, schedule, fidelity.steps, seed))
    torch.manual_seed(seed)
    reset_head(model, trainer.layout, seed)
    model.requires_grad_(False)
    sampler = LayerSampler(schedule, groups, seed) if schedule else None
    losses, periods, state, at_once, trained = [], [], 0, 0, {}
    start = settle()
    with peak_memory(trainer.device) as peak, step_clock(model) as stamps:
        if sampler is None:
            train_only(every, every)
            optimizer = torch.optim.AdamW(every, lr=fidelity.learning_rate, weight_decay=0.0)
        model.train()
        started = time.perf_counter()
        for step, indices in enumerate(training_batches(len(train), fidelity.batch_size, fidelity.steps, seed)):
            fresh = step == 0
            if sampler is not None and sampler.starts_period(step):
                layers, active = sampler.sample()
                train_only(every, active)
                optimizer = torch.optim.AdamW(active, lr=fidelity.learning_rate, weight_decay=0.0)
                periods.append(layers)
                fresh = True
            for group in optimizer.param_groups:
                group["lr"] = fidelity.learning_rate * _warmup_decay(step, max(1, fidelity.steps // 10), fidelity.steps)
            loss = model(**{k: v.to(trainer.device) for k, v in train.batch(indices).items()}).loss
            loss.backward()
            optimizer.step()
            if fresh:  # AdamW makes its state at its first step
                params = [p for g in optimizer.param_groups for p in g["params"]]
                at_once = max(at_once, sum(p.numel() for p in params))
                trained.update((id(p), p.numel()) for p in params)
                state = max(state, sum(v.numel() for s in optimizer.state.values()
                                       for k, v in s.items() if k != "step" and torch.is_tensor(v)))
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        loop = time.perf_counter() - started
        del optimizer
        model.zero_grad(set_to_none=True)
    model.eval()
    model.requires_grad_(False)
    tail = max(1, len(losses) // 10)
    return {"trainable_at_a_time": at_once, "trained_in_total": sum(trained.values()),
            "optimizer_state_elements": state, "sampled_layers": periods or [sorted(k for k in groups if k is not None)],
            "saved_activations_bytes": saved, "rss_start_bytes": start, "peak_rss_bytes": peak.bytes,
            "step_intervals": _intervals(stamps),
            "step_time_mean_s": loop / len(losses), "train_loss_first": sum(losses[:tail]) / tail,
            "train_loss_last": sum(losses[-tail:]) / tail}


def train_proxy(trainer: ProxyTrainer, fidelity: Fidelity, structure: Structure, seed: int,
                longest: Mapping[str, torch.Tensor]) -> dict:
    """One ``ProxyTrainer.run`` of ``structure``; counts and saved activations from the same modules built
    beforehand and the replayed sampler."""
    applied = trainer._apply(structure, fidelity.steps)
    try:
        sets = period_sets(applied.parameters_by_layer(trainer.layout), structure.schedule, fidelity.steps, seed)
        saved = saved_activation_bytes(trainer.model, longest, applied.parameters, sets)
    finally:
        applied.remove()
    trainable = counts(sets)
    request = TrialRequest(0, 0, structure.to_json(), seed=seed, fidelity=fidelity, split="dev")
    start = settle()
    with step_clock(trainer.model) as stamps:
        outcome = trainer.run(request)
    if outcome.error:
        raise RuntimeError(f"proxy run failed: {outcome.error}")
    return {**trainable,
            "optimizer_state_elements": 2 * trainable["trainable_at_a_time"],  # AdamW: exp_avg, exp_avg_sq
            "sampled_layers": [layers for layers, _ in sets], "saved_activations_bytes": saved, "rss_start_bytes": start, "peak_rss_bytes": outcome.peak_memory_bytes,
            "step_intervals": _intervals(stamps), "step_time_mean_s": outcome.step_time_s,
            "train_loss_first": outcome.metrics["train_loss_first"],
            "train_loss_last": outcome.metrics["train_loss_last"], "dev_accuracy_64": outcome.metrics["accuracy"]}


def parameter_counts() -> dict[str, int]:
    """MiniLM's parameters by part (embeddings, each layer, pooler, classifier, total), on the meta device."""
    model = build_skeleton(resolve_model("minilm"), load_task(str(SETUPS["minilm"]["task"])))
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        part = next((p for p in ("embeddings", "encoder", "pooler", "classifier") if f".{p}." in f".{name}"), name)
        counts[part] = counts.get(part, 0) + parameter.numel()
    counts["layer"] = counts.pop("encoder") // model.config.num_hidden_layers
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def _intervals(stamps: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """(wall-clock, thread CPU) seconds between consecutive stamps."""
    return tuple([b[i] - a[i] for a, b in zip(stamps, stamps[1:])] for i in (0, 1))


class Bench:
    """The trainer, its pristine weights and the arms' settings."""

    def __init__(self, threads: int, steps: int, period: int, gamma: int, seed: int) -> None:
        task = load_task(str(SETUPS["minilm"]["task"]))
        self.trainer = ProxyTrainer(WorkerSpec(resolve_model("minilm"), task, threads=threads), device="cpu")
        self.pristine = {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}
        self.layer_paths = [layer.path for layer in self.trainer.layout.layers]
        self.schedule = LayerSchedule("lisa", gamma, period)
        self.seed = seed
        base = SETUPS["minilm"]["fidelity"]
        self.fidelity = {rate: Fidelity(train_examples=base.train_examples, steps=steps, batch_size=base.batch_size,
                                        max_length=base.max_length, learning_rate=rate, eval_examples=64,
                                        lr_rescues=0) for rate in (FULL_RATE, LORA_RATE)}
        train = self.trainer.data(self.fidelity[FULL_RATE], "dev")[0]
        batches = [train.batch(i) for i in training_batches(len(train), base.batch_size, steps, seed)]
        self.longest = max(batches, key=lambda b: b["input_ids"].shape[1])  # the first of the longest

    def run(self, arm: str, steps: int | None = None) -> dict:
        self.trainer.model.load_state_dict(self.pristine)
        self.trainer.model.requires_grad_(False)
        rate = LORA_RATE if arm in PROXY_ARMS else FULL_RATE
        fidelity = self.fidelity[rate]
        if steps is not None:
            fidelity = replace(fidelity, steps=steps)
        model = self.trainer.model
        if arm in PROXY_ARMS:
            structure = lora_structure(self.trainer, self.schedule if arm == "lora_lisa" else None)
            return train_proxy(self.trainer, fidelity, structure, self.seed, self.longest)
        groups = weight_groups(model, self.layer_paths, embeddings=arm != "lisa_no_emb")
        return train_weights(self.trainer, fidelity, groups, None if arm == "full" else self.schedule, self.seed,
                             self.longest)


def measure(args: argparse.Namespace) -> list[dict]:
    bench = Bench(args.threads, args.steps, args.period, args.gamma, args.seed)
    warm = time.perf_counter()
    for arm in args.arms:  # first-use allocations (kernels, tokenized data, autograd) outside the measurements
        bench.run(arm, steps=2)
    print(f"warm-up {time.perf_counter() - warm:.0f} s", flush=True)
    rows = []
    for repeat in range(args.repeats):
        order = list(args.arms) if repeat % 2 == 0 else list(reversed(args.arms))
        for position, arm in enumerate(order):
            started = time.perf_counter()
            result = bench.run(arm)
            intervals, cpu = result.pop("step_intervals")
            row = {"arm": arm, "repeat": repeat, "position": position, "seed": args.seed, "steps": args.steps,
                   "learning_rate": LORA_RATE if arm in PROXY_ARMS else FULL_RATE,
                   **{k: v for k, v in result.items() if k not in ("sampled_layers", "dev_accuracy_64")},
                   "peak_over_start_bytes": result["peak_rss_bytes"] - result["rss_start_bytes"],
                   "step_time_median_s": round(statistics.median(intervals), 4),
                   "step_cpu_median_s": round(statistics.median(cpu), 4),
                   "step_time_mean_s": round(result["step_time_mean_s"], 4),
                   "step_time_median_by_period_s": " ".join(
                       f"{statistics.median(intervals[i:i + args.period]):.4f}"
                       for i in range(0, len(intervals), args.period)),
                   "step_cpu_median_by_period_s": " ".join(
                       f"{statistics.median(cpu[i:i + args.period]):.4f}" for i in range(0, len(cpu), args.period)),
                   "sampled_layers": " ".join("+".join(map(str, p)) for p in result["sampled_layers"]),
                   "load_1min": round(os.getloadavg()[0], 2),
                   "seconds": round(time.perf_counter() - started, 1)}
            row["train_loss_first"] = round(row["train_loss_first"], 4)
            row["train_loss_last"] = round(row["train_loss_last"], 4)
            rows.append(row)
            print({k: row[k] for k in ("arm", "repeat", "trainable_at_a_time", "peak_over_start_bytes",
                                       "step_time_median_s", "train_loss_last", "seconds")}, flush=True)
    return rows


def read_raw() -> list[dict]:
    with RAW.open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key, value in row.items():
            if key not in ("arm", "sampled_layers", "step_time_median_by_period_s", "step_cpu_median_by_period_s"):
                row[key] = float(value)
    return rows


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _ratio(rows: list[dict], arm: str, key: str) -> float:
    """Median over repeats of ``arm``'s ``key`` over full fine-tuning's in the same repeat."""
    full = {r["repeat"]: r[key] for r in rows if r["arm"] == "full"}
    return statistics.median(r[key] / full[r["repeat"]] for r in rows if r["arm"] == arm)


def table(rows: list[dict]) -> str:
    """Two tables: what trains and the memory it takes; step time and loss."""
    memory = ["| arm | trainable at a time | trained over the run | AdamW state elements | grads + AdamW state "
              "(12 B per entry trained at a time) | saved activations (longest batch) | peak RSS (the proxy's "
              "measure) | rise over the arm's start | rise / full's |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    speed = ["| arm | step wall time, median | / full's | step CPU time, median | / full's | mean step (the proxy's "
             "`step_time_s`) | / full's | final train loss (per repeat) |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for arm in ARMS:
        runs = [r for r in rows if r["arm"] == arm]
        if not runs:
            continue
        at_once = int(runs[0]["trainable_at_a_time"])
        losses = " / ".join(f"{r['train_loss_last']:.3f}" for r in runs)
        memory.append(
            f"| {LABELS[arm]} | {at_once:,} | {int(runs[0]['trained_in_total']):,} "
            f"| {int(runs[0]['optimizer_state_elements']):,} | {12 * at_once / MIB:.0f} MiB "
            f"| {runs[0]['saved_activations_bytes'] / MIB:.0f} MiB | {_median(runs, 'peak_rss_bytes') / MIB:.0f} MiB "
            f"| {_median(runs, 'peak_over_start_bytes') / MIB:.0f} MiB | {_ratio(rows, arm, 'peak_over_start_bytes'):.2f} |"
        )
        speed.append(
            f"| {LABELS[arm]} | {_median(runs, 'step_time_median_s'):.3f} s | {_ratio(rows, arm, 'step_time_median_s'):.2f} "
            f"| {_median(runs, 'step_cpu_median_s'):.3f} s | {_ratio(rows, arm, 'step_cpu_median_s'):.2f} "
            f"| {_median(runs, 'step_time_mean_s'):.3f} s | {_ratio(rows, arm, 'step_time_mean_s'):.2f} "
            f"| {losses} |"
        )
    return "\n".join(memory) + "\n\n" + "\n".join(speed)


def per_repeat(rows: list[dict]) -> str:
    lines = ["| repeat | position | arm | rise over start | peak RSS | step wall median | CPU median | mean "
             "| wall median per period | CPU median per period | sampled layers per period |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["repeat"], r["position"])):
        lines.append(f"| {int(r['repeat'])} | {int(r['position'])} | {r['arm']} | {r['peak_over_start_bytes'] / MIB:.0f} MiB "
                     f"| {r['peak_rss_bytes'] / MIB:.0f} MiB | {r['step_time_median_s']:.3f} s | {r['step_cpu_median_s']:.3f} s "
                     f"| {r['step_time_mean_s']:.3f} s | {r['step_time_median_by_period_s']} "
                     f"| {r['step_cpu_median_by_period_s']} | {r['sampled_layers']} |")
    return "\n".join(lines)


def write_report(args: argparse.Namespace, rows: list[dict]) -> None:
    command = (f"nice -n 10 python -m bench.lisa --threads {args.threads} --steps {args.steps} --repeats "
               f"{args.repeats} --gamma {args.gamma} --period {args.period} --seed {args.seed} --out {args.out}"
               + (f" --arms {' '.join(args.arms)}" if list(args.arms) != list(ARMS) else ""))
    base = SETUPS["minilm"]["fidelity"]
    repeats = int(max(r["repeat"] for r in rows)) + 1
    loads = [r["load_1min"] for r in rows]
    rebuilt = " (this report rebuilt from the raw rows with `--report-only`: the machine line is the rebuild's)" \
        if args.report_only else ""
    counts = parameter_counts()
    args.out.write_text(
        "# LISA (gamma = 2 of 6 layers) against full fine-tuning: peak memory and step time\n\n"
        f"Command: `{command}`{rebuilt}  \n"
        f"{machine_line(args.threads)} One-minute load average at the end of each arm: {min(loads):.1f} to "
        f"{max(loads):.1f} (other benchmarks ran beside this one).  \n"
        f"Model and data: the real MiniLM (`resolve_model(\"minilm\")`, {counts['total']:,} parameters: embeddings "
        f"{counts['embeddings']:,}, 6 layers of {counts['layer']:,}, pooler {counts['pooler']:,}, classifier "
        f"{counts['classifier']:,}) on SST-2's training split "
        f"({base.train_examples} examples drawn with seed {args.seed}). Every arm: {args.steps} steps, batch "
        f"{base.batch_size}, {base.max_length} tokens, AdamW (weight decay 0) with the proxy's 10% linear warm-up "
        f"and decay, training seed {args.seed} (the same batches and the same sampled layers in every arm and "
        f"repeat), {args.threads} torch thread, CPU. Full fine-tuning and LISA train at {FULL_RATE:g} (the full "
        f"fine-tuning rate `docs/quality.md` kept on SST-2), LoRA at the proxy's {LORA_RATE:g}; no rate rescue. "
        f"{repeats} repeats in one process, arms in alternating order (forward, reversed, ...), after a 2-step "
        "warm-up of every arm. Raw rows: `bench/results/lisa.csv`.\n\n"
        "Arms:\n"
        "- **full fine-tuning**: every parameter, one AdamW.\n"
        f"- **LISA**: every {args.period} steps `LayerSampler` (the proxy's, `autopeft/worker/schedules.py`) draws "
        f"{args.gamma} of the 6 layers uniformly; their full weights plus everything outside the layers "
        "(embeddings, pooler, classifier) train, with a fresh AdamW over exactly those, as in Pan et al. 2024.\n"
        "- **LISA without embeddings**: the same, the embeddings frozen (only pooler and classifier always train).\n"
        f"- **LoRA r8 all linear**, with and without the `lisa` schedule (gamma {args.gamma}, K {args.period}): "
        "what the search offers, run by `ProxyTrainer.run` itself (scored on 64 dev examples, which the "
        "peak includes).\n\n"
        "What is measured:\n"
        "- *trainable at a time*: parameters with a gradient and optimizer state in one period; *trained over "
        "the run*: every parameter any period trained. *AdamW state elements*: counted from the optimizer's "
        "state (exp_avg, exp_avg_sq) after the first step of each period, largest period; for the proxy arms "
        "2 x trainable at a time (the same rule; the proxy does not expose its optimizer). *grads + AdamW state*: "
        "12 bytes per trainable entry (float32 gradient and two moments), what the arm must hold beyond the "
        "model and activations. *saved activations*: the bytes autograd keeps for the backward pass in one "
        "training forward of the run's longest batch (a `saved_tensors_hooks` count of distinct storages, the "
        "parameters' own storages left out), largest over the periods' trained sets; measured in an extra "
        "forward and backward before the arm, outside its timing and its peak.\n"
        "- *peak RSS*: the proxy's own measure, `autopeft.allocation.measurement.peak_memory` (imported, not copied): on "
        "CPU the process's resident set size, sampled every 20 ms while the block runs, absolute, so it "
        "includes the loaded model, a pristine copy of its weights this benchmark keeps to restore them "
        "between arms, the tokenized data and the libraries (about the same for every arm). *rise over the "
        "arm's start*: that peak minus the RSS just before the arm, taken after `gc.collect()` and glibc's "
        "`malloc_trim(0)`; this is the number to compare (what the arm itself allocates: gradients, optimizer "
        "state, activations, AdamW's temporaries). Ratios are to full fine-tuning in the same repeat, median "
        "over repeats.\n"
        "- *step wall time*: the median interval between the starts of two consecutive training forwards "
        "(one forward pre-hook on the model, for every arm: the forward, backward, optimizer step and, at a "
        "period's start, building the new AdamW); *step CPU time*: the same interval in the main thread's CPU "
        "time (`time.thread_time`; with one torch thread the forward, the backward and the optimizer all run "
        "there), which depends much less on the other processes of the shared machine; *mean step*: the "
        "training loop's wall time over its steps, as the proxy reports `step_time_s`.\n"
        "- *final train loss*: mean training loss over the last 10% of steps, per repeat (the proxy's "
        "`train_loss_last`). A memory and speed measurement: 60 steps say little about quality.\n\n"
        + table(rows) + "\n\n" + reading(rows, args, counts) + "\n\nPer run:\n\n" + per_repeat(rows) + "\n"
    )


def reading(rows: list[dict], args: argparse.Namespace, counts: Mapping[str, int]) -> str:
    """The numbers' reading, every figure taken from ``rows``."""
    arms = {r["arm"] for r in rows}

    def first(arm: str, key: str) -> float:
        return next(r[key] for r in rows if r["arm"] == arm)

    def mib(arm: str, key: str) -> float:
        return _median([r for r in rows if r["arm"] == arm], key) / MIB

    def state(arm: str) -> float:
        return 12 * first(arm, "trainable_at_a_time") / MIB

    def loss(arm: str) -> str:
        return f"{first(arm, 'train_loss_last'):.3f}"

    full, lisa = first("full", "trainable_at_a_time"), first("lisa", "trainable_at_a_time")
    rise, saved = (lambda arm: mib(arm, "peak_over_start_bytes")), (lambda arm: first(arm, "saved_activations_bytes") / MIB)
    spread = max(max(r["peak_over_start_bytes"] for r in rows if r["arm"] == arm)
                 / min(r["peak_over_start_bytes"] for r in rows if r["arm"] == arm) - 1 for arm in arms)
    layers = first("lisa", "sampled_layers")
    cpu_spread = max(max(r["step_cpu_median_s"] for r in rows if r["arm"] == arm)
                     / min(r["step_cpu_median_s"] for r in rows if r["arm"] == arm) - 1 for arm in arms)
    wall_gap = max(abs(_ratio(rows, arm, "step_time_median_s") - _ratio(rows, arm, "step_cpu_median_s")) for arm in arms)

    def by_period(arm: str) -> str:
        """Per period, the median over repeats of the arm's CPU step over full fine-tuning's in the same repeat."""
        full_runs = {r["repeat"]: [float(v) for v in r["step_cpu_median_by_period_s"].split()]
                     for r in rows if r["arm"] == "full"}
        ratios = [[float(v) / f for v, f in zip(r["step_cpu_median_by_period_s"].split(), full_runs[r["repeat"]])]
                  for r in rows if r["arm"] == arm]
        return " / ".join(f"{statistics.median(column):.2f}x" for column in zip(*ratios))
    parts = [
        "Reading:", "",
        f"- **Memory, LISA against full fine-tuning.** LISA trains {lisa:,.0f} parameters at a time, "
        f"{lisa / full:.0%} of full fine-tuning's; {counts['embeddings'] / lisa:.0%} of them are the embeddings it "
        f"always trains. Its gradients and AdamW state ({state('lisa'):.0f} MiB against {state('full'):.0f}) are "
        f"{state('lisa') / state('full'):.2f}x full's, but the process's memory rose by {rise('lisa'):.0f} MiB "
        f"against {rise('full'):.0f} ({_ratio(rows, 'lisa', 'peak_over_start_bytes'):.2f}x): "
        f"{rise('full') - rise('lisa'):.0f} MiB saved. Two things bound the saving. The embeddings: their gradient "
        f"and AdamW state alone are {12 * counts['embeddings'] / MIB:.0f} MiB, held in every period"
        + (f"; frozen (third arm), the rise is {_ratio(rows, 'lisa_no_emb', 'peak_over_start_bytes'):.2f}x full's"
           if "lisa_no_emb" in arms else "") + ". "
        f"And the activations: at batch {SETUPS['minilm']['fidelity'].batch_size} autograd keeps {saved('full'):.0f} MiB for the backward of the run's "
        f"longest batch in full fine-tuning ({saved('lisa'):.0f} MiB in LISA, which keeps no inputs of frozen "
        "linear layers), and the rest of the rise (the backward's and AdamW's transient tensors, and what glibc "
        f"keeps after the longest batch) is {rise('full') - state('full') - saved('full'):.0f} MiB for full "
        f"fine-tuning and {rise('lisa') - state('lisa') - saved('lisa'):.0f} MiB for LISA (an RSS high-water mark "
        "is not a sum of live tensors, so this remainder need not shrink with what trains). Full fine-tuning's "
        f"gradients and optimizer state are only {state('full') / rise('full'):.0%} of its rise: on a "
        f"{counts['total'] / 1e6:.1f}M-parameter model at this batch size, optimizer state is not what fills memory, so LISA cannot save much of it. "
        "Models whose weights and optimizer state dwarf their activations would save more; not measured here.",
        f"- **Step time.** In the main thread's CPU time (what the shared machine disturbs least; the wall-clock "
        f"ratios differ from it by at most {wall_gap:.2f}), LISA's median step is "
        f"{_ratio(rows, 'lisa', 'step_cpu_median_s'):.2f}x "
        f"full's. With the embeddings trained, the backward runs through every layer to reach them, so LISA saves "
        f"only the frozen layers' weight gradients and their AdamW update."
        + (f" Without the embeddings it is {_ratio(rows, 'lisa_no_emb', 'step_cpu_median_s'):.2f}x: the backward "
           "stops at the lowest sampled layer, but this seed drew layer 0 in two of the three periods (layers "
           f"{layers.replace(' ', ', ')}); by period its median CPU step is {by_period('lisa_no_emb')} full "
           "fine-tuning's in the same period, the least in the period without layer 0." if "lisa_no_emb" in arms else ""),
    ]
    if {"lora", "lora_lisa"} <= arms:
        parts.append(
            f"- **What the search offers.** LoRA r8 on every linear role ({first('lora', 'trainable_at_a_time'):,.0f} "
            f"trainable) rises {_ratio(rows, 'lora', 'peak_over_start_bytes'):.2f}x full fine-tuning's memory and "
            f"steps in {_ratio(rows, 'lora', 'step_cpu_median_s'):.2f}x its CPU time: it holds almost no optimizer "
            f"state, but about full fine-tuning's saved activations ({saved('lora'):.0f} MiB against "
            f"{saved('full'):.0f}), since LoRA keeps its inputs at "
            f"every layer. The `lisa` schedule on it ({first('lora_lisa', 'trainable_at_a_time'):,.0f} at a time) "
            f"gives {_ratio(rows, 'lora_lisa', 'peak_over_start_bytes'):.2f}x and "
            f"{_ratio(rows, 'lora_lisa', 'step_cpu_median_s'):.2f}x (saved activations {saved('lora_lisa'):.0f} MiB: "
            "frozen layers' LoRA inputs are not kept). On a LoRA structure the search's `lisa` option saves "
            "activation memory, not optimizer state; its median CPU step is "
            f"{_median([r for r in rows if r['arm'] == 'lora_lisa'], 'step_cpu_median_s') / _median([r for r in rows if r['arm'] == 'lora'], 'step_cpu_median_s'):.2f}x "
            "LoRA's alone.")
    parts.append(
        f"- **Loss** (not a quality measurement). After {args.steps} steps the training loss is {loss('full')} for full "
        f"fine-tuning and {loss('lisa')} for LISA at the same rate"
        + (f" ({loss('lisa_no_emb')} without embeddings)" if "lisa_no_emb" in arms else "")
        + (f"; LoRA (at {LORA_RATE:g}) {loss('lora')}, with the `lisa` schedule {loss('lora_lisa')}"
           if {"lora", "lora_lisa"} <= arms else "")
        + ". Two layers at a time learn more slowly in so few steps; whether LISA catches up over a real run, "
        "and at what rate, is not measured here.")
    parts.append(
        f"- **Noise.** Each arm's losses are identical across repeats (same seed, one thread); its memory rise "
        f"differs by at most {spread:.0%} between repeats, in either order, and its median CPU step by at most "
        f"{cpu_spread:.0%} (the wall-clock step by more). The machine was shared with other benchmarks throughout "
        "(load average above), which is why the CPU-time column is the one to read; even it moves with the load "
        "(caches and memory bandwidth are shared), so step-time ratios are good to about +-0.1.")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gamma", type=int, default=2, help="layers trained at a time (LISA's gamma)")
    parser.add_argument("--period", type=int, default=20, help="steps between two samplings (LISA's K)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the raw rows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.report_only:
        write_rows(measure(args), RAW)
    write_report(args, read_raw())


if __name__ == "__main__":
    main()
