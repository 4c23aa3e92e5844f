"""Load a resolved model with the head its task needs, or only its skeleton on the meta device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from autopeft.errors import ModelError
from autopeft.models.resolve import ModelRef
from autopeft.tasks import Task, TaskKind


@dataclass(frozen=True)
class TaskHead:
    """What a model's head depends on: the task kind and its number of outputs."""

    kind: TaskKind
    num_labels: int

    @classmethod
    def of(cls, task: Task) -> TaskHead:
        return cls(task.kind, task.num_labels)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence load reports and progress bars (a fresh head is expected to be 'missing')."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_config(ref: ModelRef, task: Task | TaskHead) -> PretrainedConfig:
    """The model's config with the task's head settings applied."""
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(ref.path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the config of model '{ref.name}': {exc}".splitlines()[0]) from exc
    if task.kind is not TaskKind.CAUSAL_LM:
        config.num_labels = task.num_labels
        config.problem_type = (
            "regression" if task.kind is TaskKind.REGRESSION else "single_label_classification"
        )
        if getattr(config, "pad_token_id", None) is None:
            # Decoder classifiers pick the last non-pad token, so they need a pad id.
            config.pad_token_id = getattr(config, "eos_token_id", None)
    return config


def _model_class(task: Task | TaskHead) -> type:
    if task.kind is TaskKind.CAUSAL_LM:
        return AutoModelForCausalLM
    return AutoModelForSequenceClassification


def load_base_model(ref: ModelRef, task: Task | TaskHead) -> PreTrainedModel:
    """Load pretrained weights (float32, CPU) with a freshly initialised task head."""
    config = load_config(ref, task)
    try:
        with _quiet_transformers():
            model = _model_class(task).from_pretrained(ref.path, config=config, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model '{ref.name}': {exc}".splitlines()[0]) from exc
    model.eval()
    return model


def build_skeleton(ref: ModelRef, task: Task | TaskHead) -> PreTrainedModel:
    """The model's module tree on the meta device: shapes without weights, in milliseconds."""
    config = load_config(ref, task)
    with _quiet_transformers(), torch.device("meta"):
        return _model_class(task).from_config(config)


def load_tokenizer(ref: ModelRef) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with EOS as padding when the model defines no pad token."""
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(ref.path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer of '{ref.name}': {exc}".splitlines()[0]) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
