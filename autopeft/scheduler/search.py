"""Launching and resuming jobs: workers first, then the job row, then the scheduler loop."""

from __future__ import annotations

from collections.abc import Callable

from autopeft.errors import AutopeftError
from autopeft.optimizers import Observation, Optimizer, make_optimizer
from autopeft.scheduler.budget import Budget
from autopeft.scheduler.promotion import Rungs
from autopeft.scheduler.scheduler import Progress, Scheduler, SchedulerSettings
from autopeft.scheduler.sensitivities import provide_sensitivities
from autopeft.scheduler.spec import PreparedJob, prepare_stored
from autopeft.space.defaults import PractitionerDefault, practitioner_defaults
from autopeft.space.search_space import declared_architecture_of
from autopeft.store import JobState, Store
from autopeft.trials import TrialState
from autopeft.worker.pool import WorkerPool
from autopeft.worker.proxy import WorkerSpec


def worker_pool(prepared: PreparedJob, store: Store, ray_address: str | None) -> WorkerPool:
    """The job's Ray workers, each holding the model and the job's task splits."""
    spec = prepared.spec
    worker_spec = WorkerSpec(
        model=prepared.model,
        task=prepared.task,
        architecture=declared_architecture_of(prepared.space_spec),
        data_seed=spec.seed,
        inits=prepared.inits,
        rankings=prepared.rankings,
    )
    return WorkerPool(
        worker_spec,
        spec.workers,
        address=ray_address,
        cpus_per_worker=spec.cpus_per_worker,
        gpus_per_worker=spec.gpus_per_worker,
        storage_url=store.absolute_url,
    )


def _scheduler(prepared: PreparedJob, store: Store, job_id: int, pool: WorkerPool, optimizer: Optimizer,
               on_progress: Callable[[Progress], None] | None) -> Scheduler:
    spec = prepared.spec
    return Scheduler(
        store,
        job_id,
        space=prepared.space,
        optimizer=optimizer,
        objectives=list(prepared.objectives),
        pool=pool,
        fidelity=spec.fidelity,
        seed=spec.seed,
        budget=Budget(spec.trials, spec.max_time_s, spec.max_worker_hours),
        settings=SchedulerSettings(
            rungs=Rungs(spec.rungs, spec.eta),
            max_attempts=spec.max_attempts,
            confirm_seeds=spec.confirm_seeds,
            defaults=_untried_defaults(prepared, optimizer) if spec.defaults else (),
        ),
        on_progress=on_progress,
    )


def _untried_defaults(prepared: PreparedJob, optimizer: Optimizer) -> tuple[PractitionerDefault, ...]:
    """The space's practitioner defaults, less those the optimizer already observed (a warm start)."""
    space = prepared.space
    known = {space.structure_key(o.point) for o in optimizer.observations}
    return tuple(d for d in practitioner_defaults(space) if space.structure_key(d.point) not in known)


def warm_start_observations(store: Store, prepared: PreparedJob) -> list[Observation]:
    """Finished trials of job ``prepared.spec.warm_start``, which must have searched the same space."""
    source = store.job(prepared.spec.warm_start)
    theirs = source.spec.get("space_spec")
    if theirs != prepared.space_spec.model_dump(mode="json"):
        raise AutopeftError(f"--warm-start job {source.id} searched a different space; its trials cannot seed this one")
    observations = []
    for trial in store.trials(source.id, states=[TrialState.COMPLETED, TrialState.FAILED]):
        if set(trial.config) != set(prepared.space.names):
            continue
        if trial.state == TrialState.FAILED:
            observations.append(Observation(trial.config, failed=True, rung=trial.rung))
        elif all(trial.value(o.name) is not None for o in prepared.objectives):
            values = {o.name: trial.value(o.name) for o in prepared.objectives}
            observations.append(Observation(trial.config, values, rung=trial.rung))
    return observations


def run_search(
    prepared: PreparedJob,
    store: Store,
    *,
    ray_address: str | None = None,
    on_created: Callable[[int], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_measure: Callable[[str], None] | None = None,
) -> int:
    """Run ``prepared`` to its end and return its job id.

    Budgeted spaces get their SPT / IST scores first (``on_measure(method)`` announces a
    measurement). The worker pool starts (and loads the model) before the job is recorded, so a cluster that
    cannot be reached leaves no job behind.
    """
    spec = prepared.spec
    warm = warm_start_observations(store, prepared) if spec.warm_start is not None else []
    prepared = provide_sensitivities(prepared, store, on_measure)
    pool = worker_pool(prepared, store, ray_address)
    try:
        job_id = store.create_job(prepared.stored_spec(), spec.trials, spec.max_time_s)
        if on_created is not None:
            on_created(job_id)
        optimizer = make_optimizer(spec.optimizer, prepared.space, prepared.objectives, spec.seed)
        if warm:
            optimizer.tell(warm)
        _scheduler(prepared, store, job_id, pool, optimizer, on_progress).run()
    finally:
        pool.shutdown()
    return job_id


def resume_search(
    store: Store,
    job_id: int,
    *,
    ray_address: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> str:
    """Run a stored job from where the store says it is; returns the final state.

    That is how a job whose driver died continues (completed and failed trials are kept and told
    to a fresh optimizer, trials that were running run again), and how the service runs a job it
    recorded as pending. When the workers cannot start, the job is marked failed with the reason.
    """
    job = store.job(job_id)
    try:
        prepared = provide_sensitivities(prepare_stored(job.spec), store)
        pool = worker_pool(prepared, store, ray_address)
    except AutopeftError as exc:
        store.set_job_state(job_id, JobState.FAILED, str(exc))
        raise
    try:
        optimizer = make_optimizer(prepared.spec.optimizer, prepared.space, prepared.objectives, prepared.spec.seed)
        if prepared.spec.warm_start is not None:
            optimizer.tell(warm_start_observations(store, prepared))
        return _scheduler(prepared, store, job_id, pool, optimizer, on_progress).run()
    finally:
        pool.shutdown()
