"""Objectives of a search and the Pareto set of observed trials.

Values are compared in *maximisation form*: a ``min`` objective is negated. The non-dominated
sort is botorch's. Replicates of one structure (the same structure at the same rung, trained with
other seeds to confirm it) count as one observation: their mean, with its spread and ``n``.
Validation runs (scored on dev) never take part in a search's front.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from autopeft.trials import TrialRole, TrialState

if TYPE_CHECKING:  # torch, botorch and the task loaders load only when a front is computed
    import torch

    from autopeft.tasks import Task


class MeasuredTrial(Protocol):
    """What a front needs of a trial; the store's frozen ``TrialRecord`` is one.

    The objectives sit below the store (docs/architecture.md), so they name no store type.
    Pooling replicates makes a new record with :func:`dataclasses.replace`, so an implementation
    must be a dataclass with ``replicates`` and ``spread`` fields.
    """

    @property
    def number(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def rung(self) -> int: ...
    @property
    def structure(self) -> dict[str, Any]: ...
    @property
    def values(self) -> dict[str, float]: ...
    @property
    def step_time_s(self) -> float | None: ...
    @property
    def wall_time_s(self) -> float | None: ...
    @property
    def peak_memory_bytes(self) -> int | None: ...

    def value(self, name: str) -> float | None: ...


class SpecifiedJob(Protocol):
    """A job with its stored spec (the store's ``JobRecord`` is one)."""

    @property
    def spec(self) -> Mapping[str, Any]: ...


Measured = TypeVar("Measured", bound=MeasuredTrial)
"""Whatever trial type goes in comes out (the store's records stay records)."""


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


def job_objectives(job: SpecifiedJob) -> list[Objective]:
    """The objectives a stored job searched with."""
    return [Objective.from_json(o) for o in job.spec["objectives"]]


def default_objectives(task: Task) -> list[Objective]:
    """Maximise (or minimise) the task's metric, minimise trainable parameters."""
    from autopeft.tasks import METRIC_GOALS

    return [Objective(task.metric, METRIC_GOALS[task.metric]), Objective("trainable_params", "min")]


def observed(trials: Sequence[Measured], objectives: Sequence[Objective]) -> list[Measured]:
    """Completed search trials with a value for every objective, replicates pooled (:func:`pooled`)."""
    searched = [t for t in trials if t.role != TrialRole.VALIDATION]
    return [t for t in pooled(searched) if all(t.value(o.name) is not None for o in objectives)]


def structure_key(trial: MeasuredTrial) -> tuple[str, int]:
    """Trials with the same key are replicates of one measurement: same structure, same rung."""
    return json.dumps(trial.structure, sort_keys=True), trial.rung


def pooled(trials: Sequence[Measured]) -> list[Measured]:
    """Completed trials, one record per :func:`structure_key`, in the order of their first trial.

    A structure run more than once is represented by its first trial (whose number ``export``
    takes) with every value and measured cost replaced by the mean over the completed runs,
    ``replicates`` listing the runs' numbers and ``spread`` their sample standard deviations.
    """
    groups: dict[tuple[str, int], list[Measured]] = {}
    for trial in trials:
        if trial.state == TrialState.COMPLETED:
            groups.setdefault(structure_key(trial), []).append(trial)
    return [group[0] if len(group) == 1 else _mean_record(group) for group in groups.values()]


def _mean_record(group: Sequence[Measured]) -> Measured:
    names = set.intersection(*(set(t.values) for t in group))
    values = {name: [t.values[name] for t in group] for name in sorted(names)}

    def mean_of(attribute: str):
        measured = [getattr(t, attribute) for t in group if getattr(t, attribute) is not None]
        return statistics.fmean(measured) if measured else None

    return replace(
        group[0],
        values={name: statistics.fmean(v) for name, v in values.items()},
        step_time_s=mean_of("step_time_s"),
        wall_time_s=mean_of("wall_time_s"),
        peak_memory_bytes=None if mean_of("peak_memory_bytes") is None else round(mean_of("peak_memory_bytes")),
        replicates=tuple(t.number for t in group),
        spread={name: statistics.stdev(v) for name, v in values.items()},
    )


def maximisation_values(trials: Sequence[MeasuredTrial], objectives: Sequence[Objective]) -> torch.Tensor:
    """Objective values of shape (n_trials, n_objectives), ``min`` objectives negated."""
    import torch

    return torch.tensor(_maximised(trials, objectives), dtype=torch.double).reshape(len(trials), len(objectives))


def _maximised(trials: Sequence[MeasuredTrial], objectives: Sequence[Objective]) -> list[list[float]]:
    return [[t.value(o.name) * (1.0 if o.goal == "max" else -1.0) for o in objectives] for t in trials]


NUMPY_FRONT_MAX_ROWS = 2048
"""Up to this many rows the reports sort in numpy; above it, pairwise arrays (rows^2 x objectives)
would take too much memory and botorch's loop over candidates is used."""


def _non_dominated_mask(values: Sequence[Sequence[float]]) -> list[bool]:
    """Per row of ``values`` (n, m), maximised: whether no other row is >= in every objective and
    > in one. botorch's ``is_non_dominated(..., deduplicate=False)``, the definition the optimizers
    and promotion use, written in numpy for the reports' usual few hundred rows (what the store
    narrows a front to): botorch needs torch, whose import alone (1.5-2.5 s here) would exceed what
    ``autopeft status`` and ``pareto`` may take. A test keeps the two equal."""
    if len(values) > NUMPY_FRONT_MAX_ROWS:
        import torch
        from botorch.utils.multi_objective.pareto import is_non_dominated

        return is_non_dominated(torch.tensor(values, dtype=torch.double), deduplicate=False).tolist()
    import numpy as np

    y = np.asarray(values, dtype=float).reshape(len(values), -1)
    at_least = (y[None, :, :] >= y[:, None, :]).all(-1)  # [i, j]: row j >= row i everywhere
    better = (y[None, :, :] > y[:, None, :]).any(-1)
    return (~(at_least & better).any(1)).tolist()


def pareto_front(trials: Sequence[Measured], objectives: Sequence[Objective]) -> list[Measured]:
    """The non-dominated search observations (:func:`observed`), best first on the first objective."""
    return non_dominated(observed(trials, objectives), objectives)


def non_dominated(records: Sequence[Measured], objectives: Sequence[Objective]) -> list[Measured]:
    """The records (each with every objective's value) that no other dominates, best first."""
    if not records:
        return []
    mask = _non_dominated_mask(_maximised(records, objectives))
    front = [t for t, keep in zip(records, mask) if keep]
    first = objectives[0]
    return sorted(front, key=lambda t: t.value(first.name), reverse=first.goal == "max")
