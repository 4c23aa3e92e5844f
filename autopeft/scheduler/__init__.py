"""Jobs: their specs, validation before storing, and the loop that keeps workers busy.

The names below load their module on first use (PEP 562), so ``from autopeft.scheduler import
JobSpec`` costs no more than the spec itself: the CLI's ``--help`` must not wait for Ray and torch.
"""

from importlib import import_module

_HOMES = {
    "JobSpec": "job_spec",
    "TaskOptions": "job_spec",
    "PreparedJob": "spec",
    "prepare": "spec",
    "Progress": "scheduler",
    "Scheduler": "scheduler",
    "SchedulerSettings": "scheduler",
    "resume_search": "search",
    "run_search": "search",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'autopeft.scheduler' has no attribute {name!r}")
    return getattr(import_module(f"autopeft.scheduler.{_HOMES[name]}"), name)
