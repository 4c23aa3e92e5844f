"""A pool of Ray actors, one per worker slot, on a local Ray or an existing cluster."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import ray

from autopeft.errors import AutopeftError
from autopeft.trials import TrialOutcome, TrialRequest, TrialState
from autopeft.worker.actor import TrialWorker
from autopeft.worker.contract import SlotPool
from autopeft.worker.proxy import WorkerSpec


class WorkerPoolError(AutopeftError):
    """Ray could not be started or reached, or the workers could not load their model."""


def start_ray(address: str | None, num_cpus: int) -> None:
    """Connect to the cluster at ``address`` (or at ``RAY_ADDRESS``, as Ray itself reads it), or
    start a local Ray sized for the pool."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray instance"
        raise WorkerPoolError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from exc


@dataclass
class Slot:
    """One worker: its actor and, while it trains, the request and the pending result.

    ``idle_since`` (``time.monotonic()``) marks when the slot last became free, so the
    scheduler can measure how long workers wait for work.
    """

    actor: ray.actor.ActorHandle
    name: str = ""
    request: TrialRequest | None = None
    result: ray.ObjectRef | None = None
    idle_since: float = field(default_factory=time.monotonic)


class WorkerPool(SlotPool):
    """``size`` actors that each hold the base model; :meth:`submit` and :meth:`wait` drive them.

    Each actor reserves ``cpus_per_worker`` CPUs (and uses as many torch threads) and
    ``gpus_per_worker`` GPUs (fractions allowed) when the cluster has them. A worker that dies
    is replaced by a fresh actor; its trial comes back as a ``lost_worker`` outcome.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        size: int,
        *,
        address: str | None = None,
        cpus_per_worker: int = 1,
        gpus_per_worker: float = 0.0,
        storage_url: str | None = None,
        heartbeat_s: float = 10.0,
    ) -> None:
        start_ray(address, num_cpus=max(size * cpus_per_worker, 1))
        spec = WorkerSpec(**{**spec.__dict__, "threads": spec.threads or cpus_per_worker})
        self._actor_args = (ray.put(spec), storage_url, heartbeat_s)
        self._options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
        self.slots = [Slot(self._new_actor()) for _ in range(size)]
        try:
            for slot, name in zip(self.slots, ray.get([slot.actor.name.remote() for slot in self.slots])):
                slot.name = name
        except ray.exceptions.RayError as exc:
            self.shutdown()
            raise WorkerPoolError(f"workers failed to start: {str(exc).splitlines()[0]}") from exc
        for slot in self.slots:
            slot.idle_since = time.monotonic()

    def _new_actor(self) -> ray.actor.ActorHandle:
        return TrialWorker.options(**self._options).remote(*self._actor_args)

    def submit(self, slot: Slot, request: TrialRequest) -> None:
        slot.request = request
        slot.result = slot.actor.run.remote(request)

    def wait(self, timeout_s: float | None = None) -> list[tuple[TrialRequest, TrialOutcome]]:
        """Block until at least one busy slot finishes (or the timeout); return finished results."""
        pending = {slot.result: slot for slot in self.busy}
        if not pending:
            return []
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout_s)
        if ready:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        finished = []
        for ref in ready:
            slot = pending[ref]
            finished.append((slot.request, self._outcome(slot, ref)))
            slot.request, slot.result, slot.idle_since = None, None, time.monotonic()
        return finished

    def _outcome(self, slot: Slot, ref: ray.ObjectRef) -> TrialOutcome:
        """The worker's outcome; a dead worker is replaced and its trial reported lost."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            lost_name = slot.name
            slot.actor = self._new_actor()
            slot.name = ray.get(slot.actor.name.remote())
            return TrialOutcome(
                trial_id=slot.request.trial_id, state=TrialState.FAILED, worker=lost_name,
                error=f"worker {lost_name} died: {_first_line(exc)}"[:500], lost_worker=True,
            )
        except ray.exceptions.RayError as exc:
            return TrialOutcome(
                trial_id=slot.request.trial_id, state=TrialState.FAILED, worker=slot.name,
                error=f"worker error: {_first_line(exc)}"[:500],
            )

    def worker_pids(self) -> list[int]:
        return ray.get([slot.actor.pid.remote() for slot in self.slots])

    def shutdown(self) -> None:
        for slot in self.slots:
            ray.kill(slot.actor)
        self.slots = []


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
