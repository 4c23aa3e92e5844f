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

log = logging.getLogger(__name__)


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


PLACEMENT_TIMEOUT_S = 60.0
"""How long a pool with no worker left waits for Ray to place one (seconds), at start or after deaths."""


@dataclass(eq=False)  # slots and starting actors are told apart by identity
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


@dataclass(eq=False)
class Starting:
    """A worker actor Ray was asked for: ``placed`` resolves once Ray has placed it and its process
    runs, ``started`` once it has loaded the model (to its name)."""

    actor: ray.actor.ActorHandle
    placed: ray.ObjectRef
    started: ray.ObjectRef


class WorkerPool(SlotPool):
    """``size`` actors that each hold the base model; :meth:`submit` and :meth:`wait` drive them.

    Each actor reserves ``cpus_per_worker`` CPUs (and uses as many torch threads) and
    ``gpus_per_worker`` GPUs (fractions allowed) when the cluster has them. A worker that dies
    (its process, or its whole node) comes back as a ``lost_worker`` outcome, and a replacement
    actor is requested from Ray at once. Until Ray places it, the pool runs trials on fewer slots;
    any actor that Ray places later (a replacement, or one of the ``size`` it could not place at
    start) joins as a slot. Only a pool with no slot at all waits for one: at most
    ``placement_timeout_s`` seconds, then :class:`WorkerPoolError` says what the cluster lacks.
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
        placement_timeout_s: float = PLACEMENT_TIMEOUT_S,
    ) -> None:
        start_ray(address, num_cpus=max(size * cpus_per_worker, 1))
        spec = WorkerSpec(**{**spec.__dict__, "threads": spec.threads or cpus_per_worker})
        self._actor_args = (ray.put(spec), storage_url, heartbeat_s)
        self._options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
        self.placement_timeout_s = placement_timeout_s
        self.size = size
        self.slots: list[Slot] = []
        self._starting = [self._new_actor() for _ in range(size)]
        try:
            placed = self._wait_placed(size)
            for starting, name in zip(placed, ray.get([s.started for s in placed])):
                self.slots.append(Slot(starting.actor, name))
        except ray.exceptions.RayError as exc:
            self.shutdown()
            raise WorkerPoolError(f"workers failed to start: {_first_line(exc)}") from exc
        except WorkerPoolError:
            self.shutdown()
            raise
        if self._starting:
            log.warning("%d of %d workers placed within %g s; the others join when Ray places them (each needs %s)",
                        len(self.slots), size, placement_timeout_s, self._needs())

    def _new_actor(self) -> Starting:
        actor = TrialWorker.options(**self._options).remote(*self._actor_args)
        return Starting(actor, actor.node.remote(), actor.start.remote())

    def _wait_placed(self, count: int) -> list[Starting]:
        """Up to ``count`` starting actors that Ray places within the placement timeout (taken out of
        the starting list); raises :class:`WorkerPoolError` when it places none."""
        by_ref = {starting.placed: starting for starting in self._starting}
        ready, _ = ray.wait(list(by_ref), num_returns=min(count, len(by_ref)), timeout=self.placement_timeout_s)
        if not ready:
            raise WorkerPoolError(self._unplaceable())
        placed = [by_ref[ref] for ref in ready]
        self._starting = [starting for starting in self._starting if starting not in placed]
        return placed

    def _needs(self) -> str:
        cpus, gpus = self._options["num_cpus"], self._options["num_gpus"]
        return f"{cpus:g} CPU" + (f" and {gpus:g} GPU" if gpus else "")

    def _unplaceable(self) -> str:
        free, total = ray.available_resources(), ray.cluster_resources()
        have = [f"{free.get(kind, 0):g} of {total.get(kind, 0):g} {kind}s free" for kind in ("CPU", "GPU")
                if kind == "CPU" or self._options["num_gpus"]]
        return (f"Ray placed no worker within {self.placement_timeout_s:g} s: each needs {self._needs()}, and the "
                f"cluster has {', '.join(have)} (add nodes, or lower --workers or --cpus-per-worker)")

    def submit(self, slot: Slot, request: TrialRequest) -> None:
        slot.request = request
        slot.result = slot.actor.run.remote(request)

    def wait(self, timeout_s: float | None = None) -> list[tuple[TrialRequest, TrialOutcome]]:
        """Block until at least one busy slot finishes (or the timeout); return finished results.

        Workers that Ray placed since the last call join first. When the finished results leave no
        slot at all, this waits for Ray to place a worker (:class:`WorkerPoolError` if it cannot).
        """
        self._admit()
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
        if not self.slots:
            self._await_worker()
        return finished

    def _admit(self) -> None:
        """Actors that Ray placed and that loaded their model since the last call become slots."""
        by_ref = {starting.started: starting for starting in self._starting}
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0) if by_ref else ([], [])
        for ref in ready:
            self._starting.remove(by_ref[ref])
            self._join(by_ref[ref])

    def _join(self, starting: Starting) -> None:
        try:
            name = ray.get(starting.started)
        except ray.exceptions.RayError as exc:
            ray.kill(starting.actor)
            log.warning("a replacement worker failed to start: %s", _first_line(exc))
            return
        self.slots.append(Slot(starting.actor, name))
        log.warning("worker %s joined; %d of %d workers run trials", name, len(self.slots), self.size)

    def _await_worker(self) -> None:
        """No slot is left: wait for Ray to place a starting actor, then for its model to load."""
        for starting in self._wait_placed(1):
            self._join(starting)
        if not self.slots:
            raise WorkerPoolError("no worker left: the worker Ray placed failed to start (see the log above)")

    def _outcome(self, slot: Slot, ref: ray.ObjectRef) -> TrialOutcome:
        """The worker's outcome; a dead worker's trial is reported lost and a replacement requested."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._replace(slot)
            return TrialOutcome(
                trial_id=slot.request.trial_id, state=TrialState.FAILED, worker=slot.name,
                error=f"worker {slot.name} died: {_first_line(exc)}"[:500], lost_worker=True,
            )
        except ray.exceptions.RayError as exc:
            return TrialOutcome(
                trial_id=slot.request.trial_id, state=TrialState.FAILED, worker=slot.name,
                error=f"worker error: {_first_line(exc)}"[:500],
            )

    def _replace(self, slot: Slot) -> None:
        """Drop a dead worker's slot and ask Ray for a new actor, which joins once Ray places it."""
        ray.kill(slot.actor)  # an actor that is only unreachable would otherwise keep its CPUs
        self.slots.remove(slot)
        self._starting.append(self._new_actor())
        log.warning("worker %s died; %d of %d workers run trials until Ray places its replacement (it needs %s)",
                    slot.name, len(self.slots), self.size, self._needs())

    def worker_pids(self) -> list[int]:
        return ray.get([slot.actor.pid.remote() for slot in self.slots])

    def shutdown(self) -> None:
        for actor in [slot.actor for slot in self.slots] + [starting.actor for starting in self._starting]:
            ray.kill(actor)
        self.slots, self._starting = [], []


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
