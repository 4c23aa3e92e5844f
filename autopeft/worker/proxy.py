"""The proxy fine-tune: one loaded base model, trial after trial.

A :class:`ProxyTrainer` loads the model, tokenizer and tokenized data once. Each
:meth:`ProxyTrainer.run` applies a structure, trains it for the fidelity's steps, scores it on the
search split (or on dev, for validation), removes the modules and reports what it measured.

One learning rate does not suit every structure: at AdamW 1e-3 a 277k-parameter LoRA on MiniLM
sat at chance loss for 150 steps while smaller ones reached 0.90 accuracy. A tuned run would have
lowered the rate, so the proxy does: a run whose loss stays at the constant-prediction level, climbs
back toward it after learning, or turns non-finite restarts at another rate. Failures (out of
memory, any exception) come back as a failed outcome with the reason; the trainer stays usable.
Nothing here depends on Ray: the Ray actor in :mod:`autopeft.worker.actor` only wraps it.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.measurement import Peak, peak_memory
from autopeft.allocation.sparse_rankings import SparseRanking
from autopeft.injection import apply_structure, reset_head
from autopeft.injection.apply import AppliedStructure
from autopeft.models import ModelRef, load_base_model, load_tokenizer
from autopeft.space.architectures import Architecture
from autopeft.space.layout import ModelLayout, read_layout
from autopeft.space.structure import LayerSchedule, Place, Structure
from autopeft.space.tuners import ranking_rule
from autopeft.tasks import Task, TaskKind, TokenizedSplit, evaluate_predictions, tokenize_split
from autopeft.tasks.metrics import constant_prediction_loss
from autopeft.trials import Fidelity, TrialOutcome, TrialRequest, TrialState, rescue_rates
from autopeft.worker.schedules import LayerSampler, train_only

EVAL_BATCH_SIZE = 64
STALL_MARGIN = 0.01
"""A run is stalled while its recent loss is within this fraction of the constant-prediction loss."""
GIVEN_BACK = 0.75
CLEAR_OF_NOISE = 5.0
"""A run has collapsed when its recent loss has given back ``GIVEN_BACK`` of what it had learnt
(from the constant-prediction level down to its best stretch), by a rise of more than
``CLEAR_OF_NOISE`` standard errors. An rsLoRA structure with rank-32 modules in
every role of two layers learnt on SST-2 (0.643 over the first 60 of 600 steps at 1e-3), then
drifted back to 0.678 over the last 60, just outside ``STALL_MARGIN`` of the constant level 0.686,
and predicted one class on dev (0.509); the same structure scored 0.81 after 150 steps. With this
rule the run restarts at 0.3x the rate and scores 0.841 on dev."""
REVISION = 4
"""Bumped whenever the proxy's behaviour changes for the same request (2: collapse after learning
counts as a stall; 3: rsLoRA keeps one alpha, 16, at every rank; 4: that alpha is 8), so that
benchmarks keyed on it never reuse rows of an older proxy that trained the structure differently
(:func:`revision_for`)."""


def revision_for(structure: Structure) -> int:
    """The latest :data:`REVISION` that changed how ``structure`` trains: 3 and 4 changed rsLoRA only."""
    if structure.lora is not None and structure.lora.variant == "rslora":
        return 4
    return 2


@dataclass
class _Run:
    """One training run: per-step losses, mean step time (s), why it stalled (None if not), and
    the layers each period of a layer schedule trained."""

    losses: list[float] = field(default_factory=list)
    step_time_s: float = 0.0
    stalled: str | None = None
    sampled_layers: list[list[int]] = field(default_factory=list)


def stall_reason(losses: list[float], window: int, constant_loss: float, learning_rate: float) -> str | None:
    """Why a run whose per-step training ``losses`` are these should restart at another rate, or
    None. The run never learnt when the mean of its last ``window`` losses is still within
    ``STALL_MARGIN`` of ``constant_loss``. It collapsed when its last stretch has given back
    ``GIVEN_BACK`` of the way from that level down to its best ``window``-step stretch (of
    consecutive, non-overlapping ones), and the rise is more than ``CLEAR_OF_NOISE`` standard errors:
    a plateau's best stretch is low by chance, and that alone must not count."""
    if not losses:
        return None
    window = max(1, min(window, len(losses)))
    tail = losses[-window:]
    recent = statistics.fmean(tail)
    if recent >= constant_loss * (1 - STALL_MARGIN):
        return (f"training loss {recent:.4f} stayed at the constant-prediction level {constant_loss:.4f} "
                f"for {len(losses)} steps (learning rate {learning_rate:g})")
    if window < 2:
        return None  # one loss per stretch: too noisy to call a collapse
    stretches = [losses[i:i + window] for i in range(0, len(losses) - window + 1, window)]
    lowest = min(stretches, key=statistics.fmean)
    best = statistics.fmean(lowest)
    spread = math.sqrt((statistics.variance(lowest) + statistics.variance(tail)) / 2)
    noise = spread * math.sqrt(2 / window)  # standard error of the difference of two stretch means
    rise = recent - best
    if rise > CLEAR_OF_NOISE * noise and rise >= GIVEN_BACK * (constant_loss - best):
        return (f"training loss rose from {best:.4f} back to {recent:.4f}, toward the constant-prediction level "
                f"{constant_loss:.4f}, by step {len(losses)} (learning rate {learning_rate:g})")
    return None


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
    inits: Mapping[str, MeasuredInit] = field(default_factory=dict)
    """Data-driven LoRA init (``eva``, ``corda``) -> its measurement, for structures that start from it."""
    rankings: Mapping[str, SparseRanking] = field(default_factory=dict)
    """Measured mask rule -> its entry ranking, for sparse updates by that rule."""


