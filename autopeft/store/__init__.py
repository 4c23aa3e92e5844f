"""The trial store (SQLAlchemy 2; SQLite by default, PostgreSQL by URL; Alembic in storage/)."""

from autopeft.store.database import DEFAULT_URL
from autopeft.store.store import JobRecord, JobState, Store, TrialRecord

__all__ = ["DEFAULT_URL", "JobRecord", "JobState", "Store", "TrialRecord"]
