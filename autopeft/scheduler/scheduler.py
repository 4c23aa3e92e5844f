"""Owning a running job: keep every worker busy, record every outcome, stop on budget.

The loop asks the optimizer for exactly as many points as there are idle workers (the running
ones passed as pending), records each trial before it is dispatched, and feeds every outcome —
completed or failed — to the store and then to the optimizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from autopeft.objectives import Objective
from autopeft.optimizers import Observation, Optimizer
from autopeft.space import Point, SearchSpace
from autopeft.store import JobState, Store, TrialRecord
from autopeft.trials import Fidelity, TrialOutcome, TrialRequest, TrialState
from autopeft.worker.pool import WorkerPool

WAIT_SLICE_S = 1.0


def trial_seed(job_seed: int, number: int) -> int:
    """A distinct, reproducible seed per trial of a job."""
    return (job_seed * 1_000_003 + number) % 2**31


@dataclass
class Progress:
    """What the scheduler reports after each finished trial."""

    done: int
    failed: int
    budget: int
    last: TrialRecord


class Scheduler:
    """Runs job ``job_id`` to its trial budget (or ``max_time_s``) on ``pool``."""

    def __init__(
        self,
        store: Store,
        job_id: int,
        *,
        space: SearchSpace,
        optimizer: Optimizer,
        objectives: list[Objective],
        pool: WorkerPool,
        fidelity: Fidelity,
        seed: int,
        budget_trials: int,
        max_time_s: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.space = space
        self.optimizer = optimizer
        self.objectives = objectives
        self.pool = pool
        self.fidelity = fidelity
        self.seed = seed
        self.budget = budget_trials
        self.max_time_s = max_time_s
        self.on_progress = on_progress or (lambda progress: None)
        self._points: dict[int, Point] = {}
        self._created = len(store.trials(job_id))
        self.done = 0
        self.failed = 0

    def run(self) -> None:
        """Drive the job to its end and mark it completed (or cancelled on Ctrl-C, failed on error)."""
        self.store.set_job_state(self.job_id, JobState.RUNNING)
        deadline = None if self.max_time_s is None else time.monotonic() + self.max_time_s
        try:
            while True:
                out_of_time = deadline is not None and time.monotonic() >= deadline
                if not out_of_time and not self._dispatch() and not self.pool.busy:
                    break
                if out_of_time and not self.pool.busy:
                    break
                for request, outcome in self.pool.wait(WAIT_SLICE_S):
                    self._record(request, outcome)
        except KeyboardInterrupt:
            self.store.set_job_state(self.job_id, JobState.CANCELLED, "interrupted")
            raise
        except Exception as exc:
            self.store.set_job_state(self.job_id, JobState.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        self.store.set_job_state(self.job_id, JobState.COMPLETED)

    def _dispatch(self) -> bool:
        """Fill idle workers with new trials; False when nothing runs and nothing can be started."""
        remaining = self.budget - self.done - len(self.pool.busy)
        idle = self.pool.idle
        if remaining <= 0 or not idle:
            return bool(self.pool.busy)
        pending = [self._points[slot.request.trial_id] for slot in self.pool.busy]
        points = self.optimizer.ask(min(len(idle), remaining), pending=pending)
        for slot, point in zip(idle, points):
            self.pool.submit(slot, self._new_trial(point, slot.name))
        return bool(points) or bool(self.pool.busy)

    def _new_trial(self, point: Point, worker: str) -> TrialRequest:
        record = self.store.add_trial(
            self.job_id,
            config=point,
            structure=self.space.decode(point).to_json(),
            trainable_params=self.space.trainable_params(point),
            seed=trial_seed(self.seed, self._created),
            fidelity=self.fidelity.to_json(),
        )
        self._created += 1
        self._points[record.id] = point
        self.store.mark_running(record.id, worker)
        return TrialRequest(record.id, record.number, record.structure, record.seed, self.fidelity)

    def _record(self, request: TrialRequest, outcome: TrialOutcome) -> None:
        predicted = self.space.trainable_params(self._points[request.trial_id])
        if outcome.state == TrialState.COMPLETED and outcome.trainable_params != predicted:
            outcome = TrialOutcome(
                **{**outcome.__dict__, "state": TrialState.FAILED,
                   "error": f"built model has {outcome.trainable_params} trainable parameters, "
                            f"the exact count predicted {predicted}"}
            )
        record = self.store.record_outcome(outcome)
        self.done += 1
        self.failed += outcome.state == TrialState.FAILED
        self.optimizer.tell([self._observation(request.trial_id, record)])
        self.on_progress(Progress(self.done, self.failed, self.budget, record))

    def _observation(self, trial_id: int, record: TrialRecord) -> Observation:
        point = self._points.pop(trial_id)
        if record.state != TrialState.COMPLETED:
            return Observation(point, failed=True)
        return Observation(point, {o.name: record.value(o.name) for o in self.objectives})
