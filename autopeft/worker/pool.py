"""A pool of Ray actors, one per worker slot, on a local Ray or an existing cluster."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray

from autopeft.errors import AutopeftError
from autopeft.trials import TrialOutcome, TrialRequest, TrialState
from autopeft.worker.actor import TrialWorker
from autopeft.worker.proxy import WorkerSpec


class WorkerPoolError(AutopeftError):
    """Ray could not be started or reached, or the workers could not load their model."""


def start_ray(address: str | None, num_cpus: int) -> None:
    """Connect to the cluster at ``address``, or start a local Ray sized for the pool."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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
    """One worker: its actor and, while it trains, the request and the pending result."""

    actor: ray.actor.ActorHandle
    name: str = ""
    request: TrialRequest | None = None
    result: ray.ObjectRef | None = None


class WorkerPool:
    """``size`` actors that each hold the base model; :meth:`submit` and :meth:`wait` drive them.

    Each actor reserves ``cpus_per_worker`` CPUs (and uses as many torch threads) and
    ``gpus_per_worker`` GPUs when the cluster has them.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        size: int,
        *,
        address: str | None = None,
        cpus_per_worker: int = 1,
        gpus_per_worker: float = 0.0,
    ) -> None:
        start_ray(address, num_cpus=max(size * cpus_per_worker, 1))
        spec = WorkerSpec(**{**spec.__dict__, "threads": spec.threads or cpus_per_worker})
        self._spec_ref = ray.put(spec)
        self._options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
        self.slots = [Slot(self._new_actor()) for _ in range(size)]
        try:
            for slot, name in zip(self.slots, ray.get([slot.actor.name.remote() for slot in self.slots])):
                slot.name = name
        except ray.exceptions.RayError as exc:
            self.shutdown()
            raise WorkerPoolError(f"workers failed to start: {str(exc).splitlines()[0]}") from exc

    def _new_actor(self) -> ray.actor.ActorHandle:
        return TrialWorker.options(**self._options).remote(self._spec_ref)

    @property
    def idle(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.request is None]

    @property
    def busy(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.request is not None]

    def submit(self, slot: Slot, request: TrialRequest) -> None:
        slot.request = request
        slot.result = slot.actor.run.remote(request)

    def wait(self, timeout_s: float | None = None) -> list[tuple[TrialRequest, TrialOutcome]]:
        """Block until at least one busy slot finishes (or the timeout); return finished results."""
        pending = {slot.result: slot for slot in self.busy}
        if not pending:
            return []
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout_s)
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0) if ready else (ready, None)
        finished = []
        for ref in ready:
            slot = pending[ref]
            finished.append((slot.request, self._outcome(slot, ref)))
            slot.request, slot.result = None, None
        return finished

    def _outcome(self, slot: Slot, ref: ray.ObjectRef) -> TrialOutcome:
        """The worker's outcome; a dead worker fails its trial and is replaced by a fresh one."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            slot.actor = self._new_actor()
            slot.name = ray.get(slot.actor.name.remote())
            reason = f"worker died: {str(exc).splitlines()[0]}"
        except ray.exceptions.RayError as exc:
            reason = f"worker error: {str(exc).splitlines()[0]}"
        return TrialOutcome(
            trial_id=slot.request.trial_id, state=TrialState.FAILED, worker=slot.name, error=reason[:500]
        )

    def shutdown(self) -> None:
        for slot in self.slots:
            ray.kill(slot.actor)
        self.slots = []
