"""The Ray side of a worker: an actor that holds one :class:`ProxyTrainer`."""

from __future__ import annotations

import logging
import os
import socket
import threading

import ray

from autopeft.store import Store
from autopeft.trials import TrialOutcome, TrialRequest
from autopeft.worker.proxy import ProxyTrainer, WorkerSpec

log = logging.getLogger(__name__)


@ray.remote
class TrialWorker:
    """Loads the base model and data (:meth:`start`), then runs the trials it is sent, one at a time.

    While a trial runs, a thread writes its heartbeat to the store every ``heartbeat_s`` seconds,
    so that ``status`` and a resumed driver can tell live trials from lost ones. The outcome is
    written to the store before it is returned, so a driver that dies while it travels loses
    nothing (the driver records it again, which changes nothing; :meth:`Store.record_outcome`).
    """

    def __init__(self, spec: WorkerSpec, storage_url: str | None = None, heartbeat_s: float = 10.0) -> None:
        # Nothing heavy here: :meth:`node` answers as soon as Ray has placed the actor, so the pool
        # can time placement apart from model loading (:meth:`start`).
        self._spec, self._storage_url, self._heartbeat_s = spec, storage_url, heartbeat_s
        self._store: Store | None = None
        self.trainer: ProxyTrainer | None = None

    def node(self) -> str:
        """The id of the Ray node this actor runs on (hex)."""
        return ray.get_runtime_context().get_node_id()

    def start(self) -> str:
        """Load the base model and data; returns the worker's name, ``host:node:pid`` (node: the
        first 8 hex digits of the Ray node id, which tell apart nodes that share a host)."""
        self.trainer = ProxyTrainer(self._spec)
        self.trainer.name = f"{socket.gethostname()}:{self.node()[:8]}:{os.getpid()}"
        self._store = Store(self._storage_url) if self._storage_url else None
        return self.trainer.name

    def pid(self) -> int:
        return os.getpid()

    def run(self, request: TrialRequest) -> TrialOutcome:
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(request.trial_id, done), daemon=True)
        beat.start()
        try:
            outcome = self.trainer.run(request)
        finally:
            done.set()
            beat.join()
        if self._store is not None:
            try:
                self._store.record_outcome(outcome)
            except Exception as exc:  # noqa: BLE001 - the driver records it when the store is back
                log.warning("trial %s: outcome not stored by the worker (%s)", request.trial_id, exc)
        return outcome

    def _beat(self, trial_id: int, done: threading.Event) -> None:
        while self._store is not None and not done.wait(self._heartbeat_s):
            self._store.heartbeat_trial(trial_id)
