"""A job's specification, and turning it into validated parts before anything is stored.

:func:`prepare` resolves the model, loads the task, reads the space and binds it to the model's
skeleton; every user mistake fails there with one line, before a job row exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch.quasirandom import SobolEngine

from autopeft.errors import AutopeftError, BudgetError, SpaceError
from autopeft.models import ModelRef, TaskHead, build_skeleton, resolve_model
from autopeft.optimizers import OPTIMIZERS
from autopeft.objectives import Objective, default_objectives
from autopeft.space import SearchSpace, SpaceSpec, load_space_spec
from autopeft.space.search_space import bind_space
from autopeft.tasks import METRIC_GOALS, Task, TaskKind, load_task
from autopeft.trials import Fidelity

DEFAULT_SPACE = "lora"


@dataclass(frozen=True)
class TaskOptions:
    """How to read a task whose columns or metric cannot be inferred."""

    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    metric: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """What the user asked for; stored as JSON with the job so that it can be resumed or exported."""

    model: str
    task: str
    space: str = DEFAULT_SPACE
    trials: int = 16
    workers: int = 1
    optimizer: str = "random"
    seed: int = 0
    fidelity: Fidelity = field(default_factory=Fidelity)
    task_options: TaskOptions = field(default_factory=TaskOptions)
    objectives: tuple[Objective, ...] = ()
    max_time_s: float | None = None

    def check_budget(self) -> None:
        if self.trials < 1:
            raise BudgetError(f"--trials must be at least 1, got {self.trials}")
        if self.workers < 1:
            raise BudgetError(f"--workers must be at least 1, got {self.workers}")
        if self.max_time_s is not None and self.max_time_s <= 0:
            raise BudgetError(f"--max-time must be positive, got {self.max_time_s} s")
        fidelity = self.fidelity
        if min(fidelity.steps, fidelity.batch_size, fidelity.max_length, fidelity.train_examples) < 1:
            raise BudgetError(f"fidelity needs steps, batch size, length and examples >= 1: {fidelity}")


@dataclass(frozen=True)
class PreparedJob:
    """A validated job: everything the scheduler and workers need, nothing stored yet."""

    spec: JobSpec
    model: ModelRef
    task: Task
    space_spec: SpaceSpec
    space: SearchSpace
    objectives: tuple[Objective, ...]

    def stored_spec(self) -> dict[str, Any]:
        """The JSON kept with the job: the request, plus the resolved space and task facts."""
        spec = asdict(self.spec)
        spec["objectives"] = [o.to_json() for o in self.objectives]
        spec["space_spec"] = self.space_spec.model_dump(mode="json")
        spec["task_info"] = {
            "name": self.task.name,
            "kind": str(self.task.kind),
            "label_names": list(self.task.label_names),
            "metric": self.task.metric,
        }
        spec["model_hub_id"] = self.model.hub_id
        spec["total_params"] = self.space.layout.total_params
        return spec


def prepare(spec: JobSpec) -> PreparedJob:
    """Validate ``spec`` against the real model, task and space; raises AutopeftError subclasses."""
    spec.check_budget()
    model = resolve_model(spec.model)
    options = spec.task_options
    task = load_task(
        spec.task,
        text_columns=options.text_columns,
        label_column=options.label_column,
        metric=options.metric,
    )
    if spec.optimizer not in OPTIMIZERS:
        raise AutopeftError(f"unknown optimizer '{spec.optimizer}' (choose from {', '.join(OPTIMIZERS)})")
    space_spec = load_space_spec(spec.space)
    space = bind_space(space_spec, build_skeleton(model, task))
    objectives = spec.objectives or tuple(default_objectives(task))
    for objective in objectives:
        if objective.name not in METRIC_GOALS and objective.name not in COST_OBJECTIVES:
            raise BudgetError(f"unknown objective '{objective.name}'")
    _check_feasible(space)
    return PreparedJob(spec, model, task, space_spec, space, tuple(objectives))


COST_OBJECTIVES = ("trainable_params", "peak_memory_bytes", "step_time_s")


def _check_feasible(space: SearchSpace, probes: int = 4096) -> None:
    """Fail early when no point of the space is feasible (probing a few thousand Sobol points)."""
    if space.dimensions:
        draws = SobolEngine(len(space.dimensions), scramble=True, seed=0).draw(probes).tolist()
    else:
        draws = [[]]
    if not any(space.is_feasible(space.from_unit(u)) for u in draws):
        cap = space.spec.max_trainable_fraction
        reason = f"under max_trainable_fraction {cap}" if cap else "that adds at least one module"
        raise SpaceError(f"{space.spec.source}: the space has no configuration {reason}")


@dataclass(frozen=True)
class StoredJob:
    """A stored job's model, task head and space, rebuilt without loading data or weights."""

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
