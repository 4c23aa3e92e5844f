"""The trial store: jobs, their trials and measured values, and what can be asked of them.

Everything leaves the store as frozen records (:class:`JobRecord`, :class:`TrialRecord`), never
as live ORM objects, so callers cannot hold sessions open or write by accident.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, case, cast, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from autopeft.errors import LeaseLost, StoreError
from autopeft.store.database import DEFAULT_URL, create_store_engine, display_url
from autopeft.store.fronts import RungScan, scan_rung
from autopeft.store.models import Event, HypervolumeRecord, Job, Trial, TrialValue, structure_digest, utcnow
from autopeft.trials import TrialOutcome, TrialRole, TrialState

if TYPE_CHECKING:
    from autopeft.objectives import Objective


class JobState(StrEnum):
    """A job's state. ``failed`` (its driver hit an error) and ``interrupted`` (its driver was
    stopped, e.g. Ctrl-C) end a run but not the job: ``resume`` continues both. Only ``completed``
    and ``cancelled`` (the user's decision) are final."""

    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


FINISHED_JOB_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.INTERRUPTED, JobState.CANCELLED)
"""States in which no driver runs the job."""
FINAL_JOB_STATES = (JobState.COMPLETED, JobState.CANCELLED)
"""States that ``resume`` refuses: the job ran to its end or its user stopped it."""


COST_COLUMNS = ("trainable_params", "peak_memory_bytes", "step_time_s", "wall_time_s")
"""Objectives that are columns of a trial rather than measured values (:meth:`TrialRecord.value`)."""


def objective_value(trial: TrialRecord | Measurement, name: str) -> float | None:
    """A metric, or one of the trial's measured costs, by objective name."""
    if name in COST_COLUMNS:
        cost = getattr(trial, name)
        return None if cost is None else float(cost)
    return trial.values.get(name)


@dataclass(frozen=True)
class TrialRecord:
    """A trial as stored. ``values`` holds every measured metric by name."""

    id: int
    job_id: int
    number: int
    state: str
    config: dict[str, Any]
    structure: dict[str, Any]
    trainable_params: int
    seed: int
    fidelity: dict[str, Any]
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    wall_time_s: float | None
    step_time_s: float | None
    peak_memory_bytes: int | None
    error: str | None
    values: dict[str, float]
    rung: int = 0
    attempt: int = 1
    promoted_from: int | None = None
    heartbeat_at: datetime | None = None
    dispatch_wait_s: float | None = None
    timings: dict[str, float] | None = None
    split: str = "search"
    role: str = TrialRole.EXPLORE
    origin_id: int | None = None
    label: str | None = None
    replicates: tuple[int, ...] = ()
    """Numbers of the trials pooled into this record (itself first); empty for a stored trial."""
    spread: dict[str, float] | None = None
    """Sample standard deviation of each pooled value over the replicates (None for one run)."""

    @property
    def n(self) -> int:
        """Runs behind this record's values: 1 unless replicates were pooled."""
        return max(1, len(self.replicates))

    def value(self, name: str) -> float | None:
        """A metric, or one of the trial's measured costs, by objective name."""
        return objective_value(self, name)


@dataclass(frozen=True)
class Measurement:
    """What a front and a proxy warning read of a trial, and nothing more: a light stand-in for
    :class:`TrialRecord` that :func:`autopeft.objectives.pooled` pools the same way.

    ``values`` holds only the values asked for, and ``structure`` only the structure's digest
    (``{"digest": ...}``), which tells replicates apart exactly as the structure does.
    """

    id: int
    number: int
    state: str
    role: str
    rung: int
    structure: dict[str, Any]
    values: dict[str, float]
    trainable_params: int
    step_time_s: float | None
    wall_time_s: float | None
    peak_memory_bytes: int | None
    replicates: tuple[int, ...] = ()
    spread: dict[str, float] | None = None

    @property
    def n(self) -> int:
        return max(1, len(self.replicates))

    def value(self, name: str) -> float | None:
        return objective_value(self, name)


