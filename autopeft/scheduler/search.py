"""Launching a prepared job: workers first, then the job row, then the scheduler loop."""

from __future__ import annotations

from collections.abc import Callable

from autopeft.optimizers import make_optimizer
from autopeft.scheduler.scheduler import Progress, Scheduler
from autopeft.scheduler.spec import PreparedJob
from autopeft.space.search_space import declared_architecture_of
from autopeft.store import Store
from autopeft.worker.pool import WorkerPool
from autopeft.worker.proxy import WorkerSpec


def run_search(
    prepared: PreparedJob,
    store: Store,
    *,
    ray_address: str | None = None,
    cpus_per_worker: int = 1,
    gpus_per_worker: float = 0.0,
    on_created: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> int:
    """Run ``prepared`` to completion and return its job id.

    The worker pool starts (and loads the model) before the job is recorded, so a cluster that
    cannot be reached leaves no job behind.
    """
    spec = prepared.spec
    worker_spec = WorkerSpec(
        model=prepared.model,
        task=prepared.task,
        architecture=declared_architecture_of(prepared.space_spec),
        data_seed=spec.seed,
    )
    pool = WorkerPool(
        worker_spec,
        spec.workers,
        address=ray_address,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )
    try:
        job_id = store.create_job(prepared.stored_spec(), spec.trials, spec.max_time_s)
        if on_created is not None:
            on_created(job_id)
        Scheduler(
            store,
            job_id,
            space=prepared.space,
            optimizer=make_optimizer(spec.optimizer, prepared.space, prepared.objectives, spec.seed),
            objectives=list(prepared.objectives),
            pool=pool,
            fidelity=spec.fidelity,
            seed=spec.seed,
            budget_trials=spec.trials,
            max_time_s=spec.max_time_s,
            on_progress=on_progress,
        ).run()
    finally:
        pool.shutdown()
    return job_id
