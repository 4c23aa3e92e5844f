"""Workers: the proxy fine-tune (plain Python) and the Ray actors and pool that run it."""

from autopeft.worker.proxy import ProxyTrainer, TrialFailure, WorkerSpec

__all__ = ["ProxyTrainer", "TrialFailure", "WorkerSpec"]
