"""Validating a finished job: its front retrained at a higher fidelity and scored on dev.

A proxy's ranking is only as good as its correlation with real training. ``validate`` takes the
search front's best structures (and any trials the user names), trains each once more on the job's
workers at a higher fidelity (by default 4x the proxy's steps and training examples) and scores it
on the task's dev split, which the search never read. The runs are stored as ``validation`` trials
linked to the trial they validate, so ``status`` and the service report them next to the search;
they never enter the search's front, hypervolume or budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from autopeft.errors import AutopeftError
from autopeft.objectives import Objective, job_objectives, observed
from autopeft.reports import reported_front, validation_json
from autopeft.scheduler.scheduler import trial_seed
from autopeft.scheduler.search import worker_pool
from autopeft.scheduler.sensitivities import provide_sensitivities
from autopeft.scheduler.spec import prepare_stored
from autopeft.store import FINISHED_JOB_STATES, Store, TrialRecord, TrialRole
from autopeft.trials import Fidelity, TrialRequest

FIDELITY_FACTOR = 4
"""Default validation fidelity: this many times the proxy's steps and training examples."""


def validation_fidelity(proxy: Fidelity, steps: int | None = None, train_examples: int | None = None) -> Fidelity:
    """The proxy's fidelity with more steps and examples, scoring the whole dev split."""
    return replace(
        proxy,
        steps=steps or proxy.steps * FIDELITY_FACTOR,
        train_examples=train_examples or proxy.train_examples * FIDELITY_FACTOR,
        eval_examples=None,
    )


def chosen_trials(
    trials: Sequence[TrialRecord], objectives: Sequence[Objective], top: int | None, numbers: Sequence[int] = ()
) -> list[TrialRecord]:
    """The best ``top`` rows of the reported front (all with None), then the named trials' rows."""
    front = reported_front(trials, objectives)
    chosen = front if top is None else front[:top]
    rows = observed(trials, objectives)
    for number in numbers:
        row = next((r for r in rows if number in (r.replicates or (r.number,))), None)
        if row is None:
            raise AutopeftError(f"--trial {number}: no completed search trial with that number in this job")
        if row not in chosen:
            chosen.append(row)
    if not chosen:
        raise AutopeftError("nothing to validate: the front is empty or --top is 0, and no --trial was given")
    return chosen


def check_validation(store: Store, job_id: int, top: int | None, numbers: Sequence[int] = ()) -> list[TrialRecord]:
    """The rows a validation of job ``job_id`` would retrain; AutopeftError if it cannot run."""
    job = store.job(job_id)
    if job.state not in FINISHED_JOB_STATES:
        raise AutopeftError(f"job {job_id} is {job.state}; validate it once it has finished")
    if top is not None and top < 0:
        raise AutopeftError(f"--top must be at least 0, got {top}")
    return chosen_trials(store.trials(job_id), job_objectives(job), top, numbers)


def validate_job(
    store: Store,
    job_id: int,
    *,
    top: int | None = 3,
    numbers: Sequence[int] = (),
    steps: int | None = None,
    train_examples: int | None = None,
    ray_address: str | None = None,
    on_result: Callable[[TrialRecord], None] | None = None,
) -> dict:
    """Retrain and score the chosen structures of a finished job; returns :func:`validation_json`."""
    chosen = check_validation(store, job_id, top, numbers)
    job = store.job(job_id)
    objectives = job_objectives(job)
    prepared = provide_sensitivities(prepare_stored(job.spec), store)
    fidelity = validation_fidelity(prepared.spec.fidelity, steps, train_examples)
    if fidelity.steps < 1 or fidelity.train_examples < 1:
        raise AutopeftError(f"--steps and --train-examples must be at least 1, got {steps} and {train_examples}")
    pool = worker_pool(prepared, store, ray_address)
    try:
        queue = [_validation_trial(store, job_id, row, fidelity, prepared.spec.seed) for row in chosen]
        while queue or pool.busy:
            for slot in pool.idle:
                if not queue:
                    break
                record = queue.pop(0)
                store.mark_running(record.id, slot.name)
                pool.submit(slot, TrialRequest(record.id, record.number, record.structure, record.seed, fidelity,
                                               record.rung, split="dev"))
            for _, outcome in pool.wait(0.5):
                finished = store.record_outcome(outcome)
                if on_result is not None:
                    on_result(finished)
    finally:
        pool.shutdown()
    return validation_json(store.trials(job_id), objectives)


def _validation_trial(store: Store, job_id: int, row: TrialRecord, fidelity: Fidelity, job_seed: int) -> TrialRecord:
    """A pending validation run of ``row``, seeded apart from every search run of the job."""
    return store.add_trial(
        job_id, config=row.config, structure=row.structure, trainable_params=row.trainable_params,
        seed=trial_seed(job_seed + 1, row.number), fidelity=fidelity.to_json(), rung=row.rung, split="dev",
        role=TrialRole.VALIDATION, origin_id=row.id,
    )  # fmt: skip
