"""What the scheduler needs of a worker pool and of a clock.

Two pools fit :class:`Pool`: the Ray actors of :mod:`autopeft.worker.pool`, which train for real,
and :class:`autopeft.worker.simulated.SimulatedPool`, which replays recorded trials on a
simulated clock. This module imports neither Ray nor torch.
"""

from __future__ import annotations

import time
from typing import Protocol

from autopeft.trials import TrialOutcome, TrialRequest


class Clock(Protocol):
    """The time a scheduler, its budget and its proposer read, in seconds."""

    def now(self) -> float:
        """Seconds since an arbitrary origin; never decreases."""

    def advance_to(self, t: float) -> None:
        """Say that the caller has waited for something that became ready at time ``t`` (seconds)."""


class MonotonicClock:
    """Real time: ``time.monotonic``. Waiting for a result really takes its time, so
    :meth:`advance_to` has nothing left to do."""

    def now(self) -> float:
        return time.monotonic()

    def advance_to(self, t: float) -> None:
        """No-op: a real wait already brought ``now()`` to at least ``t``."""


MONOTONIC = MonotonicClock()


class PoolSlot(Protocol):
    """One worker: its name, the request it runs (None while idle) and since when it is idle
    (``Clock.now()`` seconds)."""

    name: str
    request: TrialRequest | None
    idle_since: float


class SlotPool:
    """The slot bookkeeping both pools share: ``slots`` (set by the subclass), idle and busy."""

    slots: list

    @property
    def idle(self) -> list:
        return [slot for slot in self.slots if slot.request is None]

    @property
    def busy(self) -> list:
        return [slot for slot in self.slots if slot.request is not None]


class Pool(Protocol):
    """Worker slots that run one trial each; the scheduler submits to idle ones and waits."""

    @property
    def idle(self) -> list[PoolSlot]: ...

    @property
    def busy(self) -> list[PoolSlot]: ...

    def submit(self, slot: PoolSlot, request: TrialRequest) -> None: ...

    def wait(self, timeout_s: float | None = None) -> list[tuple[TrialRequest, TrialOutcome]]:
        """Finished ``(request, outcome)`` pairs: at least one, unless ``timeout_s`` seconds pass
        first or nothing runs."""

    def shutdown(self) -> None: ...
