"""A simulated worker pool: recorded trials replayed on a simulated clock.

Like Syne Tune's simulator backend, :class:`SimulatedPool` lets the real scheduler, proposer,
promotion and store run a search at any number of workers in seconds. Each request's structure is
looked up in a table of trials that were once trained for real; the trial "runs" for its
recorded wall time on a :class:`SimulatedClock`, and its outcome is the recorded one. An event
queue orders the finishes: :meth:`SimulatedPool.wait` moves the clock to the earliest finish time
and returns every trial finishing then.

What the replay cannot know:

- A longer fidelity (a promoted rung) takes the recorded time scaled by its step ratio, and
  scores the recorded score: the table holds one fidelity, so a promotion costs its real time but
  learns nothing new.
- A replicate (another training seed) scores the recorded score too: the table holds one seed.
- A structure missing from the table comes back as a failed trial that says so.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autopeft.errors import AutopeftError
from autopeft.trials import Fidelity, TrialOutcome, TrialRequest, TrialState
from autopeft.worker.contract import SlotPool


class SimulationError(AutopeftError):
    """A request the recorded table cannot stand for (another batch size, sequence length, ...)."""


class SimulatedClock:
    """Simulated seconds, starting at ``start``; only :meth:`advance_to` moves them."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        """Jump to ``t`` seconds if that is later than now."""
        self._now = max(self._now, t)


def recorded_key(structure: Mapping[str, Any]) -> str:
    """The table key of a structure's JSON (``Structure.to_json()``, as a request carries it)."""
    return json.dumps(structure, sort_keys=True)


@dataclass(frozen=True)
class RecordedTrial:
    """What one real trial measured.

    Attributes:
        metrics: scores on the split it was scored on (``accuracy``, ...); empty when it failed.
        trainable_params: trainable parameters of the built model.
        wall_time_s: seconds from request to result, as recorded.
        peak_memory_bytes: peak memory of the worker during the trial.
        step_time_s: mean seconds per optimizer step.
        error: why it failed, or None when it completed.
    """

    metrics: dict[str, float]
    trainable_params: int | None
    wall_time_s: float
    peak_memory_bytes: int | None = None
    step_time_s: float | None = None
    error: str | None = None


@dataclass
class SimulatedSlot:
    """One simulated worker; ``finishes_at`` (clock seconds) and ``outcome`` while it is busy."""

    name: str
    idle_since: float
    request: TrialRequest | None = None
    finishes_at: float = 0.0
    outcome: TrialOutcome | None = field(default=None, repr=False)


class SimulatedPool(SlotPool):
    """``size`` simulated workers replaying ``recorded`` (keyed by :func:`recorded_key`).

    ``recorded_at`` is the fidelity the table was recorded at; requests may differ from it only in
    ``steps`` and ``train_examples`` (a promotion), which scale the recorded time by the step ratio.
    """

    def __init__(
        self, recorded: Mapping[str, RecordedTrial], size: int, clock: SimulatedClock, recorded_at: Fidelity
    ) -> None:
        self.recorded = recorded
        self.clock = clock
        self.recorded_at = recorded_at
        self.slots = [SimulatedSlot(f"sim-{i}", clock.now()) for i in range(size)]
        self._events: list[tuple[float, int, int]] = []  # (finish time s, submission order, slot index)
        self._submitted = 0

    def submit(self, slot: SimulatedSlot, request: TrialRequest) -> None:
        """Start ``request`` on ``slot`` now; it finishes after its replayed wall time."""
        outcome = self.replay(request, slot.name)
        slot.request, slot.outcome = request, outcome
        slot.finishes_at = self.clock.now() + (outcome.wall_time_s or 0.0)
        heapq.heappush(self._events, (slot.finishes_at, self._submitted, self.slots.index(slot)))
        self._submitted += 1

    def wait(self, timeout_s: float | None = None) -> list[tuple[TrialRequest, TrialOutcome]]:
        """Move the clock to the earliest finish and return every trial finishing then; or, when
        that is more than ``timeout_s`` simulated seconds away, move it on by ``timeout_s`` and
        return nothing (the scheduler then beats its heartbeat and prefetches, as with real workers).
        """
        if not self._events:
            return []
        due = self._events[0][0]
        if timeout_s is not None and due > self.clock.now() + timeout_s:
            self.clock.advance_to(self.clock.now() + timeout_s)
            return []
        self.clock.advance_to(due)
        finished = []
        while self._events and self._events[0][0] <= self.clock.now():
            slot = self.slots[heapq.heappop(self._events)[2]]
            finished.append((slot.request, slot.outcome))
            slot.request, slot.outcome, slot.idle_since = None, None, self.clock.now()
        return finished

    def shutdown(self) -> None:
        """Drop every running trial, as stopping real workers would."""
        self._events.clear()
        for slot in self.slots:
            slot.request, slot.outcome = None, None

    def replay(self, request: TrialRequest, worker: str) -> TrialOutcome:
        """The recorded outcome of ``request``'s structure, its wall time scaled to the request's steps."""
        trial = self.recorded.get(recorded_key(request.structure))
        if trial is None:
            return TrialOutcome(request.trial_id, TrialState.FAILED, worker, error="structure not in the recorded table")
        wall_time_s = trial.wall_time_s * self._step_ratio(request.fidelity)
        if trial.error is not None:
            return TrialOutcome(request.trial_id, TrialState.FAILED, worker, wall_time_s=wall_time_s, error=trial.error)
        if request.expected_params is not None and trial.trainable_params != request.expected_params:
            return TrialOutcome(
                request.trial_id, TrialState.FAILED, worker, wall_time_s=wall_time_s,
                error=f"recorded {trial.trainable_params} trainable parameters, expected {request.expected_params}",
            )
        return TrialOutcome(
            request.trial_id, TrialState.COMPLETED, worker, metrics=dict(trial.metrics),
            trainable_params=trial.trainable_params, peak_memory_bytes=trial.peak_memory_bytes,
            wall_time_s=wall_time_s, step_time_s=trial.step_time_s,
        )

    def _step_ratio(self, fidelity: Fidelity) -> float:
        """Steps of ``fidelity`` per recorded step; refuses a fidelity that differs otherwise."""
        same_budget = replace(fidelity, steps=self.recorded_at.steps, train_examples=self.recorded_at.train_examples)
        if same_budget != self.recorded_at:
            raise SimulationError(f"the table was recorded at {self.recorded_at}; cannot replay {fidelity}")
        return fidelity.steps / self.recorded_at.steps
