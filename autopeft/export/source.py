"""What every export format reads: a completed trial, its job, and the job rebuilt around the model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from autopeft.scheduler.spec import StoredJob
from autopeft.space.layout import ModelLayout
from autopeft.space.structure import Structure
from autopeft.store import JobRecord, TrialRecord
from autopeft.tasks import TaskKind


@dataclass(frozen=True)
class ExportSource:
    """A trial to export.

    Attributes:
        job: the stored job (its spec names the model, task and objectives).
        trial: the completed trial.
        stored: the job's model, task head and space, bound to the model's skeleton.
    """

    job: JobRecord
    trial: TrialRecord
    stored: StoredJob

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
