"""Errors that reach the user as one line.

Every error a user can cause (bad input, unreachable services, impossible budgets) derives from
:class:`AutopeftError`; the CLI prints its message on one line and exits non-zero. Anything else
is a bug and keeps its traceback.
"""


class AutopeftError(Exception):
    """A user-facing failure whose message is complete on one line."""

    exit_code = 2


class TaskError(AutopeftError):
    """A task (dataset) that cannot be found, read or understood."""


class ModelError(AutopeftError):
    """A model that cannot be resolved or loaded."""


class SpaceError(AutopeftError):
    """A malformed search space, or one that does not fit the model's architecture."""


class StoreError(AutopeftError):
    """The trial store is unreachable, or a job or trial is not in it."""


class LeaseLost(StoreError):
    """Another driver holds the job now: this one must stop without touching the job's state."""


class BudgetError(AutopeftError):
    """A budget that cannot be met (no trials, no time, a cap below any config)."""


class ExportError(AutopeftError):
    """A trial that cannot be written in the requested format."""
