"""A job's specification, and turning it into validated parts before anything is stored.

:func:`prepare` resolves the model, loads the task, reads the space and binds it to the model's
skeleton; every user mistake fails there with one line, before a job row exists. The spec is
stored with the job, so that ``resume``, ``export`` and ``train`` rebuild exactly what ran.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from torch.quasirandom import SobolEngine

from autopeft.errors import AutopeftError, BudgetError
from autopeft.models import ModelRef, TaskHead, build_skeleton, resolve_model
from autopeft.objectives import Objective, default_objectives
from autopeft.optimizers import OPTIMIZERS
from autopeft.space import SearchSpace, SpaceSpec, load_space_spec
from autopeft.space.search_space import bind_space
from autopeft.tasks import METRIC_GOALS, Task, TaskKind, load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import Fidelity

DEFAULT_SPACE = "lora"
DEFAULT_OPTIMIZER = "mobo"
COST_OBJECTIVES = ("trainable_params", "peak_memory_bytes", "step_time_s")


@dataclass(frozen=True)
class TaskOptions:
    """How to read a task whose columns or metric cannot be inferred."""

    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    metric: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """What the user asked for; stored as JSON with the job so that it can be resumed or exported.

    Attributes:
        trials: budget in trial units (a rung-k trial costs ``eta ** k``; see scheduler.budget).
        also_minimize: measured costs added as objectives (``peak_memory_bytes``, ``step_time_s``).
        max_trainable_fraction: hard cap on trainable / total parameters, on top of the space's.
        rungs, eta: multi-fidelity promotion levels and their step factor (rungs=1: none).
        warm_start: id of a job in the same store whose finished trials seed the optimizer.
        search_examples: size of the search split carved from train (default: 20%, at most
            1,000); trials are scored on it, never on dev.
        confirm_seeds: runs with different seeds of every structure on the front (1 = none).
        defaults: run the practitioner defaults the space can express first.
    """

    model: str
    task: str
    space: str = DEFAULT_SPACE
    trials: int = 16
    workers: int = 1
    optimizer: str = DEFAULT_OPTIMIZER
    seed: int = 0
    fidelity: Fidelity = field(default_factory=Fidelity)
    task_options: TaskOptions = field(default_factory=TaskOptions)
    also_minimize: tuple[str, ...] = ()
    max_trainable_fraction: float | None = None
    max_time_s: float | None = None
    max_worker_hours: float | None = None
    rungs: int = 1
    eta: float = 3.0
    max_attempts: int = 3
    warm_start: int | None = None
    cpus_per_worker: int = 1
    gpus_per_worker: float = 0.0
    search_examples: int | None = None
    confirm_seeds: int = 2
    defaults: bool = True

    def check(self) -> None:
        """Reject impossible budgets and settings with one line each."""
        checks = [
            (self.trials >= 1, f"--trials must be at least 1, got {self.trials}"),
            (self.workers >= 1, f"--workers must be at least 1, got {self.workers}"),
            (self.max_time_s is None or self.max_time_s > 0, f"--max-time must be positive, got {self.max_time_s}"),
            (self.max_worker_hours is None or self.max_worker_hours > 0,
             f"--max-worker-hours must be positive, got {self.max_worker_hours}"),
            (self.rungs >= 1, f"--rungs must be at least 1, got {self.rungs}"),
            (self.eta > 1, f"--eta must be greater than 1, got {self.eta}"),
            (self.max_attempts >= 1, f"--max-attempts must be at least 1, got {self.max_attempts}"),
            (self.cpus_per_worker >= 1, f"--cpus-per-worker must be at least 1, got {self.cpus_per_worker}"),
            (self.gpus_per_worker >= 0, f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}"),
            (self.max_trainable_fraction is None or 0 < self.max_trainable_fraction <= 1,
             f"--max-trainable-fraction must be in (0, 1], got {self.max_trainable_fraction}"),
            (self.confirm_seeds >= 1, f"--confirm-seeds must be at least 1, got {self.confirm_seeds}"),
            (self.search_examples is None or self.search_examples >= 1,
             f"--search-examples must be at least 1, got {self.search_examples}"),
            (0 <= self.fidelity.lr_rescues <= 2, f"--lr-rescues must be 0, 1 or 2, got {self.fidelity.lr_rescues}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZERS)})"),
        ]
        fidelity = self.fidelity
        checks.append((
            min(fidelity.steps, fidelity.batch_size, fidelity.max_length, fidelity.train_examples) >= 1,
            f"fidelity needs steps, batch size, length and training examples >= 1: {fidelity}",
        ))
        for ok, message in checks:
            if not ok:
                raise BudgetError(message)
        for name in self.also_minimize:
            if name not in COST_OBJECTIVES[1:]:
                raise BudgetError(f"--also-minimize takes {' or '.join(COST_OBJECTIVES[1:])}, got '{name}'")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["fidelity"] = Fidelity.from_json(data["fidelity"])
        options = dict(data.get("task_options") or {})
        if options.get("text_columns") is not None:
            options["text_columns"] = tuple(options["text_columns"])
        values["task_options"] = TaskOptions(**options)
        values["also_minimize"] = tuple(data.get("also_minimize", ()))
        return cls(**values)


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

    Budgeted spaces are probed with the uniform rule: their scores are measured later, and the
    rule only shapes ranks inside the same budget.
    """
    if space.dimensions:
        draws = SobolEngine(len(space.dimensions), scramble=True, seed=0).draw(probes).tolist()
    else:
        draws = [[]]
    points = [space.from_unit(u) for u in draws]
    if space.needed_sensitivities:
        points = [{**p, "budget.rule": "uniform"} if "budget.rule" in p else p for p in points]
        if "budget.rule" not in space.names and space.spec.budget.rules != ["uniform"]:
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


def prepare_stored(stored: dict[str, Any]) -> PreparedJob:
    """Rebuild a stored job's prepared form (for resume), with the space it was stored with."""
    return prepare(JobSpec.from_json(stored), SpaceSpec.model_validate(stored["space_spec"]))
