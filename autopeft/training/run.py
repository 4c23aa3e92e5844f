"""``autopeft train``: the full-fidelity run of an exported structure.

The Hugging Face ``Trainer`` trains the structure on the task's training split (or a seeded
subset), scores the search split after every epoch, and keeps the adapter of the best epoch on
disk (by the task's metric), so the folder always holds the best adapter so far. Only the kept
adapter is scored on dev, once, at the end: choosing the epoch on dev would make the reported dev
score optimistic. A long run has the proxy's stall rescue: when its training loss stays at the
constant-prediction level, climbs back toward it after learning, or turns non-finite (checked
halfway and at the end), it starts again from the same initialisation at the next rate of
``RESCUE_FACTORS``; the kept adapter is the best epoch of any attempt, by the search split. A
task without a search split gets the default one carved from its training split. A summary
with every epoch's search metrics and the final dev metrics is written next to the adapter as
``training_summary.json``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, PrinterCallback, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

from autopeft.export.autopeft_format import AutopeftConfig
from autopeft.export.compeft import fingerprint
from autopeft.models import ModelRef, TaskHead, load_base_model, load_tokenizer
from autopeft.tasks import METRIC_GOALS, Task, TaskKind, evaluate_predictions, tokenize_split
from autopeft.tasks.holdout import with_search_split
from autopeft.tasks.metrics import METRICS_BY_KIND, constant_prediction_loss
from autopeft.training.data import RowDataset, collate_rows
from autopeft.training.model import TrainableModel, prepare_model
from autopeft.training.options import TrainingOptions
from autopeft.trials import rescue_rates
from autopeft.worker.proxy import stall_reason

SUMMARY_NAME = "training_summary.json"


AT_MAJORITY = 0.005
"""Dev accuracy within this much of the majority class's counts as having learnt nothing."""


@dataclass
class TrainingResult:
    """What a run achieved.

    Attributes:
        metric: the task metric that chose the best epoch.
        best: search-split metrics of the best epoch (plus its ``epoch``, ``step`` and the
            ``learning_rate`` of its attempt).
        dev: dev metrics of the kept (best-epoch) adapter, scored once after training.
        history: search-split metrics after every epoch of every attempt.
        steps: optimizer steps of the last attempt.
        train_seconds: wall time of training and scoring.
        adapter_format: ``peft`` or ``autopeft``.
        out_dir: where the adapter and the summary are.
        train_examples, search_examples, dev_examples: examples trained on, chosen on, reported on.
        baseline: dev metrics of always predicting the majority class (classification only).
        options: the :class:`TrainingOptions` of the run.
        origin: the job and trial the structure came from (the config's ``origin``), or None.
        initial_fingerprint: :func:`~autopeft.export.compeft.fingerprint` of the trainable tensors
            before training, so that ``export --compress`` can verify a rebuilt initialisation.
        restarts: the attempts given up as stalled, in order: their ``learning_rate``, ``steps``
            and ``reason``.
    """

    metric: str
    best: dict[str, float]
    dev: dict[str, float]
    history: list[dict[str, float]]
    steps: int
    train_seconds: float
    adapter_format: str
    out_dir: Path
    train_examples: int
    search_examples: int
    dev_examples: int
    baseline: dict[str, float] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] | None = None
    initial_fingerprint: str | None = None
    restarts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def learning_rates(self) -> list[float]:
        """Every attempt's learning rate, in order (one unless the run restarted)."""
        return [restart["learning_rate"] for restart in self.restarts] + [self.history[-1]["learning_rate"]]

    @property
    def learned_nothing(self) -> bool:
        """A classifier whose dev accuracy is within ``AT_MAJORITY`` of always predicting the
        majority class: the run collapsed or never learnt (a rate too high or too low for it)."""
        if not self.baseline or "accuracy" not in self.dev:
            return False
        return self.dev["accuracy"] <= self.baseline["accuracy"] + AT_MAJORITY

    def summary_line(self) -> str:
        others = ", ".join(f"{k} {v:.4f}" for k, v in self.dev.items() if k != self.metric)
        baseline = f"; majority class {self.baseline[self.metric]:.4f}" if self.baseline else ""
        restarts = "".join(f"; restarted after {restart['steps']} steps at {restart['learning_rate']:g}: "
                           f"{restart['reason']}" for restart in self.restarts)
        kept_rate = f" (learning rate {self.best['learning_rate']:g})" if self.restarts else ""
        return (
            f"dev {self.metric} {self.dev[self.metric]:.4f} ({others}){baseline}; epoch {self.best['epoch']:g}"
            f"{kept_rate} chosen by search-split {self.metric} {self.best[self.metric]:.4f}{restarts}; "
            f"{self.steps} steps in {self.train_seconds:.0f} s; {self.adapter_format} adapter in {self.out_dir}"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "out_dir": str(self.out_dir)}


