"""Jobs that run in the background of the service, and survive its restarts.

A submitted job is validated and recorded as pending at once (the client gets its id), then
driven from the store on a background thread, exactly as ``autopeft resume`` drives a job. When
the service starts, jobs the store still shows as unfinished — their driver was a previous
service process — are driven again, without losing or repeating a completed trial.

At most ``max_jobs`` jobs run at once and the rest wait their turn (``max_jobs=0`` accepts jobs
but starts none); a submission is refused while the store holds ``max_unfinished`` jobs that are
pending, running or cancelling, so that callers cannot queue work without end. The service has one
token, so the bound is per token and per store.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError

from autopeft.scheduler import JobSpec, prepare, resume_search
from autopeft.scheduler.validation import check_validation, validate_job
from autopeft.service.limits import RequestError
from autopeft.store import FINAL_JOB_STATES, JobState, Store

log = logging.getLogger("autopeft.service")
UNFINISHED = (JobState.PENDING, JobState.RUNNING, JobState.CANCELLING)


class JobRunner:
    """Drives jobs on background threads; at most ``max_jobs`` run at once, the rest wait."""

    def __init__(
        self, store: Store, ray_address: str | None = None, max_jobs: int = 2, max_unfinished: int = 8,
        prepare_timeout_s: float = 120.0,
    ) -> None:
        self.store = store
        self.ray_address = ray_address
        self.max_unfinished = max_unfinished
        self.prepare_timeout_s = prepare_timeout_s
        self._slots = threading.BoundedSemaphore(max_jobs)
        self._submitting = threading.Lock()
        self._preparing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="autopeft-prepare")

    def submit(self, spec: JobSpec) -> int:
        """Validate ``spec`` (AutopeftError for bad input), record it, start it; returns its id.

        Validation loads the model's skeleton, the task and the space on one of two preparation
        threads and may take at most ``prepare_timeout_s``: RequestError (503) past it. RequestError
        (429) when the store already holds ``max_unfinished`` unfinished jobs.
        """
        self._check_room()
        preparing = self._preparing.submit(prepare, spec)
        try:
            prepared = preparing.result(timeout=self.prepare_timeout_s)
        except TimeoutError:
            raise RequestError(
                None, f"validating the job took over {self.prepare_timeout_s:g} s (it loads the model, task and "
                "space); try again later", self.prepare_timeout_s, status=503,
            ) from None  # fmt: skip
        with self._submitting:
            self._check_room()
            job_id = self.store.create_job(prepared.stored_spec(), spec.trials, spec.max_time_s)
        self._start(job_id)
        return job_id

    def _check_room(self) -> None:
        unfinished = sum(job.state in UNFINISHED for job in self.store.jobs())
        if unfinished >= self.max_unfinished:
            raise RequestError(
                None, f"the service already has {unfinished} unfinished jobs, its limit; "
                "wait for one to finish or cancel one", self.max_unfinished, status=429,
            )  # fmt: skip

    def validate(self, job_id: int, **options) -> None:
        """Validate finished job ``job_id`` in the background (see ``validate_job`` for ``options``),
        taking a job slot; bad options fail here, before anything runs."""
        check_validation(self.store, job_id, options.get("top"), options.get("numbers", ()))
        threading.Thread(
            target=self._validate, args=(job_id, options), name=f"autopeft-validate-{job_id}", daemon=True
        ).start()

    def _validate(self, job_id: int, options: dict) -> None:
        try:
            with self._slots:
                validate_job(self.store, job_id, ray_address=self.ray_address, **options)
        except Exception as exc:  # noqa: BLE001 - a failing validation is logged, never kills the service
            log.error("validation of job %s failed: %s", job_id, (str(exc).splitlines() or [type(exc).__name__])[0])

    def resume_unfinished(self) -> list[int]:
        """Drive every job of the store that is not final (never refused): whatever neither completed
        nor was cancelled by its user continues; returns their ids."""
        unfinished = [job.id for job in self.store.jobs() if job.state not in FINAL_JOB_STATES]
        for job_id in unfinished:
            self._start(job_id)
        return unfinished

    def _start(self, job_id: int) -> None:
        threading.Thread(target=self._drive, args=(job_id,), name=f"autopeft-job-{job_id}", daemon=True).start()

    def _drive(self, job_id: int) -> None:
        try:
            with self._slots:
                resume_search(self.store, job_id, ray_address=self.ray_address)
        except Exception as exc:  # noqa: BLE001 - a failing job is logged and stored, never kills the service
            log.error("job %s failed: %s", job_id, (str(exc).splitlines() or [type(exc).__name__])[0])
