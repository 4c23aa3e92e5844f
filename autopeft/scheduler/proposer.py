"""Proposals computed while workers train.

A Bayesian proposal can take tens of seconds on a small machine (11-35 s were seen for
qLogNEHVI at q=4 with 30 observations and 12 dimensions on 2 cores, depending on how the
acquisition is optimised). The :class:`Proposer` owns the optimizer on one background thread: every
``tell`` and ``ask`` runs there in submission order, and :meth:`prefetch` starts the next
proposal as soon as all workers are busy, so a worker that finishes usually finds its next
configuration ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from autopeft.optimizers import Observation, Optimizer
from autopeft.space import Point


class Proposer:
    """Runs an optimizer on one background thread; ``on_error`` hears of every failed ``tell``."""

    def __init__(self, optimizer: Optimizer, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.optimizer = optimizer
        self.on_error = on_error
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autopeft-proposer")
        self._prefetched: Future | None = None
        self._ready: list[Point] = []

    def tell(self, observations: Sequence[Observation]) -> None:
        told = self._thread.submit(self.optimizer.tell, list(observations))
        told.add_done_callback(self._report)

    def _report(self, told: Future) -> None:
        if not told.cancelled() and told.exception() is not None and self.on_error is not None:
            self.on_error(told.exception())

    def prefetch(self, n: int, pending: Sequence[Point]) -> None:
        """Start computing ``n`` proposals for when workers free up (no-op if some are ready)."""
        if self._prefetched is None and not self._ready and n > 0:
            self._prefetched = self._thread.submit(self.optimizer.ask, n, list(pending))

    def take(self, n: int, pending: Sequence[Point]) -> list[Point]:
        """``n`` proposals: the prefetched ones first (waiting for them if needed), then fresh ones.

        Prefetched points were chosen against an older pending set; the optimizer had already
        excluded everything asked before, so they never duplicate a running trial.
        """
        if self._prefetched is not None:
            self._ready += self._prefetched.result()
            self._prefetched = None
        if len(self._ready) < n:
            asked = self._thread.submit(self.optimizer.ask, n - len(self._ready), [*pending, *self._ready])
            self._ready += asked.result()
        points, self._ready = self._ready[:n], self._ready[n:]
        return points

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