def _measured_init(inits: Mapping[str, MeasuredInit], structure: Structure
                   ) -> dict[Place, dict[str, torch.Tensor]] | None:
    """What ``structure``'s LoRA starts from when its init is data-driven, else None."""
    lora = structure.lora
    if lora is None or not lora.starts_from_measurement:
        return None
    if lora.init not in inits:
        raise TrialFailure(f"the structure's LoRA starts from the job's {lora.init} measurement, and the worker has none")
    return inits[lora.init].for_lora(lora)


def _sparse_entries(rankings: Mapping[str, SparseRanking], structure: Structure, layout: ModelLayout
                    ) -> dict[Place, torch.Tensor] | None:
    """The measured entries ``structure``'s sparse updates train, or None when they use none."""
    rule = ranking_rule(structure)
    if rule is None:
        return None
    if rule not in rankings:
        raise TrialFailure(f"the structure needs the job's {rule} ranking, and the worker has none")
    return rankings[rule].entries_for(structure, layout)


class ProxyTrainer:
    """Runs proxy fine-tunes of structures on one base model held in memory.

    Each module kind trains at its factor of the fidelity's rate (:func:`autopeft.space.tuners.rate_factor`);
    ``kind_rates=False`` trains every parameter at the fidelity's rate, for benchmarks that compare.
    """

    def __init__(self, spec: WorkerSpec, device: str | None = None, kind_rates: bool = True) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.kind_rates = kind_rates
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_base_model(spec.model, spec.task).to(self.device)
        self.model.requires_grad_(False)
        self.tokenizer = load_tokenizer(spec.model)
        self.layout = read_layout(self.model, spec.architecture)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._data: dict[tuple, tuple[TokenizedSplit, TokenizedSplit]] = {}
        self._constant_loss: dict[tuple, float | None] = {}

    def _autocast(self):
        """bf16 autocast on GPUs (weights stay float32); a no-op on CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def data(self, fidelity: Fidelity, split: str = "search") -> tuple[TokenizedSplit, TokenizedSplit]:
        """Tokenized (train subset, scored subset) for a fidelity and scored split, built once each.

        ``split`` is ``search`` (what a search chooses on) or ``dev`` (only for validation and
        reports); a task without a search split cannot be searched.
        """
        key = _data_key(fidelity, split)
        if key not in self._data:
            task, seed = self.spec.task, self.spec.data_seed
            scored = {"search": task.search, "dev": task.dev}[split]
            if scored is None:
                raise ValueError(f"task {task.name} has no search split; prepare the job (with_search_split)")
            train = task.train.subset(fidelity.train_examples, seed)
            if fidelity.eval_examples is not None:
                scored = scored.subset(fidelity.eval_examples, seed)
            self._data[key] = (
                tokenize_split(train, task.kind, self.tokenizer, fidelity.max_length),
                tokenize_split(scored, task.kind, self.tokenizer, fidelity.max_length),
            )
            self._constant_loss[key] = constant_prediction_loss(task.kind, train.labels)
        return self._data[key]

    def run(self, request: TrialRequest) -> TrialOutcome:
        """Train and score one structure; never raises for a failing trial."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        with peak_memory(self.device) as peak:
            try:
                metrics, trainable, step_time = self._train_and_score(request, timings)
            except TrialFailure as failure:
                return self._failed(request, str(failure), started, peak, timings)
            except Exception as exc:  # noqa: BLE001 - any crash fails this trial, not the search
                return self._failed(request, _reason(exc), started, peak, timings)
        if request.expected_params is not None and trainable != request.expected_params:
            reason = f"built model has {trainable} trainable parameters, the exact count predicted {request.expected_params}"
            return self._failed(request, reason, started, peak, timings)
        peak_bytes = peak.bytes
        warmup = self._warmup_of(Structure.from_json(request.structure))
        if warmup is not None:
            timings["lottery_warmup"] = warmup.seconds
            step_time += warmup.seconds / request.fidelity.steps
            peak_bytes = max(peak_bytes, warmup.warmup_peak_bytes or 0)
        return TrialOutcome(
            trial_id=request.trial_id,
            state=TrialState.COMPLETED,
            worker=self.name,
            metrics=metrics,
            trainable_params=trainable,
            peak_memory_bytes=peak_bytes,
            wall_time_s=time.perf_counter() - started,
            step_time_s=step_time,
            timings=timings,
        )

    def _warmup_of(self, structure: Structure) -> SparseRanking | None:
        """The lottery ranking whose dense warm-up ``structure`` needs, else None.

        LT-SFT trains densely before every sparse fine-tune; a job runs that warm-up once and
        every lottery trial reuses it, so each such trial is charged it as a user would pay it:
        its seconds spread over the trial's steps (in ``step_time_s``, and as ``timings``'
        ``lottery_warmup``) and its peak memory as a floor of the trial's. ``wall_time_s`` and
        the job's worker-hours stay what the worker spent.
        """
        return self.spec.rankings.get("lottery") if ranking_rule(structure) == "lottery" else None

    def score_untrained(self, request: TrialRequest) -> dict[str, float]:
        """Metrics on the request's split with freshly initialised modules (step 0)."""
        _, scored = self.data(request.fidelity, request.split)
        torch.manual_seed(request.seed)
        reset_head(self.model, self.layout, request.seed)
        structure = Structure.from_json(request.structure)
        applied = self._apply(structure, request.fidelity.steps)
        try:
            return self._score(scored)
        finally:
            applied.remove()

    def _apply(self, structure: Structure, total_steps: int) -> AppliedStructure:
        return apply_structure(self.model, structure, self.layout, _measured_init(self.spec.inits, structure),
                               total_steps, _sparse_entries(self.spec.rankings, structure, self.layout))

    def _failed(
        self, request: TrialRequest, reason: str, started: float, peak: Peak, timings: dict[str, float]
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
        """Returns (metrics, trainable parameters, mean step time); fills ``timings`` (s).

        A run whose loss stalls at the constant-prediction level, or turns non-finite, starts
        again from a fresh initialisation at the next rate of ``RESCUE_FACTORS``, up to
        ``fidelity.lr_rescues`` times; every restart's time is part of the trial's.
        """
        fidelity = request.fidelity
        with _timed(timings, "data"):
            train, scored = self.data(fidelity, request.split)
        constant_loss = self._constant_loss[_data_key(fidelity, request.split)]
        rates = rescue_rates(fidelity.learning_rate, fidelity.lr_rescues)
        for rescue, learning_rate in enumerate(rates):
            last_try = rescue == len(rates) - 1
            with _timed(timings, "inject"):
                torch.manual_seed(request.seed)
                reset_head(self.model, self.layout, request.seed)
                structure = Structure.from_json(request.structure)
                applied = self._apply(structure, fidelity.steps)
            try:
                with _timed(timings, "train"):
                    run = self._train(applied, structure.schedule, train, fidelity, request.seed, learning_rate,
                                      None if last_try else constant_loss)
                if run.stalled is None:  # the last try is never judged stalled: it is scored as it is
                    with _timed(timings, "evaluate"):
                        metrics = self._score(scored)
                    break
            finally:
                with _timed(timings, "remove"):
                    applied.remove()
        tail = max(1, len(run.losses) // 10)
        metrics["train_loss_first"] = sum(run.losses[:tail]) / tail
        metrics["train_loss_last"] = sum(run.losses[-tail:]) / tail
        metrics["learning_rate"] = learning_rate
        metrics["lr_rescues"] = float(rescue)
        return metrics, applied.num_trainable, run.step_time_s

    def _train(
        self, applied: AppliedStructure, schedule: LayerSchedule | None, train: TokenizedSplit, fidelity: Fidelity,
        seed: int, learning_rate: float, constant_loss: float | None,
    ) -> _Run:
        """AdamW with linear warm-up (10%) and decay; see :class:`_Run`. Each module kind trains at
        ``learning_rate`` times its factor (:meth:`AppliedStructure.optimizer_groups`) unless
        ``kind_rates`` is off.

        With a layer ``schedule`` (LISA / IST), each period trains the sampled layers' parameters
        and the head with a fresh optimizer (:mod:`autopeft.worker.schedules`).

        With ``constant_loss`` set, the run stops early as stalled when its loss is non-finite, or
        when :func:`stall_reason` (over stretches of 10% of the steps) says so halfway through or at
        the end. Without it a non-finite loss fails.
        """
        sampler = LayerSampler(schedule, applied.parameters_by_layer(self.layout), seed) if schedule else None
        optimizer = torch.optim.AdamW(applied.optimizer_groups(), lr=learning_rate, weight_decay=0.0)
        warmup = max(1, fidelity.steps // 10)
        checks = {max(1, fidelity.steps // 2), fidelity.steps}
        window = max(1, fidelity.steps // 10)
        self.model.train()
        run = _Run()
        started = time.perf_counter()
        try:
            for step, indices in enumerate(training_batches(len(train), fidelity.batch_size, fidelity.steps, seed)):
                if sampler is not None and sampler.starts_period(step):
                    layers, active = sampler.sample()
                    train_only(applied.parameters, active)
                    optimizer = torch.optim.AdamW(applied.optimizer_groups(active), lr=learning_rate, weight_decay=0.0)
                    run.sampled_layers.append(layers)
                for group in optimizer.param_groups:
                    factor = group["rate_factor"] if self.kind_rates else 1.0
                    group["lr"] = learning_rate * factor * _warmup_decay(step, warmup, fidelity.steps)
                batch = {k: v.to(self.device) for k, v in train.batch(indices).items()}
                with self._autocast():
                    loss, task_loss = applied.training_loss(**batch)
                if not torch.isfinite(loss):
                    run.stalled = f"non-finite loss ({loss.item()}) at step {step} (learning rate {learning_rate:g})"
                    if constant_loss is None:
                        raise TrialFailure(run.stalled)
                    break
                loss.backward()
                optimizer.step()
                applied.after_optimizer_step(step)
                optimizer.zero_grad(set_to_none=True)
                run.losses.append(task_loss.item())
                if constant_loss is not None and step + 1 in checks:
                    run.stalled = stall_reason(run.losses, window, constant_loss, learning_rate)
                    if run.stalled is not None:
                        break
        finally:
            self.model.eval()
            self.model.zero_grad(set_to_none=True)
            train_only(applied.parameters, applied.parameters)
        run.step_time_s = (time.perf_counter() - started) / max(1, len(run.losses))
        return run

    @torch.inference_mode()
    def _score(self, scored: TokenizedSplit) -> dict[str, float]:
        """Metrics of the task on a scored split, plus ``loss``: mean cross-entropy (nats; MSE for regression)."""
        kind = self.spec.task.kind
        outputs, labels, loss_sum, count = [], [], 0.0, 0
        # Batches of similar lengths pad little; the metrics do not depend on the order.
        by_length = sorted(range(len(scored)), key=lambda i: len(scored.input_ids[i]))
        for start in range(0, len(scored), EVAL_BATCH_SIZE):
            indices = by_length[start : start + EVAL_BATCH_SIZE]
            batch = {k: v.to(self.device) for k, v in scored.batch(indices).items()}
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
        predictions = torch.cat(outputs).cpu().numpy()
        metrics = evaluate_predictions(kind, predictions, torch.cat(labels).cpu().numpy())
        if kind is TaskKind.CLASSIFICATION:
            metrics["predicted_classes"] = float(len(set(predictions.tolist())))
        return {**metrics, "loss": mean_loss}


def _data_key(fidelity: Fidelity, split: str) -> tuple:
    """What the tokenized data of a fidelity depends on."""
    return fidelity.train_examples, fidelity.eval_examples, fidelity.max_length, split


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


def _warmup_decay(step: int, warmup: int, steps: int) -> float:
    """transformers' linear schedule: 0 -> 1 over ``warmup`` steps, then linearly to 0 at ``steps``."""
    if step < warmup:
        return step / warmup
    return max(0.0, (steps - step) / max(1, steps - warmup))


def training_batches(size: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """``steps`` batches of indices, reshuffled every pass over the data (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += torch.randperm(size, generator=generator).tolist()
        yield order[:batch_size]
        del order[:batch_size]
