"""What a user asks of a job: its options and their defaults, declared once.

Every option is a field declared with :func:`autopeft.options.option` (default, help, bounds):
the fields of :class:`JobSpec`, of its ``fidelity`` (:class:`autopeft.trials.Fidelity`) and of
its ``task_options`` (:class:`TaskOptions`); :func:`job_options` lists them flat. ``autopeft
search`` takes its options' defaults and help from here, and the service builds its request
schema from here (``tests/test_job_options.py`` checks that both agree with this declaration).

Kept free of torch, Ray, pydantic and the rest, so that the CLI can build its options (and
``--help``) without loading the search stack. :mod:`autopeft.scheduler.spec` validates a spec
against the real model, task and space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from autopeft.errors import BudgetError
from autopeft.options import option
from autopeft.trials import Fidelity, lr_rescues_error

DEFAULT_SPACE = "lora"
DEFAULT_OPTIMIZER = "mobo"
OPTIMIZER_NAMES = ("mobo", "random", "motpe", "nsga2")
"""The optimizers a job may name; :data:`autopeft.optimizers.OPTIMIZERS` implements each."""
COST_OBJECTIVES = ("trainable_params", "peak_memory_bytes", "step_time_s")


@dataclass(frozen=True)
class TaskOptions:
    """How to read a task whose columns or metric cannot be inferred."""

    text_columns: tuple[str, ...] | None = option(
        None, help="Text column(s) of a CSV/JSONL task (comma-separated on the command line).")
    label_column: str | None = option(None, help="Label column of a CSV/JSONL task.")
    metric: str | None = option(None, help="Task metric to optimise (default: the task's).")


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

    model: str = option(help="minilm, smollm2, a local folder or a Hugging Face id.")
    task: str = option(help="demo, a GLUE folder, a CSV/TSV/JSONL file or folder, or a hub dataset.")
    space: str = option(DEFAULT_SPACE, help="Shipped space name or YAML file.")
    trials: int = option(16, help="Budget in trials (a promoted trial costs eta^rung).")
    workers: int = option(1, help="Parallel Ray workers.")
    optimizer: str = option(DEFAULT_OPTIMIZER, help="mobo, random, motpe or nsga2.")
    seed: int = option(0, help="Seed of the data subsets, the optimizer and the trials.")
    fidelity: Fidelity = field(default_factory=Fidelity)
    task_options: TaskOptions = field(default_factory=TaskOptions)
    also_minimize: tuple[str, ...] = option((), help="Extra objective: peak_memory_bytes or step_time_s.")
    max_trainable_fraction: float | None = option(None, help="Hard cap on trainable / total parameters.")
    max_time_s: float | None = option(None, help="Wall-clock budget in seconds.")
    max_worker_hours: float | None = option(None, help="Compute budget: summed trial hours.")
    rungs: int = option(1, help="Fidelity rungs for multi-fidelity promotion (1 = none).")
    eta: float = option(3.0, help="Step factor between rungs; the top 1/eta of a rung is promoted.")
    max_attempts: int = option(3, help="Runs of a trial whose worker dies before it fails.")
    warm_start: int | None = option(None, help="Seed the optimizer with this job's trials (same space).")
    cpus_per_worker: int = option(1, help="CPUs (torch threads) per worker.")
    gpus_per_worker: float = option(0.0, help="GPUs per worker (fractions share a GPU).")
    search_examples: int | None = option(None, help="Search split carved from train (default: 20%, <= 1000).", ge=1)
    confirm_seeds: int = option(
        2, help="Seeds per front structure: front members are re-run to this many.", ge=1)
    defaults: bool = option(True, help="Run the practitioner defaults (LoRA r8 q,v; all-linear; IA3) first.")

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
            (lr_rescues_error(self.fidelity.lr_rescues) is None, lr_rescues_error(self.fidelity.lr_rescues)),
            (self.optimizer in OPTIMIZER_NAMES,
             f"unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZER_NAMES)})"),
        ]
        fidelity = self.fidelity
        for name in ("steps", "batch_size", "max_length", "train_examples", "eval_examples"):
            value = getattr(fidelity, name)
            flag = f"--{name.replace('_', '-')}"
            checks.append((value is None or value >= 1, f"{flag} must be at least 1, got {value}"))
        checks.append((fidelity.learning_rate > 0, f"--learning-rate must be positive, got {fidelity.learning_rate}"))
        for ok, message in checks:
            if not ok:
                raise BudgetError(message)
        for name in self.also_minimize:
            if name not in COST_OBJECTIVES[1:]:
                raise BudgetError(f"--also-minimize takes {' or '.join(COST_OBJECTIVES[1:])}, got '{name}'")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> JobSpec:
        """A spec from flat options (the names of :func:`job_options`); unnamed ones keep their default."""
        unknown = set(options) - set(job_options())
        if unknown:
            raise TypeError(f"unknown job options: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for declared in fields(cls):
            if declared.name in OPTION_GROUPS:
                group = type(declared.default_factory())
                values[declared.name] = group(**{f.name: options[f.name] for f in fields(group) if f.name in options})
            elif declared.name in options:
                values[declared.name] = options[declared.name]
        return cls(**values)

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


OPTION_GROUPS = ("fidelity", "task_options")
"""Fields of :class:`JobSpec` that group options (a dataclass of options each); the rest are options."""


def job_options() -> dict[str, Field]:
    """Every option of a job by name, flat: JobSpec's own, then each group's (``steps``, ``metric``...)."""
    options: dict[str, Field] = {}
    for declared in fields(JobSpec):
        if declared.name in OPTION_GROUPS:
            options.update({f.name: f for f in fields(declared.default_factory())})
        else:
            options[declared.name] = declared
    return options
