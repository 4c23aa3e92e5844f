"""The proxy fine-tune: one loaded base model, trial after trial.

A :class:`ProxyTrainer` loads the model, tokenizer and tokenized data once. Each
:meth:`ProxyTrainer.run` applies a structure, trains it for the fidelity's steps, scores it on the
dev subset, removes the modules and reports what it measured. Failures (non-finite loss, out of
memory, any exception) come back as a failed outcome with the reason; the trainer stays usable.
Nothing here depends on Ray: the Ray actor in :mod:`autopeft.worker.actor` only wraps it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import torch
from transformers import get_linear_schedule_with_warmup

from autopeft.injection import apply_structure, reset_head
from autopeft.models import ModelRef, load_base_model, load_tokenizer
from autopeft.space.architectures import Architecture
from autopeft.space.layout import read_layout
from autopeft.space.structure import Structure
from autopeft.tasks import Task, TaskKind, TokenizedSplit, evaluate_predictions, tokenize_split
from autopeft.trials import Fidelity, TrialOutcome, TrialRequest, TrialState

EVAL_BATCH_SIZE = 64


class TrialFailure(Exception):
    """A trial that cannot finish; its message is the reason stored with the trial."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to load once: model, task, layout override and data seed."""

    model: ModelRef
    task: Task
    architecture: Architecture | None = None
    data_seed: int = 0
    threads: int | None = None