class _KeepBestAdapter(TrainerCallback):
    """After every evaluation on the search split: record its metrics, and when they improved,
    save the adapter and keep a copy of the trainable weights to score on dev at the end.

    One keeper serves every attempt of a run (:meth:`start` names the attempt's model), so the
    best epoch is chosen across attempts. Attempts are built alike from the same seed and differ
    only in their trainable weights, so the best weights restore into the last attempt's model.
    """

    def __init__(self, out_dir: Path, kind: TaskKind, metric: str) -> None:
        self.out_dir, self.kind, self.metric = out_dir, kind, metric
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self._best_weights: dict[str, torch.Tensor] = {}

    def start(self, trainable: TrainableModel, learning_rate: float) -> None:
        self.trainable, self.learning_rate = trainable, learning_rate

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        scores = _eval_scores(metrics, self.kind)
        scores.update(epoch=round(state.epoch or 0.0, 4), step=state.global_step, learning_rate=self.learning_rate)
        self.history.append(scores)
        if self.best is None or _better(scores[self.metric], self.best[self.metric], self.metric):
            self.best = scores
            self.trainable.save(self.out_dir)
            self._best_weights = {
                name: p.detach().clone() for name, p in self.trainable.model.named_parameters() if p.requires_grad
            }

    def restore_best(self) -> None:
        """Put the best epoch's trainable weights into the current attempt's model."""
        with torch.no_grad():
            for name, parameter in self.trainable.model.named_parameters():
                if name in self._best_weights:
                    parameter.copy_(self._best_weights[name])


