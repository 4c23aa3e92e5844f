"""Proposals computed while workers train.

A Bayesian proposal can take tens of seconds on a small machine (11-35 s were seen for
qLogNEHVI at q=4 with 30 observations and 12 dimensions on 2 cores, depending on how the
acquisition is optimised). The :class:`Proposer` owns the optimizer on one background thread: every
``tell`` and ``ask`` runs there in submission order, and :meth:`prefetch` starts the next
proposal as soon as all workers are busy, so a worker that finishes usually finds its next
configuration ready.

Every call on that thread is timed against the scheduler's clock: a call starts when it was
submitted or when the previous call finished, whichever is later, and takes the seconds it really
took. A proposal taken before it is ready moves the clock to when it is ready, which on a real
clock has already happened, and on a simulated clock (:mod:`autopeft.worker.simulated`) charges
the proposal's measured time to the simulated run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from autopeft.optimizers import Observation, Optimizer
from autopeft.space import Point
from autopeft.worker.contract import MONOTONIC, Clock


class Proposer:
    """Runs an optimizer on one background thread; ``on_error`` hears of every failed ``tell``.

    ``timings`` lists ``(call, seconds)`` for every ``tell`` and ``ask`` the thread ran.
    """

    def __init__(
        self, optimizer: Optimizer, on_error: Callable[[BaseException], None] | None = None, clock: Clock = MONOTONIC
    ) -> None:
        self.optimizer = optimizer
        self.on_error = on_error
        self.clock = clock
        self.timings: list[tuple[str, float]] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autopeft-proposer")
        self._free_at = clock.now()
        self._prefetched: Future | None = None
        self._ready: list[Point] = []

    def _submit(self, call: Callable[..., Any], *args: Any) -> Future:
        """Run ``call(*args)`` on the thread; the future holds ``(result, clock time it was ready)``."""
        return self._thread.submit(self._timed, self.clock.now(), call, *args)

    def _timed(self, submitted_at: float, call: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        start, began = max(self._free_at, submitted_at), time.perf_counter()
        try:
            result = call(*args)
        finally:
            seconds = time.perf_counter() - began
            self.timings.append((call.__name__, seconds))
            self._free_at = start + seconds
        return result, self._free_at

    def _result(self, future: Future) -> list[Point]:
        """The proposals of ``future``, once the clock has reached the time they were ready."""
        points, ready_at = future.result()
        self.clock.advance_to(ready_at)
        return points

    def tell(self, observations: Sequence[Observation]) -> None:
        told = self._submit(self.optimizer.tell, list(observations))
        told.add_done_callback(self._report)

    def _report(self, told: Future) -> None:
        if not told.cancelled() and told.exception() is not None and self.on_error is not None:
            self.on_error(told.exception())

    def prefetch(self, n: int, pending: Sequence[Point]) -> None:
        """Start computing ``n`` proposals for when workers free up (no-op if some are ready)."""
        if self._prefetched is None and not self._ready and n > 0:
            self._prefetched = self._submit(self.optimizer.ask, n, list(pending))

    def take(self, n: int, pending: Sequence[Point]) -> list[Point]:
        """``n`` proposals: the prefetched ones first (waiting for them if needed), then fresh ones.

        Prefetched points were chosen against an older pending set; the optimizer had already
        excluded everything asked before, so they never duplicate a running trial.
        """
        if self._prefetched is not None:
            self._ready += self._result(self._prefetched)
            self._prefetched = None
        if len(self._ready) < n:
            self._ready += self._result(self._submit(self.optimizer.ask, n - len(self._ready), [*pending, *self._ready]))
        points, self._ready = self._ready[:n], self._ready[n:]
        return points

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
