"""Turning a job's specification (:mod:`autopeft.scheduler.job_spec`) into validated parts before
anything is stored.

:func:`prepare` resolves the model, loads the task, reads the space and binds it to the model's
skeleton; every user mistake fails there with one line, before a job row exists. The spec is
stored with the job, so that ``resume``, ``export`` and ``train`` rebuild exactly what ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch.quasirandom import SobolEngine

from autopeft.errors import AutopeftError, BudgetError
from autopeft.models import ModelRef, build_skeleton, resolve_model
from autopeft.objectives import Objective, default_objectives
from autopeft.scheduler.job_spec import JobSpec
from autopeft.space import SearchSpace, SpaceSpec, load_space_spec
from autopeft.space.search_space import bind_space
from autopeft.tasks import METRIC_GOALS, Task, load_task
from autopeft.tasks.holdout import with_search_split

if TYPE_CHECKING:
    from autopeft.allocation.lora_init import MeasuredInit
    from autopeft.allocation.sparse_rankings import SparseRanking

@dataclass(frozen=True)
class PreparedJob:
    """A validated job: everything the scheduler and workers need, nothing stored yet."""

    spec: JobSpec
    model: ModelRef
    task: Task
    space_spec: SpaceSpec
    space: SearchSpace
    objectives: tuple[Objective, ...]
    inits: Mapping[str, MeasuredInit] = field(default_factory=dict)
    """Data-driven LoRA init (``eva``, ``corda``) -> its measurement, for each one the space offers
    (:mod:`autopeft.scheduler.sensitivities`)."""
    init_keys: Mapping[str, str] = field(default_factory=dict)
    """Data-driven LoRA init -> its key in the store's measurement cache, kept with the job so that
    exports find it."""
    rankings: Mapping[str, SparseRanking] = field(default_factory=dict)
    """Measured mask rule -> its entry ranking, for each rule the space's sparse updates use."""
    ranking_keys: Mapping[str, str] = field(default_factory=dict)
    """Measured mask rule -> the ranking's key in the store's measurement cache (for exports)."""

    def stored_spec(self) -> dict[str, Any]:
        """The JSON kept with the job: the request, plus the resolved space and task facts."""
        spec = self.spec.to_json()
        spec["objectives"] = [o.to_json() for o in self.objectives]
        spec["space_spec"] = self.space_spec.model_dump(mode="json")
        spec["task_info"] = {
            "name": self.task.name,
            "kind": str(self.task.kind),
            "label_names": list(self.task.label_names),
            "metric": self.task.metric,
            "splits": {"train": len(self.task.train), "search": len(self.task.search), "dev": len(self.task.dev)},
        }
        spec["model_hub_id"] = self.model.hub_id
        spec["total_params"] = self.space.layout.total_params
        if self.init_keys:
            spec["init_keys"] = dict(self.init_keys)
        if self.ranking_keys:
            spec["ranking_keys"] = dict(self.ranking_keys)
        return spec


def prepare(spec: JobSpec, space_spec: SpaceSpec | None = None) -> PreparedJob:
    """Validate ``spec`` against the real model, task and space; raises AutopeftError subclasses.

    ``space_spec`` replaces reading ``spec.space`` (a resumed job uses the space it was stored with).
    """
    spec.check()
    model = resolve_model(spec.model)
    options = spec.task_options
    task = with_search_split(
        load_task(spec.task, text_columns=options.text_columns, label_column=options.label_column,
                  metric=options.metric),
        spec.search_examples,
        seed=spec.seed,
    )
    space_spec = space_spec or load_space_spec(spec.space)
    if spec.max_trainable_fraction is not None:
        cap = min(spec.max_trainable_fraction, space_spec.max_trainable_fraction or 1.0)
        space_spec = space_spec.model_copy(update={"max_trainable_fraction": cap})
    space = bind_space(space_spec, build_skeleton(model, task))
    objectives = tuple(default_objectives(task)) + tuple(Objective(name, "min") for name in spec.also_minimize)
    if objectives[0].name not in METRIC_GOALS:
        raise AutopeftError(f"unknown metric '{objectives[0].name}'")
    _check_feasible(space)
    return PreparedJob(spec, model, task, space_spec, space, objectives)


def _check_feasible(space: SearchSpace, probes: int = 4096) -> None:
    """Fail early when no point of the space is feasible (probing a few thousand Sobol points).

    Budgeted spaces are probed with the uniform rule, and layer schedules are probed off: their
    scores are measured later, the rule only shapes ranks inside the same budget, and a schedule
    never changes which modules exist.
    """
    if space.dimensions:
        draws = SobolEngine(len(space.dimensions), scramble=True, seed=0).draw(probes).tolist()
    else:
        draws = [[]]
    points = [space.from_unit(u) for u in draws]
    if space.needed_sensitivities:
        unscored = {"budget.rule": "uniform", "schedule.kind": "none"}
        points = [{**p, **{name: value for name, value in unscored.items() if name in p}} for p in points]
        budget = space.spec.budget  # None when only an IST layer schedule needs scores
        if budget is not None and "budget.rule" not in space.names and budget.rules != ["uniform"]:
            return  # one non-uniform rule: feasibility shows once its scores are measured
    if not any(space.is_feasible(p) for p in points):
        raise BudgetError(f"{space.spec.source}: {_infeasibility(space)}")


def _infeasibility(space: SearchSpace) -> str:
    cap = space.spec.max_trainable_fraction
    if space.spec.budget is not None:
        fraction = space.spec.budget.fraction
        return (
            f"budget.fraction {fraction.low}..{fraction.high} of {space.layout.total_params:,} parameters "
            f"cannot buy one LoRA module on {', '.join(space.lora_roles)}"
            + (f" under a trainable fraction of {cap}" if cap else "")
        )
    return "the space has no configuration " + (f"under a trainable fraction of {cap}" if cap else "that adds a module")


def prepare_stored(stored: dict[str, Any]) -> PreparedJob:
    """Rebuild a stored job's prepared form (for resume), with the space it was stored with."""
    return prepare(JobSpec.from_json(stored), SpaceSpec.model_validate(stored["space_spec"]))
