"""The trial store (SQLAlchemy 2; SQLite by default, PostgreSQL by URL; Alembic in storage/)."""

from autopeft.store.database import DEFAULT_URL
from autopeft.store.store import FINAL_JOB_STATES, FINISHED_JOB_STATES, JobRecord, JobState, Store, TrialRecord, TrialRole

__all__ = ["DEFAULT_URL", "FINAL_JOB_STATES", "FINISHED_JOB_STATES", "JobRecord", "JobState", "Store", "TrialRecord", "TrialRole"]
