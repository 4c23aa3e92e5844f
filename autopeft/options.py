"""Declaring a user's option once, as a dataclass field: its default, one line of help, its bounds.

The options of a search job are the fields of :class:`autopeft.scheduler.job_spec.JobSpec`, of
its :class:`autopeft.trials.Fidelity` and of its :class:`autopeft.scheduler.job_spec.TaskOptions`.
``autopeft search`` takes its defaults and help from them, and the service builds its request
schema from them, so an option or a default is written in one place.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field
from typing import Any


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING,
           ge: float | None = None, le: float | None = None) -> Any:
    """A dataclass field declaring an option (no default: the option is required).

    ``ge`` / ``le`` bound the value in the service's request schema, which refuses a request
    outside them before the job's own checks run (``JobSpec.check`` checks every option again).
    """
    bounds = {name: value for name, value in (("ge", ge), ("le", le)) if value is not None}
    return field(default=default, default_factory=default_factory, metadata={"help": help, "bounds": bounds})


def help_of(declared: Field) -> str:
    """The help line of a field declared with :func:`option`."""
    return declared.metadata["help"]


def bounds_of(declared: Field) -> dict[str, float]:
    """``{"ge": ..., "le": ...}`` (either may be absent) of a field declared with :func:`option`."""
    return dict(declared.metadata.get("bounds", {}))


def default_of(declared: Field) -> Any:
    """The default of a field (called when it has a factory), or MISSING for a required one."""
    if declared.default_factory is not MISSING:
        return declared.default_factory()
    return declared.default