class _WatchLoss(TrainerCallback):
    """Records every step's training loss (the Trainer logs each step) and stops the attempt as
    stalled when the loss turns non-finite, or when :func:`~autopeft.worker.proxy.stall_reason`
    (over stretches of 10% of the steps) says so halfway through or at the end, as the proxy
    checks. A task without a constant-prediction level (causal LM) is only checked for non-finite loss."""

    def __init__(self, constant_loss: float | None, learning_rate: float) -> None:
        self.constant_loss, self.learning_rate = constant_loss, learning_rate
        self.losses: list[float] = []
        self.stalled: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.stalled = (f"non-finite loss ({loss}) at step {state.global_step} "
                            f"(learning rate {self.learning_rate:g})")
        elif self.constant_loss is not None and state.global_step in {max(1, state.max_steps // 2), state.max_steps}:
            window = max(1, state.max_steps // 10)
            self.stalled = stall_reason(self.losses, window, self.constant_loss, self.learning_rate)
        if self.stalled is not None:
            control.should_training_stop = True


class _AfterOptimizerStep(TrainerCallback):
    """Runs a structure's per-step update (AdaLoRA's rank allocation) after each optimizer step,
    while the gradients it scores are still there (the Trainer clears them before ``on_step_end``)."""

    def __init__(self, update: Callable[[int], None]) -> None:
        self.update = update

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.update(state.global_step)


def _eval_scores(metrics: dict[str, float], kind: TaskKind) -> dict[str, float]:
    """The Trainer's ``eval_*`` metrics as the task's metrics (perplexity added for causal LM)."""
    scores = {name: metrics[f"eval_{name}"] for name in METRICS_BY_KIND[kind] if f"eval_{name}" in metrics}
    scores["loss"] = metrics["eval_loss"]
    if kind is TaskKind.CAUSAL_LM:
        scores.update(evaluate_predictions(kind, None, None, loss=scores["loss"]))
    return scores


def _better(value: float, best: float, metric: str) -> bool:
    if math.isnan(value):
        return False
    return value > best if METRIC_GOALS[metric] == "max" else value < best


def _metric_function(kind: TaskKind):
    """compute_metrics for the Trainer: the task's metrics from logits; none for causal LM."""
    if kind is TaskKind.CAUSAL_LM:
        return None

    def task_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        outputs = logits if kind is TaskKind.CLASSIFICATION else np.asarray(logits).reshape(-1)
        return evaluate_predictions(kind, outputs, prediction.label_ids)

    return task_metrics


def majority_baseline(task: Task) -> dict[str, float] | None:
    """Dev metrics of predicting the most frequent training label everywhere (classification)."""
    if task.kind is not TaskKind.CLASSIFICATION:
        return None
    majority = Counter(task.train.labels).most_common(1)[0][0]
    return evaluate_predictions(task.kind, [majority] * len(task.dev), list(task.dev.labels))


def train_config(
    config: AutopeftConfig, model: ModelRef, task: Task, options: TrainingOptions, out_dir: Path
) -> TrainingResult:
    """Train ``config``'s structure on ``task`` and save the best epoch's adapter into ``out_dir``."""
    options.check()
    head = TaskHead(config.head.kind, config.head.num_labels)
    if task.search is None:
        task = with_search_split(task, seed=options.seed)
    steps = total_steps(len(task.train), options)
    return train_model(lambda: prepare_model(load_base_model(model, head), config, steps), model, task, options,
                       out_dir, origin=config.origin)


def total_steps(available: int, options: TrainingOptions) -> int:
    """Optimizer steps of a run over ``available`` training examples, counted as the Trainer counts them."""
    examples = min(available, options.train_examples or available)
    return max(1, math.ceil(options.epochs * math.ceil(examples / options.batch_size)))


def train_model(
    build: Callable[[], TrainableModel], model: ModelRef, task: Task, options: TrainingOptions, out_dir: Path,
    origin: dict[str, Any] | None = None,
) -> TrainingResult:
    """Train the model ``build`` prepares on ``task``; ``out_dir`` receives the best epoch's adapter.

    :func:`train_config` builds a structure; benchmarks also build baselines such as full
    fine-tuning. Every attempt seeds (``set_seed(options.seed)``) and then calls ``build``, so each
    starts from the same initialisation. An attempt whose training loss stalls (:class:`_WatchLoss`)
    stops, and the next one trains at the next rate of ``RESCUE_FACTORS``, up to
    ``options.lr_rescues`` times; the last attempt is never judged stalled.
    """
    options.check()
    if task.search is None:
        task = with_search_split(task, seed=options.seed)
    tokenizer = load_tokenizer(model)
    train_split = task.train
    if options.train_examples is not None:
        train_split = train_split.subset(options.train_examples, options.seed)
    train = tokenize_split(train_split, task.kind, tokenizer, options.max_length)
    search = tokenize_split(task.search, task.kind, tokenizer, options.max_length)
    dev = tokenize_split(task.dev, task.kind, tokenizer, options.max_length)
    out_dir = Path(out_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    keeper = _KeepBestAdapter(out_dir, task.kind, task.metric)
    constant_loss = constant_prediction_loss(task.kind, train.labels)
    rates = rescue_rates(options.learning_rate, options.lr_rescues)
    restarts: list[dict[str, Any]] = []
    started = time.perf_counter()
    # The Trainer warns about every unused TrainingArguments default; failures still raise.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with tempfile.TemporaryDirectory(prefix="autopeft-train-") as scratch:
            for attempt, rate in enumerate(rates):
                set_seed(options.seed)
                trainable = build()
                initial_fingerprint = fingerprint(p for p in trainable.model.parameters() if p.requires_grad)
                watch = _WatchLoss(constant_loss, rate) if attempt < len(rates) - 1 else None
                trainer = _train_attempt(trainable, replace(options, learning_rate=rate), keeper, watch,
                                         RowDataset(train), RowDataset(search), task.kind, scratch)
                if watch is None or watch.stalled is None:
                    break
                restarts.append({"learning_rate": rate, "steps": trainer.state.global_step, "reason": watch.stalled})
                keeper.trainable = trainer = trainable = None  # no second model in memory while the next builds
            keeper.restore_best()
            trainer.remove_callback(keeper)
            dev_scores = _eval_scores(trainer.evaluate(eval_dataset=RowDataset(dev)), task.kind)
    finally:
        hf_logging.set_verbosity(verbosity)
    result = TrainingResult(
        metric=task.metric,
        best=keeper.best,
        dev=dev_scores,
        history=keeper.history,
        steps=trainer.state.global_step,
        train_seconds=time.perf_counter() - started,
        adapter_format=trainable.adapter_format,
        out_dir=out_dir,
        train_examples=len(train),
        search_examples=len(search),
        dev_examples=len(dev),
        baseline=majority_baseline(task),
        options=asdict(options),
        origin=origin,
        initial_fingerprint=initial_fingerprint,
        restarts=restarts,
    )
    (out_dir / SUMMARY_NAME).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _train_attempt(
    trainable: TrainableModel, options: TrainingOptions, keeper: _KeepBestAdapter, watch: _WatchLoss | None,
    train: RowDataset, search: RowDataset, kind: TaskKind, scratch: str,
) -> Trainer:
    """One attempt at ``options.learning_rate``: train, score the search split after every epoch
    (and at the end when no epoch ended), and return the Trainer for the dev score."""
    keeper.start(trainable, options.learning_rate)
    optimizer = torch.optim.AdamW(trainable.optimizer_groups(options.learning_rate), weight_decay=0.0)
    callbacks = [keeper, *([_AfterOptimizerStep(trainable.after_optimizer_step)] if trainable.after_optimizer_step
                           else []), *([watch] if watch else [])]
    trainer = Trainer(
        model=trainable.model,
        args=_training_arguments(options, scratch, kind),
        optimizers=(optimizer, None),
        train_dataset=train,
        eval_dataset=search,
        data_collator=collate_rows,
        compute_metrics=_metric_function(kind),
        callbacks=callbacks,
    )
    # Without progress bars the Trainer prints every log dict; the caller reports the result.
    trainer.remove_callback(PrinterCallback)
    scored = len(keeper.history)
    trainer.train()
    if len(keeper.history) == scored:  # fewer than one epoch: score the end of training
        trainer.evaluate()
    return trainer


def score_dev(model: torch.nn.Module, model_ref: ModelRef, task: Task, options: TrainingOptions) -> dict[str, float]:
    """The task's metrics (and loss) of ``model`` as it is on the dev split, scored as training scores it."""
    dev = tokenize_split(task.dev, task.kind, load_tokenizer(model_ref), options.max_length)
    with tempfile.TemporaryDirectory(prefix="autopeft-score-") as scratch:
        trainer = Trainer(
            model=model, args=_training_arguments(options, scratch, task.kind), eval_dataset=RowDataset(dev),
            data_collator=collate_rows, compute_metrics=_metric_function(task.kind),
        )
        trainer.remove_callback(PrinterCallback)
        return _eval_scores(trainer.evaluate(), task.kind)


def _training_arguments(options: TrainingOptions, scratch: str, kind: TaskKind) -> TrainingArguments:
    return TrainingArguments(
        output_dir=scratch,
        num_train_epochs=options.epochs,
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup,
        weight_decay=0.0,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        eval_strategy="epoch",
        # The callback keeps the best adapter; Trainer checkpoints would hold optimizer state too.
        save_strategy="no",
        # Every step's loss reaches _WatchLoss, unfiltered: a non-finite loss is a stall.
        logging_strategy="steps",
        logging_steps=1,
        logging_nan_inf_filter=False,
        seed=options.seed,
        data_seed=options.seed,
        label_names=["labels"],
        remove_unused_columns=False,
        prediction_loss_only=kind is TaskKind.CAUSAL_LM,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
