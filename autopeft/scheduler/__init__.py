"""Jobs: their specs, validation before storing, and the loop that keeps workers busy."""

from autopeft.scheduler.scheduler import Progress, Scheduler
from autopeft.scheduler.search import run_search
from autopeft.scheduler.spec import JobSpec, PreparedJob, TaskOptions, prepare

__all__ = ["JobSpec", "PreparedJob", "Progress", "Scheduler", "TaskOptions", "prepare", "run_search"]
