"""The trial store (SQLAlchemy 2; SQLite by default, PostgreSQL by URL; Alembic in storage/)."""

from autopeft.store.database import DEFAULT_URL
from autopeft.store.store import FINISHED_JOB_STATES, JobRecord, JobState, Store, TrialRecord, TrialRole

__all__ = ["DEFAULT_URL", "FINISHED_JOB_STATES", "JobRecord", "JobState", "Store", "TrialRecord", "TrialRole"]