@dataclass(frozen=True)
class JobRecord:
    id: int
    state: str
    spec: dict[str, Any]
    budget_trials: int
    max_time_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    trial_counts: dict[str, int]
    """Search trials by state (validation runs are not part of the search's budget)."""
    driver: str | None = None
    heartbeat_at: datetime | None = None
    run_seconds: float = 0.0

    @property
    def trials_done(self) -> int:
        return self.trial_counts.get(TrialState.COMPLETED, 0) + self.trial_counts.get(TrialState.FAILED, 0)


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def _trial_record(row: Trial) -> TrialRecord:
    return TrialRecord(
        id=row.id,
        job_id=row.job_id,
        number=row.number,
        state=row.state,
        config=row.config,
        structure=row.structure,
        trainable_params=row.trainable_params,
        seed=row.seed,
        fidelity=row.fidelity,
        worker=row.worker,
        created_at=_utc(row.created_at),
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        wall_time_s=row.wall_time_s,
        step_time_s=row.step_time_s,
        peak_memory_bytes=row.peak_memory_bytes,
        error=row.error,
        values={v.name: v.value for v in row.values},
        rung=row.rung,
        attempt=row.attempt,
        promoted_from=row.promoted_from,
        heartbeat_at=_utc(row.heartbeat_at),
        dispatch_wait_s=row.dispatch_wait_s,
        timings=row.timings,
        split=row.split,
        role=row.role,
        origin_id=row.origin_id,
        label=row.label,
    )


_IN_CHUNK = 400
"""Ids or digests per IN list (SQLite binds at most 32766 parameters in a statement)."""


def _searched(job_id: int) -> tuple:
    """Conditions of a job's completed search trials (validation runs are not part of a search)."""
    return Trial.job_id == job_id, Trial.state == TrialState.COMPLETED, Trial.role != TrialRole.VALIDATION


def _in_groups(groups: Iterable[tuple[int, str | None]]) -> Iterable[Any]:
    """Conditions that together choose the trials of these (rung, structure digest) groups: one
    rung and a chunk of digests each, which an index answers (row values in IN are slow in SQLite)."""
    by_rung: dict[int, list[str | None]] = {}
    for rung, digest in sorted(set(groups), key=lambda g: (g[0], g[1] or "")):
        by_rung.setdefault(rung, []).append(digest)
    for rung, digests in by_rung.items():
        for start in range(0, len(digests), _IN_CHUNK):
            yield and_(Trial.rung == rung, Trial.structure_digest.in_(digests[start:start + _IN_CHUNK]))


_COUNTS = select(Trial.job_id, Trial.role, Trial.state, func.count()).group_by(Trial.job_id, Trial.role, Trial.state)
"""Trials by job, role and state: in the order of the index ``ix_trials_job_role``, so no sort."""


def _search_counts(session: Session, query: Any) -> dict[int, dict[str, int]]:
    """Search trials (validation runs are not part of a search's budget) by job and state."""
    counts: dict[int, dict[str, int]] = {}
    for job_id, role, state, count in session.execute(query):
        if role != TrialRole.VALIDATION:
            by_state = counts.setdefault(job_id, {})
            by_state[state] = by_state.get(state, 0) + count
    return counts