class ProxyTrainer:
    """Runs proxy fine-tunes of structures on one base model held in memory."""

    def __init__(self, spec: WorkerSpec, device: str | None = None) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_base_model(spec.model, spec.task).to(self.device)
        self.model.requires_grad_(False)
        self.tokenizer = load_tokenizer(spec.model)
        self.layout = read_layout(self.model, spec.architecture)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._data: dict[tuple, tuple[TokenizedSplit, TokenizedSplit]] = {}

    def _autocast(self):
        """bf16 autocast on GPUs (weights stay float32); a no-op on CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def data(self, fidelity: Fidelity) -> tuple[TokenizedSplit, TokenizedSplit]:
        """Tokenized (train, dev) subsets for a fidelity, built once per distinct fidelity."""
        key = (fidelity.train_examples, fidelity.eval_examples, fidelity.max_length)
        if key not in self._data:
            task, seed = self.spec.task, self.spec.data_seed
            train = task.train.subset(fidelity.train_examples, seed)
            dev = task.dev if fidelity.eval_examples is None else task.dev.subset(fidelity.eval_examples, seed)
            self._data[key] = (
                tokenize_split(train, task.kind, self.tokenizer, fidelity.max_length),
                tokenize_split(dev, task.kind, self.tokenizer, fidelity.max_length),
            )
        return self._data[key]

    def run(self, request: TrialRequest) -> TrialOutcome:
        """Train and score one structure; never raises for a failing trial."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        with _peak_memory(self.device) as peak:
            try:
                metrics, trainable, step_time = self._train_and_score(request, timings)
            except TrialFailure as failure:
                return self._failed(request, str(failure), started, peak, timings)
            except Exception as exc:  # noqa: BLE001 - any crash fails this trial, not the search
                return self._failed(request, _reason(exc), started, peak, timings)
        return TrialOutcome(
            trial_id=request.trial_id,
            state=TrialState.COMPLETED,
            worker=self.name,
            metrics=metrics,
            trainable_params=trainable,
            peak_memory_bytes=peak.bytes,
            wall_time_s=time.perf_counter() - started,
            step_time_s=step_time,
            timings=timings,
        )

    def score_untrained(self, request: TrialRequest) -> dict[str, float]:
        """Dev metrics of a request's structure with freshly initialised modules (step 0)."""
        _, dev = self.data(request.fidelity)
        torch.manual_seed(request.seed)
        reset_head(self.model, self.layout, request.seed)
        applied = apply_structure(self.model, Structure.from_json(request.structure), self.layout)
        try:
            return self._score(dev)
        finally:
            applied.remove()

    def _failed(
        self, request: TrialRequest, reason: str, started: float, peak: _Peak, timings: dict[str, float]
    ) -> TrialOutcome:
        self.model.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return TrialOutcome(
            trial_id=request.trial_id,
            state=TrialState.FAILED,
            worker=self.name,
            peak_memory_bytes=peak.bytes,
            wall_time_s=time.perf_counter() - started,
            error=reason.splitlines()[0][:500],
            timings=timings,
        )

    def _train_and_score(
        self, request: TrialRequest, timings: dict[str, float]
    ) -> tuple[dict[str, float], int, float]:
        """Returns (dev metrics, trainable parameters, mean step time); fills ``timings`` (s)."""
        fidelity = request.fidelity
        with _timed(timings, "data"):
            train, dev = self.data(fidelity)
        with _timed(timings, "inject"):
            torch.manual_seed(request.seed)
            reset_head(self.model, self.layout, request.seed)
            applied = apply_structure(self.model, Structure.from_json(request.structure), self.layout)
        try:
            with _timed(timings, "train"):
                losses, step_time = self._train(applied.parameters, train, fidelity, request.seed)
            with _timed(timings, "evaluate"):
                metrics = self._score(dev)
        finally:
            with _timed(timings, "remove"):
                applied.remove()
        tail = max(1, len(losses) // 10)
        metrics["train_loss_first"] = sum(losses[:tail]) / tail
        metrics["train_loss_last"] = sum(losses[-tail:]) / tail
        return metrics, applied.num_trainable, step_time

    def _train(self, parameters, train: TokenizedSplit, fidelity: Fidelity, seed: int) -> tuple[list[float], float]:
        """AdamW with linear warm-up (10%) and decay; returns per-step losses and mean step time (s)."""
        optimizer = torch.optim.AdamW(parameters, lr=fidelity.learning_rate, weight_decay=0.0)
        schedule = get_linear_schedule_with_warmup(optimizer, max(1, fidelity.steps // 10), fidelity.steps)
        self.model.train()
        losses = []
        started = time.perf_counter()
        try:
            for step, indices in enumerate(training_batches(len(train), fidelity.batch_size, fidelity.steps, seed)):
                batch = {k: v.to(self.device) for k, v in train.batch(indices).items()}
                with self._autocast():
                    loss = self.model(**batch).loss
                if not torch.isfinite(loss):
                    raise TrialFailure(f"non-finite loss ({loss.item()}) at step {step}")
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
        finally:
            self.model.eval()
        return losses, (time.perf_counter() - started) / max(1, len(losses))

    @torch.no_grad()
    def _score(self, dev: TokenizedSplit) -> dict[str, float]:
        """Dev metrics of the task, plus ``loss``: mean cross-entropy (nats; MSE for regression)."""
        kind = self.spec.task.kind
        outputs, labels, loss_sum, count = [], [], 0.0, 0
        for start in range(0, len(dev), EVAL_BATCH_SIZE):
            indices = range(start, min(start + EVAL_BATCH_SIZE, len(dev)))
            batch = {k: v.to(self.device) for k, v in dev.batch(indices).items()}
            target = batch.pop("labels")
            with self._autocast():
                logits = self.model(**batch).logits.float()
            if kind is TaskKind.CAUSAL_LM:
                batch_loss, batch_count = _token_loss(logits, target)
            else:
                prediction = logits.argmax(-1) if kind is TaskKind.CLASSIFICATION else logits.squeeze(-1)
                outputs.append(prediction)
                labels.append(target)
                batch_loss, batch_count = _example_loss(logits, target, kind), len(target)
            loss_sum, count = loss_sum + batch_loss, count + batch_count
        mean_loss = loss_sum / max(count, 1)
        if kind is TaskKind.CAUSAL_LM:
            return evaluate_predictions(kind, None, None, loss=mean_loss)
        metrics = evaluate_predictions(kind, torch.cat(outputs).cpu().numpy(), torch.cat(labels).cpu().numpy())
        return {**metrics, "loss": mean_loss}


def _example_loss(logits: torch.Tensor, target: torch.Tensor, kind: TaskKind) -> float:
    """Summed cross-entropy over a batch (classification) or summed squared error (regression)."""
    if kind is TaskKind.CLASSIFICATION:
        return torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
    return torch.nn.functional.mse_loss(logits.squeeze(-1), target.float(), reduction="sum").item()


def _reason(exc: Exception) -> str:
    """A failure reason; allocation failures read 'out of memory' on every device."""
    message = str(exc).strip()
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "can't allocate memory" in message:
        return f"out of memory: {type(exc).__name__}: {message}"
    return f"{type(exc).__name__}: {message}"


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - started


def _token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """Summed next-token cross-entropy (nats) and the number of scored tokens; labels (B, T), -100 ignored."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=-100, reduction="sum")
    return loss.item(), int((shifted_labels != -100).sum())


def training_batches(size: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """``steps`` batches of indices, reshuffled every pass over the data (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += torch.randperm(size, generator=generator).tolist()
        yield order[:batch_size]
        del order[:batch_size]


class _Peak:
    bytes: int | None = None


@contextmanager
def _peak_memory(device: torch.device, interval_s: float = 0.02) -> Iterator[_Peak]:
    """Peak memory while the block runs: allocated accelerator memory, or the process's RSS (bytes)."""
    peak = _Peak()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        try:
            yield peak
        finally:
            peak.bytes = torch.cuda.max_memory_allocated(device)
        return
    process, done = psutil.Process(), threading.Event()
    peak.bytes = process.memory_info().rss

    def sample() -> None:
        while not done.wait(interval_s):
            peak.bytes = max(peak.bytes, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.bytes = max(peak.bytes, process.memory_info().rss)
