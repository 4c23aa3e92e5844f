"""Objectives of a search and the Pareto set of observed trials.

Values are compared in *maximisation form*: a ``min`` objective is negated. The non-dominated
sort is botorch's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

from autopeft.store.store import JobRecord, TrialRecord
from autopeft.tasks import METRIC_GOALS, Task
from autopeft.trials import TrialState


@dataclass(frozen=True)
class Objective:
    """``name`` is a dev metric (``accuracy``, ``loss``) or a trial cost (``trainable_params``)."""

    name: str
    goal: Literal["max", "min"]

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "goal": self.goal}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Objective:
        return cls(data["name"], data["goal"])  # type: ignore[arg-type]


def job_objectives(job: JobRecord) -> list[Objective]:
    """The objectives a stored job searched with."""
    return [Objective.from_json(o) for o in job.spec["objectives"]]


def default_objectives(task: Task) -> list[Objective]:
    """Maximise (or minimise) the task's metric, minimise trainable parameters."""
    return [Objective(task.metric, METRIC_GOALS[task.metric]), Objective("trainable_params", "min")]


def observed(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Completed trials that have a value for every objective."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETED and all(t.value(o.name) is not None for o in objectives)
    ]


def maximisation_values(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> torch.Tensor:
    """Objective values of shape (n_trials, n_objectives), ``min`` objectives negated."""
    return torch.tensor(
        [[t.value(o.name) * (1.0 if o.goal == "max" else -1.0) for o in objectives] for t in trials],
        dtype=torch.double,
    ).reshape(len(trials), len(objectives))


def pareto_front(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """The non-dominated completed trials, best first on the first objective."""
    candidates = observed(trials, objectives)
    if not candidates:
        return []
    mask = is_non_dominated(maximisation_values(candidates, objectives), deduplicate=False)
    front = [t for t, keep in zip(candidates, mask.tolist()) if keep]
    first = objectives[0]
    return sorted(front, key=lambda t: t.value(first.name), reverse=first.goal == "max")