class Store:
    """A trial store at ``url`` (SQLite file by default, PostgreSQL by URL), migrated on open."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.engine = create_store_engine(url)
        self.url = display_url(str(self.engine.url))
        self.absolute_url = self.engine.url.render_as_string(hide_password=False)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._metric_names: dict[int, str | None] = {}  # a job's objectives never change

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return self._sessions.begin()

    # ------------------------------------------------------------------------------ jobs
    def create_job(self, spec: dict[str, Any], budget_trials: int, max_time_s: float | None = None) -> int:
        """Record a new job in state ``pending``; returns its id."""
        with self._session() as session:
            job = Job(state=JobState.PENDING, spec=spec, budget_trials=budget_trials, max_time_s=max_time_s)
            session.add(job)
            session.flush()
            return job.id

    def job(self, job_id: int, *, counted: bool = True) -> JobRecord:
        """The job; with ``counted`` False, without its trial counts (``trial_counts`` is empty),
        which saves a pass over the job's trials for callers that only need its spec."""
        with self._sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise StoreError(f"no job {job_id} in the store at {self.url}")
            return self._job_record(session, job, None if counted else {})

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first; their trial counts come from one pass over an index."""
        with self._sessions() as session:
            counts = _search_counts(session, _COUNTS)
            return [self._job_record(session, job, counts.get(job.id, {}))
                    for job in session.scalars(select(Job).order_by(Job.id))]

    @staticmethod
    def _job_record(session: Session, job: Job, counts: dict[str, int] | None = None) -> JobRecord:
        if counts is None:
            counts = _search_counts(session, _COUNTS.where(Trial.job_id == job.id)).get(job.id, {})
        return JobRecord(
            id=job.id,
            state=job.state,
            spec=job.spec,
            budget_trials=job.budget_trials,
            max_time_s=job.max_time_s,
            created_at=_utc(job.created_at),
            started_at=_utc(job.started_at),
            finished_at=_utc(job.finished_at),
            error=job.error,
            trial_counts=counts,
            driver=job.driver,
            heartbeat_at=_utc(job.heartbeat_at),
            run_seconds=job.run_seconds,
        )

    def set_job_state(self, job_id: int, state: str, error: str | None = None) -> None:
        with self._session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise StoreError(f"no job {job_id} in the store at {self.url}")
            job.state = state
            if state == JobState.RUNNING and job.started_at is None:
                job.started_at = utcnow()
            if state in FINISHED_JOB_STATES:
                job.finished_at = utcnow()
            if error is not None:
                job.error = error
            session.add(Event(job_id=job_id, kind=f"job_{state}", message=error or state))

    # ---------------------------------------------------------------------------- trials
    def add_trial(
        self,
        job_id: int,
        *,
        config: dict[str, Any],
        structure: dict[str, Any],
        trainable_params: int,
        seed: int,
        fidelity: dict[str, Any],
        rung: int = 0,
        promoted_from: int | None = None,
        split: str = "search",
        role: str = TrialRole.EXPLORE,
        origin_id: int | None = None,
        label: str | None = None,
    ) -> TrialRecord:
        """Record a pending trial with the next number of its job (see :class:`Trial` for the fields).

        A search trial whose structure the job already has at this rung is twinned with those
        trials (:class:`Trial`); on PostgreSQL the job's row is locked meanwhile, so that two
        writers adding the same structure at once see each other.
        """
        digest = structure_digest(structure)
        for _ in range(5):  # another writer may take the same number; the unique key tells us
            try:
                with self._session() as session:
                    session.execute(select(Job.id).where(Job.id == job_id).with_for_update(key_share=True))
                    twins = [] if role == TrialRole.VALIDATION else session.scalars(select(Trial.id).where(
                        Trial.job_id == job_id, Trial.rung == rung, Trial.structure_digest == digest,
                        Trial.role != TrialRole.VALIDATION,
                    )).all()  # fmt: skip
                    if twins:
                        session.execute(update(Trial).where(Trial.id.in_(twins)).values(twinned=True))
                    number = session.scalar(
                        select(func.coalesce(func.max(Trial.number) + 1, 0)).where(Trial.job_id == job_id)
                    )
                    trial = Trial(
                        job_id=job_id,
                        number=number,
                        state=TrialState.PENDING,
                        config=config,
                        structure=structure,
                        trainable_params=trainable_params,
                        seed=seed,
                        fidelity=fidelity,
                        rung=rung,
                        promoted_from=promoted_from,
                        split=split,
                        role=role,
                        origin_id=origin_id,
                        label=label,
                        structure_digest=digest,
                        twinned=bool(twins),
                    )
                    session.add(trial)
                    session.flush()
                    session.refresh(trial)
                    return _trial_record(trial)
            except IntegrityError:
                continue
        raise StoreError(f"could not allocate a trial number for job {job_id}")

    def mark_running(self, trial_id: int, worker: str, dispatch_wait_s: float | None = None) -> None:
        """A worker took the trial; ``dispatch_wait_s`` is how long that worker sat idle before."""
        with self._session() as session:
            trial = session.get(Trial, trial_id)
            trial.state = TrialState.RUNNING
            trial.worker = worker
            trial.started_at = trial.heartbeat_at = utcnow()
            trial.dispatch_wait_s = dispatch_wait_s

    def heartbeat_trial(self, trial_id: int) -> None:
        with self._session() as session:
            trial = session.get(Trial, trial_id)
            if trial is not None and trial.state == TrialState.RUNNING:
                trial.heartbeat_at = utcnow()

    def retry_trial(self, trial_id: int, reason: str) -> TrialRecord:
        """Put a trial whose worker was lost back to pending, counting the attempt."""
        with self._session() as session:
            trial = session.get(Trial, trial_id)
            trial.state = TrialState.PENDING
            trial.attempt += 1
            trial.worker = None
            trial.started_at = trial.heartbeat_at = None
            session.add(Event(job_id=trial.job_id, trial_id=trial.id, kind="trial_retried", message=reason))
            session.flush()
            return _trial_record(trial)

    # ----------------------------------------------------------------------- the driver
    def claim_job(self, job_id: int, driver: str, stale_after_s: float, *, force: bool = False) -> None:
        """Make ``driver`` the job's driver: an atomic compare-and-set on the job's lease.

        One UPDATE succeeds only while the job is not final and its lease is free: no driver,
        this driver, a stopped job (failed, interrupted), or a heartbeat older than
        ``stale_after_s`` (``force`` when the caller knows the holder is dead). The same UPDATE
        marks the job running (a pending cancellation stays), so of two drivers claiming at once,
        on SQLite or PostgreSQL, exactly one wins; the other gets a StoreError naming the holder
        and the lease's age.
        """
        now = utcnow()
        conditions = [Job.id == job_id, Job.state.not_in(FINAL_JOB_STATES)]
        if not force:
            expired = now - timedelta(seconds=stale_after_s)
            conditions.append(or_(
                Job.driver.is_(None), Job.driver == driver, Job.heartbeat_at.is_(None), Job.heartbeat_at < expired,
                Job.state.in_((JobState.FAILED, JobState.INTERRUPTED)),
            ))  # fmt: skip
        running = case((Job.state == JobState.CANCELLING, Job.state), else_=JobState.RUNNING.value)
        with self._session() as session:
            claimed = session.execute(
                update(Job).where(*conditions).values(driver=driver, heartbeat_at=now, state=running)
            )
            if claimed.rowcount != 1:
                job = session.get(Job, job_id)
                if job is None:
                    raise StoreError(f"no job {job_id} in the store at {self.url}")
                if job.state in FINAL_JOB_STATES:
                    raise StoreError(f"job {job_id} is {job.state}; nothing to resume")
                age = (now - _utc(job.heartbeat_at)).total_seconds()
                raise StoreError(
                    f"job {job_id} is driven by {job.driver}: its lease was renewed {age:.0f} s ago and "
                    f"expires {stale_after_s:.0f} s after renewal"
                )
            session.add(Event(job_id=job_id, kind="driver", message=f"driven by {driver}"))

    def heartbeat_job(self, job_id: int, driver: str, run_seconds: float | None = None) -> str:
        """Renew ``driver``'s lease, and record the job's ``run_seconds`` so far when given; returns
        the job's state (to see cancellation).

        LeaseLost when another driver has claimed the job since (this one's lease had expired).
        """
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if run_seconds is not None:
            values["run_seconds"] = run_seconds
        with self._session() as session:
            renewed = session.execute(update(Job).where(Job.id == job_id, Job.driver == driver).values(**values))
            job = session.get(Job, job_id)
            if renewed.rowcount != 1:
                raise LeaseLost(f"job {job_id} is now driven by {job.driver}; this driver ({driver}) stops")
            return job.state

    def request_cancel(self, job_id: int) -> str:
        """Ask a running job to stop; a job without a live driver is cancelled at once."""
        with self._session() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise StoreError(f"no job {job_id} in the store at {self.url}")
            if job.state in FINISHED_JOB_STATES:
                return job.state
            job.state = JobState.CANCELLING if job.state == JobState.RUNNING else JobState.CANCELLED
            if job.state == JobState.CANCELLED:
                job.finished_at = utcnow()
            session.add(Event(job_id=job_id, kind="cancel_requested", message=job.state))
            return job.state

    def record_hypervolume(self, job_id: int, rung: int, trials_done: int, value: float, reference: dict) -> None:
        with self._session() as session:
            session.add(HypervolumeRecord(job_id=job_id, rung=rung, trials_done=trials_done, value=value,
                                          reference=reference))

    def hypervolumes(self, job_id: int, *, last: bool = False) -> list[tuple[int, int, float, dict]]:
        """(rung, trials done, hypervolume, reference point) in the order they were recorded; with
        ``last``, only the latest (a job records one per completed trial)."""
        record = HypervolumeRecord
        with self._sessions() as session:
            if last:
                query = select(record.rung, record.trials_done, record.value, record.reference)
                row = session.execute(query.where(record.job_id == job_id).order_by(record.id.desc()).limit(1)).first()
                return [tuple(row)] if row else []
            # a job keeps one reference point, so its JSON is decoded once, not once per row
            query = select(record.rung, record.trials_done, record.value, cast(record.reference, Text))
            decoded: dict[str, Any] = {}
            rows = []
            for rung, done, value, text in session.execute(query.where(record.job_id == job_id).order_by(record.id)):
                if text not in decoded:
                    decoded[text] = json.loads(text)
                reference = decoded[text]
                rows.append((rung, done, value, dict(reference) if isinstance(reference, dict) else reference))
            return rows

    def record_event(self, job_id: int, kind: str, message: str) -> None:
        with self._session() as session:
            session.add(Event(job_id=job_id, kind=kind[:32], message=message))

    def record_outcome(self, outcome: TrialOutcome) -> TrialRecord:
        """Store what a worker measured; a failed trial keeps its reason and an event.

        The first outcome of an attempt wins: the worker records its outcome as soon as it has it,
        and the driver records the same outcome again when it arrives over Ray (or a ``cancelled``
        failure for a trial it abandons), which then leaves the stored trial as it is. So a driver
        that dies after a trial finished loses nothing.
        """
        with self._session() as session:
            trial = session.get(Trial, outcome.trial_id)
            if trial.state in (TrialState.COMPLETED, TrialState.FAILED):
                return _trial_record(trial)
            trial.state = outcome.state
            trial.worker = outcome.worker
            trial.finished_at = utcnow()
            trial.wall_time_s = outcome.wall_time_s
            trial.step_time_s = outcome.step_time_s
            trial.peak_memory_bytes = outcome.peak_memory_bytes
            trial.error = outcome.error
            trial.timings = outcome.timings
            if outcome.trainable_params is not None:
                trial.trainable_params = outcome.trainable_params
            trial.values.clear()
            session.flush()  # a retried attempt's old values go before its new ones arrive
            trial.values = [TrialValue(name=k, value=float(v)) for k, v in outcome.metrics.items()]
            metric = self._metric_name(session, trial.job_id)
            trial.metric_value = float(outcome.metrics[metric]) if metric in outcome.metrics else None
            if outcome.state == TrialState.FAILED:
                session.add(
                    Event(job_id=trial.job_id, trial_id=trial.id, kind="trial_failed", message=outcome.error or "")
                )
            session.flush()
            return _trial_record(trial)

    def _metric_name(self, session: Session, job_id: int) -> str | None:
        """The job's first objective when it is a measured metric (what ``Trial.metric_value`` holds)."""
        if job_id not in self._metric_names:
            objectives = (session.get(Job, job_id).spec or {}).get("objectives") or []
            name = objectives[0]["name"] if objectives else None
            self._metric_names[job_id] = None if name in COST_COLUMNS else name
        return self._metric_names[job_id]

    def trials(
        self, job_id: int, states: Iterable[str] | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[TrialRecord]:
        """The job's trials by number; ``limit`` and ``offset`` take one page of them."""
        query = select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)
        if states is not None:
            query = query.where(Trial.state.in_(list(states)))
        if limit is not None or offset:
            query = query.limit(limit).offset(offset)
        with self._sessions() as session:
            return [_trial_record(row) for row in session.scalars(query)]

    def count_trials(self, job_id: int) -> int:
        """How many trials the job has, of every role and state."""
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id))

    # ------------------------------------------------------------- reads at scale (fronts, status)
    def top_rung(self, job_id: int) -> int:
        """The highest rung with a completed trial, 0 when none: the rung a front shows by default."""
        with self._sessions() as session:
            top = session.scalar(
                select(func.max(Trial.rung)).where(Trial.job_id == job_id, Trial.state == TrialState.COMPLETED)
            )
        return top or 0

    def failures(self, job_id: int) -> list[tuple[int, int, str | None]]:
        """(number, attempt, error) of every failed trial of the job, validation runs included."""
        query = select(Trial.number, Trial.attempt, Trial.error).where(
            Trial.job_id == job_id, Trial.state == TrialState.FAILED
        )
        with self._sessions() as session:  # sorted here: ORDER BY would lead SQLite through every trial
            return sorted(tuple(row) for row in session.execute(query))

    def has_trials(self, job_id: int, role: str, state: str = TrialState.COMPLETED) -> bool:
        """Whether the job has a trial of this role in this state (one index lookup)."""
        query = select(Trial.id).where(Trial.job_id == job_id, Trial.role == role, Trial.state == state).limit(1)
        with self._sessions() as session:
            return session.scalar(query) is not None

    def trials_of_role(self, job_id: int, role: str, state: str = TrialState.COMPLETED) -> list[TrialRecord]:
        """The job's trials of this role in this state, by number."""
        query = select(Trial).where(Trial.job_id == job_id, Trial.role == role, Trial.state == state)
        with self._sessions() as session:  # sorted here: ORDER BY would lead SQLite through every trial
            return sorted((_trial_record(row) for row in session.scalars(query)), key=lambda t: t.number)

    def groups_of(self, job_id: int, ids: Iterable[int]) -> list[TrialRecord]:
        """The completed search trials that pool with the trials ``ids`` (same structure and rung;
        :func:`autopeft.objectives.pooled`), by number."""
        ids = sorted(set(ids))
        with self._sessions() as session:
            groups = set()
            for start in range(0, len(ids), _IN_CHUNK):
                chosen = select(Trial.rung, Trial.structure_digest).where(Trial.id.in_(ids[start:start + _IN_CHUNK]))
                groups.update(tuple(row) for row in session.execute(chosen))
        return self._completed_search_trials(job_id, groups)

    def _completed_search_trials(self, job_id: int, groups: Iterable[tuple[int, str]]) -> list[TrialRecord]:
        """The completed search trials in these (rung, structure digest) groups, by number."""
        found: list[TrialRecord] = []
        with self._sessions() as session:
            for chosen in _in_groups(groups):  # by ix_trials_job_digest: state and role are checked here
                rows = session.scalars(select(Trial).where(Trial.job_id == job_id, chosen))
                found += [_trial_record(row) for row in rows
                          if row.state == TrialState.COMPLETED and row.role != TrialRole.VALIDATION]
        return sorted(found, key=lambda t: t.number)

    def scan(self, job_id: int, objectives: Sequence[Objective], rung: int | None) -> RungScan | None:
        """One pass over the rung's index (:mod:`autopeft.store.fronts`); None for a job it cannot
        answer (not exactly two objectives, a task metric and a cost)."""
        if len(objectives) != 2:
            return None
        metric, cost = objectives
        with self._sessions() as session:
            if cost.name not in COST_COLUMNS or metric.name != self._metric_name(session, job_id):
                return None
            return scan_rung(session, job_id, metric, cost, rung)

    def front_candidates(
        self, job_id: int, objectives: Sequence[Objective], rung: int | None, scan: RungScan | None = None
    ) -> list[TrialRecord]:
        """Completed trials that hold the job's front at ``rung`` (of every rung when None), by
        number: ``pareto_front`` of them is ``pareto_front`` of every trial of the rung.

        Those are the runs of the structures on the front, found from the rung's scan
        (:mod:`autopeft.store.fronts`). A job that cannot be scanned gets every completed trial of
        the rung. ``scan`` reuses a scan of the rung.
        """
        if scan is None or scan.rung != rung:
            scan = self.scan(job_id, objectives, rung)
        if scan is None:
            return [t for t in self.trials(job_id, states=[TrialState.COMPLETED]) if rung is None or t.rung == rung]
        alone = {candidate.id for candidate in scan.candidates}
        front = scan.front(tuple(objectives))
        return self._runs_of(job_id, front, alone)

    def _runs_of(self, job_id: int, records: Iterable[Measurement], alone: set[int]) -> list[TrialRecord]:
        """Every run of these light records' structures: the record itself when its id is in
        ``alone`` (it has no twin), its structure's completed search trials otherwise."""
        front = list(records)
        found = self._completed_search_trials(
            job_id, [(t.rung, t.structure["digest"]) for t in front if t.id not in alone]
        )  # fmt: skip
        chosen = sorted(t.id for t in front if t.id in alone)
        with self._sessions() as session:  # the scan chose these: they are completed search trials
            for start in range(0, len(chosen), _IN_CHUNK):
                query = select(Trial).where(Trial.id.in_(chosen[start:start + _IN_CHUNK]))
                found += [_trial_record(row) for row in session.scalars(query)]
        return sorted(found, key=lambda t: t.number)

    def light_front(
        self, job_id: int, objectives: Sequence[Objective], rung: int, scan: RungScan | None = None
    ) -> tuple[list[Measurement], Callable[[Iterable[Measurement]], list[TrialRecord]]] | None:
        """The front of ``rung`` as light records in the order of their first trial, and a way to
        load the runs of some of them; None for a job that cannot be scanned."""
        if scan is None or scan.rung != rung:
            scan = self.scan(job_id, objectives, rung)
        if scan is None:
            return None
        alone = {candidate.id for candidate in scan.candidates}
        front = sorted(scan.front(tuple(objectives)), key=lambda t: t.number)
        return front, lambda records: self._runs_of(job_id, records, alone)

    def singles_predict_one_class(self, job_id: int, objectives: Sequence[Objective], scan: RungScan) -> bool:
        """Whether every observation without a twin at the scanned rung predicts a single class
        (``predicted_classes`` 1.0). A first batch of them usually answers; only a job whose
        first batch all predict one class is searched through."""
        cost = objectives[1]
        alone = (
            *_searched(job_id), Trial.twinned.is_(False), Trial.metric_value.is_not(None),
            getattr(Trial, cost.name).is_not(None), *([] if scan.rung is None else [Trial.rung == scan.rung]),
        )  # fmt: skip
        one_class = (TrialValue.name == "predicted_classes", TrialValue.value == 1.0)
        with self._sessions() as session:
            first = session.scalars(select(Trial.id).where(*alone).limit(_IN_CHUNK)).all()
            found = session.scalars(select(TrialValue.trial_id).where(TrialValue.trial_id.in_(first), *one_class)).all()
            if len(set(found)) < len(first):
                return False
            # a correlated NOT EXISTS: PostgreSQL may merge it through every value, hence the batch above
            others = select(TrialValue.id).where(TrialValue.trial_id == Trial.id, *one_class)
            return session.scalar(select(Trial.id).where(*alone, ~others.exists()).limit(1)) is None

    def measurements(
        self, job_id: int, groups: Iterable[tuple[int, str]], extra: Iterable[str] = ()
    ) -> list[Measurement]:
        """Light records of the completed search trials in these (rung, structure digest) groups,
        by number. ``values`` holds the task metric (``Trial.metric_value``) and the ``extra`` values."""
        extra = list(extra)
        columns = (Trial.id, Trial.number, Trial.role, Trial.rung, Trial.structure_digest, Trial.metric_value,
                   Trial.trainable_params, Trial.step_time_s, Trial.wall_time_s, Trial.peak_memory_bytes)
        rows: list[tuple] = []
        values: dict[int, dict[str, float]] = {}
        with self._sessions() as session:
            metric = self._metric_name(session, job_id)
            for chosen in _in_groups(groups):
                rows += session.execute(select(*columns).where(*_searched(job_id), chosen)).all()
                if extra:
                    measured = (
                        select(TrialValue.trial_id, TrialValue.name, TrialValue.value)
                        .join(Trial, Trial.id == TrialValue.trial_id)
                        .where(*_searched(job_id), chosen, TrialValue.name.in_(extra))
                    )
                    for trial_id, name, value in session.execute(measured):
                        values.setdefault(trial_id, {})[name] = value
        records = []
        for trial_id, number, role, rung, digest, score, params, step, wall, peak in sorted(rows, key=lambda r: r[1]):
            measured = {} if score is None else {metric: score}
            measured.update(values.get(trial_id, {}))
            records.append(Measurement(
                id=trial_id, number=number, state=TrialState.COMPLETED, role=role, rung=rung, structure={"digest": digest},
                values=measured, trainable_params=params, step_time_s=step, wall_time_s=wall, peak_memory_bytes=peak,
            ))  # fmt: skip
        return records

    def trial(self, job_id: int, number: int) -> TrialRecord:
        with self._sessions() as session:
            row = session.scalar(select(Trial).where(Trial.job_id == job_id, Trial.number == number))
            if row is None:
                raise StoreError(f"job {job_id} has no trial {number}")
            return _trial_record(row)

    def events(self, job_id: int) -> list[tuple[datetime, str, str]]:
        with self._sessions() as session:
            rows = session.execute(
                select(Event.at, Event.kind, Event.message).where(Event.job_id == job_id).order_by(Event.id)
            )
            return [tuple(row) for row in rows]
