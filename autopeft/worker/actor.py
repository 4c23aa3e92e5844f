"""The Ray side of a worker: an actor that holds one :class:`ProxyTrainer`."""

from __future__ import annotations

import ray

from autopeft.trials import TrialOutcome, TrialRequest
from autopeft.worker.proxy import ProxyTrainer, WorkerSpec


@ray.remote
class TrialWorker:
    """Loads the base model and data at start, then runs the trials it is sent, one at a time."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.trainer = ProxyTrainer(spec)

    def name(self) -> str:
        return self.trainer.name

    def run(self, request: TrialRequest) -> TrialOutcome:
        return self.trainer.run(request)
