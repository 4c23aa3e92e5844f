"""What ``autopeft train`` trains: a stored trial or an autopeft export, its model and its task."""

from __future__ import annotations

from autopeft.errors import AutopeftError, ModelError
from autopeft.export import export_source
from autopeft.export.autopeft_format import AutopeftConfig, config_of
from autopeft.models import ModelRef, resolve_model
from autopeft.store import JobRecord, Store, TrialRecord
from autopeft.tasks import Task, load_task


def config_of_trial(job: JobRecord, trial: TrialRecord, store: Store | None = None) -> AutopeftConfig:
    """The autopeft config of a completed trial (ExportError for any other); ``store`` holds the
    job's EVA vectors when the trial's LoRA starts from them."""
    return config_of(export_source(job, trial, store))


def model_of(config: AutopeftConfig) -> ModelRef:
    """The config's model by the name the search used, or else by its hub id."""
    try:
        return resolve_model(config.model)
    except ModelError:
        return resolve_model(config.base_model)


def task_of(config: AutopeftConfig, source: str | None = None) -> Task:
    """The task to train on: ``source`` when given, else the one the config's job searched on.

    AutopeftError when there is none, or when its kind or labels do not fit the config's head.
    """
    recorded = config.task or {}
    if source is None and "source" not in recorded:
        raise AutopeftError("the config names no task; pass --task")
    if source is None:
        task = load_task(
            recorded["source"],
            text_columns=recorded.get("text_columns"),
            label_column=recorded.get("label_column"),
            metric=recorded.get("metric"),
        )
    else:
        task = load_task(source)
    head = config.head
    if task.kind is not head.kind or task.num_labels != head.num_labels:
        raise AutopeftError(
            f"task {task.name} is {task.kind} with {task.num_labels} outputs; the structure was "
            f"searched for {head.kind} with {head.num_labels}"
        )
    return task


def proxy_learning_rate(config: AutopeftConfig) -> float | None:
    """The rate the trial's proxy fine-tune learned at (the search's, or the one its stall rescue
    moved to), or None when the config records none."""
    rate = ((config.origin or {}).get("proxy_metrics") or {}).get("learning_rate")
    return float(rate) if rate else None
