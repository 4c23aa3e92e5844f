"""Jobs that run in the background of the service, and survive its restarts.

A submitted job is validated and recorded as pending at once (the client gets its id), then
driven from the store on a background thread, exactly as ``autopeft resume`` drives a job. When
the service starts, jobs the store still shows as unfinished — their driver was a previous
service process — are driven again, without losing or repeating a completed trial.
"""

from __future__ import annotations

import logging
import threading

from autopeft.scheduler import JobSpec, prepare, resume_search
from autopeft.store import JobState, Store

log = logging.getLogger("autopeft.service")
UNFINISHED = (JobState.PENDING, JobState.RUNNING, JobState.CANCELLING)


class JobRunner:
    """Drives jobs on background threads; at most ``max_jobs`` run at once, the rest wait."""

    def __init__(self, store: Store, ray_address: str | None = None, max_jobs: int = 2) -> None:
        self.store = store
        self.ray_address = ray_address
        self._slots = threading.BoundedSemaphore(max_jobs)

    def submit(self, spec: JobSpec) -> int:
        """Validate ``spec`` (AutopeftError for bad input), record it, start it; returns its id."""
        prepared = prepare(spec)
        job_id = self.store.create_job(prepared.stored_spec(), spec.trials, spec.max_time_s)
        self._start(job_id)
        return job_id

    def resume_unfinished(self) -> list[int]:
        """Drive every unfinished job of the store again; returns their ids."""
        unfinished = [job.id for job in self.store.jobs() if job.state in UNFINISHED]
        for job_id in unfinished:
            self._start(job_id)
        return unfinished

    def _start(self, job_id: int) -> None:
        threading.Thread(target=self._drive, args=(job_id,), name=f"autopeft-job-{job_id}", daemon=True).start()

    def _drive(self, job_id: int) -> None:
        with self._slots:
            try:
                resume_search(self.store, job_id, ray_address=self.ray_address)
            except Exception as exc:  # noqa: BLE001 - a failing job is logged and stored, never kills the service
                log.error("job %s failed: %s", job_id, (str(exc).splitlines() or [type(exc).__name__])[0])
