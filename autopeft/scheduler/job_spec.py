"""What a user asks of a job: its options and their defaults, declared once.

Kept free of torch, Ray and the rest, so that the CLI can build its options (and ``--help``)
from these defaults without loading the search stack. :mod:`autopeft.scheduler.spec` validates a
spec against the real model, task and space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from autopeft.errors import BudgetError
from autopeft.trials import Fidelity

DEFAULT_SPACE = "lora"
DEFAULT_OPTIMIZER = "mobo"
OPTIMIZER_NAMES = ("mobo", "random", "motpe", "nsga2")
"""The optimizers a job may name; :data:`autopeft.optimizers.OPTIMIZERS` implements each."""
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
            (self.optimizer in OPTIMIZER_NAMES,
             f"unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZER_NAMES)})"),
        ]
        fidelity = self.fidelity
        for option in ("steps", "batch_size", "max_length", "train_examples", "eval_examples"):
            value = getattr(fidelity, option)
            flag = f"--{option.replace('_', '-')}"
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
