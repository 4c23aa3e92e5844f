"""What one caller may ask of the service: bounds on a job's size, checked before anything runs.

A token holder cannot run code on the cluster, but without bounds one request (``workers:
100000``, ``steps: 10**9``, ``batch_size: 10**6``) would take every job slot, every core or the
host's memory. The operator sets the bounds at ``autopeft serve``; the defaults fit one machine
or a small cluster. Steps and training examples are bounded at a job's top rung, where
promotion has multiplied them by ``eta ** (rungs - 1)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from autopeft.errors import AutopeftError
from autopeft.scheduler import JobSpec


class RequestError(AutopeftError):
    """A request the service refuses: the JSON answer names the field and, when one applies, the limit."""

    def __init__(self, field: str | None, message: str, limit: float | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field, self.limit, self.status = field, limit, status

    def body(self) -> dict[str, Any]:
        return {"detail": str(self), "field": self.field, "limit": self.limit}


@dataclass(frozen=True)
class ServiceLimits:
    """Upper bounds on one job; ``max_eval_examples`` also caps a request that scores the whole split."""

    max_workers: int = 8
    max_cpus_per_worker: int = 8
    max_gpus_per_worker: float = 8
    max_trials: int = 1000
    max_steps: int = 10_000
    max_train_examples: int = 1_000_000
    max_eval_examples: int = 100_000
    max_batch_size: int = 1024
    max_length: int = 8192
    max_confirm_seeds: int = 10
    max_search_examples: int = 100_000

    def bounded(self, spec: JobSpec) -> JobSpec:
        """``spec`` with its scored split capped at ``max_eval_examples``; RequestError over a limit."""
        fidelity, top = spec.fidelity, _top_rung_factor(spec)
        checks = [
            ("workers", spec.workers, self.max_workers, 1),
            ("cpus_per_worker", spec.cpus_per_worker, self.max_cpus_per_worker, 1),
            ("gpus_per_worker", spec.gpus_per_worker, self.max_gpus_per_worker, 1),
            ("trials", spec.trials, self.max_trials, 1),
            ("fidelity.steps", fidelity.steps, self.max_steps, top),
            ("fidelity.train_examples", fidelity.train_examples, self.max_train_examples, top),
            ("fidelity.eval_examples", fidelity.eval_examples or 0, self.max_eval_examples, 1),
            ("fidelity.batch_size", fidelity.batch_size, self.max_batch_size, 1),
            ("fidelity.max_length", fidelity.max_length, self.max_length, 1),
            ("confirm_seeds", spec.confirm_seeds, self.max_confirm_seeds, 1),
            ("search_examples", spec.search_examples or 0, self.max_search_examples, 1),
        ]
        for field, value, limit, factor in checks:
            if value * factor > limit:
                raise RequestError(field, _over(field, value, limit, factor), limit)
        if fidelity.eval_examples is None:
            spec = dataclasses.replace(
                spec, fidelity=dataclasses.replace(fidelity, eval_examples=self.max_eval_examples)
            )
        return spec

    def check_validation(self, steps: int | None, train_examples: int | None) -> None:
        """RequestError when a validation run would train longer or on more than a job may."""
        for field, value, limit in (("steps", steps, self.max_steps), ("train_examples", train_examples,
                                                                          self.max_train_examples)):
            if value is not None and value > limit:
                raise RequestError(field, _over(field, value, limit, 1), limit)


def _top_rung_factor(spec: JobSpec) -> float:
    try:
        return spec.eta ** (spec.rungs - 1)
    except OverflowError:
        return math.inf


def _over(field: str, value: float, limit: float, factor: float) -> str:
    if factor == 1:
        return f"{field}: at most {limit} on this service, got {value}"
    return (f"{field}: at most {limit} on this service at the top rung, got {value} x eta^(rungs-1) "
            f"= {value * factor:g}")
