"""Jobs: their specs, validation before storing, and the loop that keeps workers busy."""

from autopeft.scheduler.scheduler import Progress, Scheduler, SchedulerSettings
from autopeft.scheduler.search import resume_search, run_search
from autopeft.scheduler.spec import JobSpec, PreparedJob, StoredJob, TaskOptions, prepare

__all__ = [
    "JobSpec",
    "PreparedJob",
    "Progress",
    "Scheduler",
    "SchedulerSettings",
    "StoredJob",
    "TaskOptions",
    "prepare",
    "resume_search",
    "run_search",
]
