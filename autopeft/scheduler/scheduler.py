"""Owning a running job: keep every worker busy, record every outcome, stop on budget.

Each loop turn the scheduler beats the job's heartbeat (and notices a cancellation), gives every
idle worker work — retried trials and promotions first, then exactly as many new proposals as
there are idle workers and budget — records what finished, and, once every worker is busy,
has the next proposal computed in the background. A worker that dies mid-trial costs nothing
but time: the trial runs again on its replacement, up to ``max_attempts`` times. A driver that
dies leaves the store consistent; :meth:`Scheduler.run` on the same job resumes it without
losing or repeating a completed trial.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from autopeft.errors import LeaseLost
from autopeft.objectives import Objective, observed, pareto_front, structure_key
from autopeft.optimizers import Observation, Optimizer
from autopeft.optimizers.hypervolume import hypervolume, reference_point
from autopeft.scheduler.budget import Budget
from autopeft.scheduler.promotion import Rungs, promotable
from autopeft.scheduler.proposer import Proposer
from autopeft.space import Point, SearchSpace
from autopeft.space.defaults import PractitionerDefault
from autopeft.store import JobState, Store, TrialRecord, TrialRole
from autopeft.trials import Fidelity, TrialOutcome, TrialRequest, TrialState
from autopeft.worker.contract import MONOTONIC, Clock, Pool, PoolSlot

log = logging.getLogger(__name__)
WAIT_SLICE_S = 0.5
REFERENCE_AFTER = 4
"""Completed trials after which the hypervolume reference point is fixed and recorded."""


def _dead_here(driver: str) -> bool:
    """Whether ``driver`` ("host:pid") ran on this host and its process is gone."""
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def trial_seed(job_seed: int, number: int) -> int:
    """A distinct, reproducible seed per trial of a job."""
    return (job_seed * 1_000_003 + number) % 2**31


@dataclass(frozen=True)
class SchedulerSettings:
    """How a job runs, beyond its budget.

    Attributes:
        rungs: fidelity levels for multi-fidelity promotion (one level = none).
        max_attempts: runs of a trial whose worker dies before it is failed.
        heartbeat_s: seconds between the driver's heartbeats (and cancellation checks).
        stale_after_s: a driver silent this long is considered dead (resume may take over).
        prefetch: compute the next proposal while every worker is busy.
        confirm_seeds: runs (seeds) of every structure on a rung's front: each structure that
            enters the front is re-run with new seeds until it has this many, before new
            proposals; the front then holds their means (1 = no confirmation).
        defaults: practitioner defaults run first in a new job (at most half the budget).
    """

    rungs: Rungs = field(default_factory=Rungs)
    max_attempts: int = 3
    heartbeat_s: float = 5.0
    stale_after_s: float = 60.0
    prefetch: bool = True
    confirm_seeds: int = 1
    defaults: tuple[PractitionerDefault, ...] = ()


@dataclass
class Progress:
    """What the scheduler reports after each finished trial."""

    done: int
    failed: int
    spent_units: float
    budget_units: float
    last: TrialRecord
    hypervolume: float | None


class Scheduler:
    """Runs job ``job_id`` on ``pool`` until its budget is spent, the space is exhausted or it is cancelled.

    ``clock`` is the time heartbeats, dispatch waits and proposals are measured on: real time, or
    the simulated clock of a :class:`~autopeft.worker.simulated.SimulatedPool` (give ``budget``
    the same clock).
    """

    def __init__(
        self,
        store: Store,
        job_id: int,
        *,
        space: SearchSpace,
        optimizer: Optimizer,
        objectives: list[Objective],
        pool: Pool,
        fidelity: Fidelity,
        seed: int,
        budget: Budget,
        settings: SchedulerSettings = SchedulerSettings(),
        on_progress: Callable[[Progress], None] | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.space = space
        self.objectives = objectives
        self.pool = pool
        self.fidelity = fidelity
        self.seed = seed
        self.budget = budget
        self.settings = settings
        self.clock = clock
        self.proposer = Proposer(optimizer, on_error=self._optimizer_failed, clock=clock)
        self.on_progress = on_progress or (lambda progress: None)
        self.driver = f"{socket.gethostname()}:{os.getpid()}"
        self._queue: deque[TrialRecord] = deque()
        self._records: dict[int, TrialRecord] = {}
        self._promoted: set[int] = set()
        self._reference: dict[str, float] | None = None
        self._exhausted = False
        self._last_beat = float("-inf")  # the first loop turn beats
        self.done = 0
        self.failed = 0
        self.hypervolume: float | None = None

    # ------------------------------------------------------------------------- life cycle
    def run(self) -> str:
        """Drive the job to its end; returns the final job state."""
        previous = self.store.job(self.job_id).driver
        self.store.claim_job(
            self.job_id, self.driver, self.settings.stale_after_s, force=previous is not None and _dead_here(previous)
        )
        if self.store.job(self.job_id).state != JobState.CANCELLING:  # a pending cancel wins
            self.store.set_job_state(self.job_id, JobState.RUNNING)
        self._restore()
        try:
            state = self._loop()
        except LeaseLost:
            self.pool.shutdown()  # the job is another driver's now: leave its state alone
            raise
        except KeyboardInterrupt:
            self._stop_driving(JobState.INTERRUPTED, "driver interrupted; resume continues the job")
            raise
        except Exception as exc:
            self._stop_driving(JobState.FAILED, f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            self.proposer.close()
        self.store.set_job_state(self.job_id, state)
        return state

    def _loop(self) -> str:
        while True:
            if self._beat() == JobState.CANCELLING:
                self._abandon_running("cancelled")
                return JobState.CANCELLED
            started_any = self._dispatch()
            if not self.pool.busy and not started_any:
                return JobState.COMPLETED
            for request, outcome in self.pool.wait(WAIT_SLICE_S):
                self._finish(request, outcome)
            self._prefetch()

    def _optimizer_failed(self, exc: BaseException) -> None:
        """An optimizer that cannot learn from an observation is logged and recorded as an event."""
        message = f"optimizer.tell failed: {type(exc).__name__}: {exc}"
        log.error("job %s: %s", self.job_id, message)
        self.store.record_event(self.job_id, "tell_failed", message[:2000])

    def _beat(self) -> str | None:
        if self.clock.now() - self._last_beat < self.settings.heartbeat_s:
            return None
        self._last_beat = self.clock.now()
        return self.store.heartbeat_job(self.job_id, self.driver, run_seconds=self.budget.elapsed_s())

    def _restore(self) -> None:
        """Take over what a previous driver left: observations, promotions, unfinished trials."""
        trials = [t for t in self.store.trials(self.job_id) if t.role != TrialRole.VALIDATION]
        finished = [t for t in trials if t.state in (TrialState.COMPLETED, TrialState.FAILED)]
        for trial in trials:
            self._records[trial.id] = trial
            if trial.promoted_from is not None:
                self._promoted.add(trial.promoted_from)
            if trial.state == TrialState.RUNNING:  # its worker went down with the old driver
                self._records[trial.id] = self.store.retry_trial(trial.id, "resumed by a new driver")
            if trial.state in (TrialState.RUNNING, TrialState.PENDING):
                self._queue.append(self._records[trial.id])
        for trial in finished:
            self.budget.charge(self.settings.rungs.cost(trial.rung), trial.wall_time_s)
            self.done += 1
            self.failed += trial.state == TrialState.FAILED
        self.budget.started -= self.store.job(self.job_id).run_seconds  # --max-time counts earlier drivers' time
        history = self.store.hypervolumes(self.job_id)
        if history:
            self._reference = history[-1][3]  # the reference is fixed once: a resumed job keeps it
        if finished:
            self.proposer.tell([self._observation(t) for t in finished])
            self._update_hypervolume(finished[-1].rung, record=False)
        if not trials:
            self._queue_defaults()

    def _queue_defaults(self) -> None:
        """A new job runs the practitioner defaults first, with at most half of its budget."""
        for default in self.settings.defaults[: int(self.budget.units // 2)]:
            self._queue.append(self._new_trial(default.point, role=TrialRole.DEFAULT, label=default.label))

    # ------------------------------------------------------------------------- dispatching
    def _in_flight_units(self) -> float:
        return sum(self.settings.rungs.cost(slot.request.rung) for slot in self.pool.busy)

    def _dispatch(self) -> bool:
        """Give idle workers queued trials, then new proposals; True if anything runs or started."""
        started = False
        for slot in list(self.pool.idle):
            if not self._queue or not self._affordable(self._queue[0].rung):
                break
            self._submit(slot, self._queue.popleft())
            started = True
        idle = self.pool.idle
        affordable = self._new_trials_affordable()
        wanted = min(len(idle), affordable)
        if wanted > 0 and not self._exhausted:
            points = self.proposer.take(wanted, self._pending_points())
            self._exhausted = len(points) < wanted
            for slot, point in zip(idle, points):
                self._submit(slot, self._new_trial(point))
                started = True
        return started or bool(self.pool.busy)

    def _affordable(self, rung: int) -> bool:
        return self.budget.can_start(self.settings.rungs.cost(rung), self._in_flight_units())

    def _new_trials_affordable(self) -> int:
        if self.budget.stop_reason() is not None:
            return 0
        left = self.budget.units - self.budget.spent_units - self._in_flight_units()
        left -= sum(self.settings.rungs.cost(t.rung) for t in self._queue)
        return max(0, int(left + 1e-9))

    def _pending_points(self) -> list[Point]:
        """Points running or queued: the optimizer must not propose their structures again."""
        running = [self._records[slot.request.trial_id].config for slot in self.pool.busy]
        return running + [record.config for record in self._queue]

    def _prefetch(self) -> None:
        if self.settings.prefetch and not self.pool.idle and not self._exhausted:
            if self._new_trials_affordable() > 0:
                self.proposer.prefetch(1, self._pending_points())

    def _new_trial(
        self, point: Point, rung: int = 0, promoted_from: int | None = None, *, role: str = TrialRole.EXPLORE,
        origin_id: int | None = None, label: str | None = None,
    ) -> TrialRecord:
        number = len(self._records)
        record = self.store.add_trial(
            self.job_id,
            config=point,
            structure=self.space.decode(point).to_json(),
            trainable_params=self.space.trainable_params(point),
            seed=trial_seed(self.seed, number),
            fidelity=self.settings.rungs.fidelity(self.fidelity, rung).to_json(),
            rung=rung,
            promoted_from=promoted_from,
            role=role,
            origin_id=origin_id,
            label=label,
        )
        self._records[record.id] = record
        return record

    def _submit(self, slot: PoolSlot, record: TrialRecord) -> None:
        self.store.mark_running(record.id, slot.name, dispatch_wait_s=self.clock.now() - slot.idle_since)
        request = TrialRequest(
            record.id, record.number, record.structure, record.seed, Fidelity.from_json(record.fidelity), record.rung,
            record.split, expected_params=record.trainable_params,
        )
        self.pool.submit(slot, request)

    # --------------------------------------------------------------------------- outcomes
    def _finish(self, request: TrialRequest, outcome: TrialOutcome) -> None:
        record = self._records[request.trial_id]
        if outcome.lost_worker and record.attempt < self.settings.max_attempts:
            self._queue.appendleft(self.store.retry_trial(record.id, outcome.error or "worker lost"))
            self._records[record.id] = self._queue[0]
            return
        record = self._records[record.id] = self.store.record_outcome(outcome)
        self.budget.charge(self.settings.rungs.cost(record.rung), outcome.wall_time_s)
        self.done += 1
        self.failed += record.state == TrialState.FAILED
        self.proposer.tell([self._observation(record)])
        if record.state == TrialState.COMPLETED:
            self._update_hypervolume(record.rung)
            self._confirm(record.rung)
            self._promote(record.rung)
        self.on_progress(
            Progress(self.done, self.failed, self.budget.spent_units, self.budget.units, record, self.hypervolume)
        )

    def _observation(self, record: TrialRecord) -> Observation:
        if record.state != TrialState.COMPLETED:
            return Observation(record.config, failed=True, rung=record.rung)
        return Observation(record.config, {o.name: record.value(o.name) for o in self.objectives}, rung=record.rung)

    def _rung_trials(self, rung: int) -> list[TrialRecord]:
        return observed([t for t in self._records.values() if t.rung == rung], self.objectives)

    def _promote(self, rung: int) -> None:
        """Queue the rung's newly top-ranked configs one rung up, while the budget can pay for them."""
        if rung >= self.settings.rungs.top:
            return
        cost = self.settings.rungs.cost(rung + 1)
        for trial in promotable(self._rung_trials(rung), self._promoted, self.objectives, self.settings.rungs.eta):
            if not self.budget.can_start(cost, self._committed_units()):
                return
            self._promoted.add(trial.id)
            self._queue.append(self._new_trial(trial.config, rung + 1, promoted_from=trial.id))

    def _committed_units(self) -> float:
        return self._in_flight_units() + sum(self.settings.rungs.cost(t.rung) for t in self._queue)

    def _confirm(self, rung: int) -> None:
        """Queue new-seed runs of the rung's front members until each has ``confirm_seeds`` runs."""
        planned: dict[tuple[str, int], int] = {}
        for trial in self._records.values():
            if trial.role != TrialRole.VALIDATION and trial.state != TrialState.FAILED:
                planned[structure_key(trial)] = planned.get(structure_key(trial), 0) + 1
        cost = self.settings.rungs.cost(rung)
        for member in pareto_front(self._rung_trials(rung), self.objectives):
            for _ in range(self.settings.confirm_seeds - planned[structure_key(member)]):
                if not self.budget.can_start(cost, self._committed_units()):
                    return
                self._queue.append(
                    self._new_trial(member.config, rung, role=TrialRole.REPLICATE, origin_id=member.id)
                )

    def _update_hypervolume(self, rung: int, record: bool = True) -> None:
        values = [{o.name: t.value(o.name) for o in self.objectives} for t in self._rung_trials(rung)]
        if self._reference is None:
            completed = self._rung_trials(0)
            if len(completed) < min(REFERENCE_AFTER, self.budget.units):
                return
            self._reference = reference_point(
                [{o.name: t.value(o.name) for o in self.objectives} for t in completed], self.objectives
            )
        self.hypervolume = hypervolume(values, self.objectives, self._reference)
        if record:
            self.store.record_hypervolume(self.job_id, rung, self.done, self.hypervolume, self._reference)

    def _stop_driving(self, state: str, reason: str) -> None:
        """Leave the job resumable: workers stop, their trials stay running until a new driver
        retries them (what they finished is already stored by the workers)."""
        self.pool.shutdown()
        try:
            self.store.set_job_state(self.job_id, state, reason)
        except Exception as exc:  # noqa: BLE001 - the store may be what failed; resume takes over a running job
            log.error("job %s: could not record %s (%s); the job stays resumable", self.job_id, state, exc)

    def _abandon_running(self, reason: str) -> None:
        """Fail the trials on workers and those still waiting for one (replicates queued for a
        free slot), so that a cancelled job leaves nothing pending or running."""
        for slot in self.pool.busy:
            self.store.record_outcome(
                TrialOutcome(slot.request.trial_id, TrialState.FAILED, slot.name, error=reason)
            )
        self.pool.shutdown()
        while self._queue:
            queued = self._queue.popleft()
            self.store.record_outcome(TrialOutcome(queued.id, TrialState.FAILED, self.driver, error=reason))
