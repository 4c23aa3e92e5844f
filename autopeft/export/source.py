"""What every export format reads: a completed trial, its job, and the job rebuilt around the model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from autopeft.allocation.lora_init import MeasuredInit
from autopeft.allocation.sparse_rankings import SparseRanking
from autopeft.models import ModelRef, TaskHead, build_skeleton, resolve_model
from autopeft.space import SearchSpace, SpaceSpec
from autopeft.space.layout import ModelLayout
from autopeft.space.search_space import bind_space
from autopeft.space.structure import Structure
from autopeft.store import JobRecord, TrialRecord
from autopeft.tasks import TaskKind


@dataclass(frozen=True)
class StoredJob:
    """A stored job's model, task head and space, rebuilt without loading data or weights.

    Reads the spec that :meth:`autopeft.scheduler.spec.PreparedJob.stored_spec` writes: its
    ``model``, ``task_info`` and ``space_spec``.
    """

    model: ModelRef
    head: TaskHead
    space: SearchSpace

    @classmethod
    def from_spec(cls, stored: dict[str, Any]) -> StoredJob:
        model = resolve_model(stored["model"])
        info = stored["task_info"]
        kind = TaskKind(info["kind"])
        num_labels = len(info["label_names"]) if kind is TaskKind.CLASSIFICATION else int(kind is TaskKind.REGRESSION)
        head = TaskHead(kind, num_labels)
        space_spec = SpaceSpec.model_validate(stored["space_spec"])
        return cls(model, head, bind_space(space_spec, build_skeleton(model, head)))


@dataclass(frozen=True)
class ExportSource:
    """A trial to export.

    Attributes:
        job: the stored job (its spec names the model, task and objectives).
        trial: the completed trial.
        stored: the job's model, task head and space, bound to the model's skeleton.
        lora_init: the job's measurement of a data-driven LoRA init (EVA, CorDA) when the trial's
            LoRA starts from it, else None.
        ranking: the job's entry ranking when the trial is a sparse update with a measured rule, else None.
    """

    job: JobRecord
    trial: TrialRecord
    stored: StoredJob
    lora_init: MeasuredInit | None = None
    ranking: SparseRanking | None = None

    @cached_property
    def structure(self) -> Structure:
        return Structure.from_json(self.trial.structure)

    @property
    def layout(self) -> ModelLayout:
        return self.stored.space.layout

    @property
    def task_kind(self) -> TaskKind:
        return self.stored.head.kind

    @property
    def hub_id(self) -> str:
        """The public id of the base model, written into exports for other machines."""
        return self.stored.model.hub_id

    def describe(self) -> str:
        """``trial 3 of job 1``, for messages."""
        return f"trial {self.trial.number} of job {self.job.id}"
