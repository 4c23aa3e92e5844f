"""Budget accounting: trial units, wall clock and worker-hours.

A trial at rung k costs ``eta ** k`` *trial units* (it trains ``eta ** k`` times as long as a
rung-0 trial), so ``--trials N`` buys N rung-0 trials' worth of compute whether or not the job
promotes. Worker-hours are the summed wall time of finished trials. A trial starts only if the
units spent plus those in flight plus its own fit; the clock and worker-hour limits stop new
starts, so a job overruns them by at most the trials already in flight. The clock is
``time.monotonic`` unless a simulated run gives its own (seconds either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Budget:
    units: float
    max_time_s: float | None = None
    max_worker_hours: float | None = None
    spent_units: float = 0.0
    worker_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic
    started: float | None = None
    """Clock seconds at which the job started (default: when the budget is made)."""

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def stop_reason(self) -> str | None:
        """Why no new trial may start, or None."""
        if self.max_time_s is not None and self.elapsed_s() >= self.max_time_s:
            return f"wall-clock budget of {self.max_time_s:.0f} s reached"
        if self.max_worker_hours is not None and self.worker_seconds >= 3600 * self.max_worker_hours:
            return f"compute budget of {self.max_worker_hours} worker-hours reached"
        return None

    def can_start(self, cost: float, in_flight: float) -> bool:
        return self.stop_reason() is None and self.spent_units + in_flight + cost <= self.units + 1e-9

    def charge(self, cost: float, wall_time_s: float | None) -> None:
        self.spent_units += cost
        self.worker_seconds += wall_time_s or 0.0
