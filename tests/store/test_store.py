"""The trial store on SQLite and PostgreSQL: jobs, trials, values, Pareto queries, errors."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from autopeft.errors import StoreError
from autopeft.objectives import Objective, pareto_front
from autopeft.store import JobState, Store
from autopeft.trials import TrialOutcome, TrialState

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]


def add(store, job_id, params):
    """A pending trial of a structure of its own (trials of one structure are pooled as replicates)."""
    tag = len(store.trials(job_id))
    return store.add_trial(
        job_id, config={"lora.rank": 8}, structure={"lora": {}, "tag": tag}, trainable_params=params, seed=1,
        fidelity={"steps": 10},
    )


def finish(store, trial, accuracy=None, error=None):
    state = TrialState.FAILED if error else TrialState.COMPLETED
    metrics = {} if accuracy is None else {"accuracy": accuracy, "f1": accuracy / 2}
    return store.record_outcome(
        TrialOutcome(trial.id, state, "w1", metrics=metrics, wall_time_s=1.5, step_time_s=0.1,
                     peak_memory_bytes=123, error=error)
    )


def test_migrates_an_empty_database_and_reopens_idempotently(store_url):
    store = Store(store_url)
    tables = set(inspect(store.engine).get_table_names())
    assert {"jobs", "trials", "trial_values", "events", "autopeft_alembic_version"} <= tables
    assert "alembic_version" not in tables  # Optuna's default version table stays free
    store.close()
    Store(store_url).close()


def test_job_and_trial_lifecycle(store_url):
    store = Store(store_url)
    job_id = store.create_job({"model": "minilm", "objectives": [o.to_json() for o in OBJECTIVES]}, budget_trials=3)
    assert store.job(job_id).state == JobState.PENDING
    store.set_job_state(job_id, JobState.RUNNING)
    first, second, third = (add(store, job_id, p) for p in (1000, 500, 2000))
    assert [t.number for t in (first, second, third)] == [0, 1, 2]
    store.mark_running(first.id, "w1")
    assert store.trial(job_id, 0).state == TrialState.RUNNING
    finish(store, first, 0.8)
    finish(store, second, 0.7)
    failed = finish(store, third, error="non-finite loss (nan) at step 3")
    assert failed.error == "non-finite loss (nan) at step 3" and failed.values == {}
    done = store.trial(job_id, 0)
    assert done.values == {"accuracy": 0.8, "f1": 0.4}
    assert done.value("trainable_params") == 1000.0 and done.value("peak_memory_bytes") == 123.0
    assert done.created_at.tzinfo is not None
    store.set_job_state(job_id, JobState.COMPLETED)
    job = store.job(job_id)
    assert job.trials_done == 3 and job.trial_counts == {"completed": 2, "failed": 1}
    assert job.finished_at is not None
    assert any(kind == "trial_failed" for _, kind, _ in store.events(job_id))


def test_pareto_front_from_the_store(store_url):
    store = Store(store_url)
    job_id = store.create_job({}, budget_trials=4)
    for params, accuracy in [(1000, 0.80), (500, 0.70), (2000, 0.75), (500, 0.72)]:
        finish(store, add(store, job_id, params), accuracy)
    front = pareto_front(store.trials(job_id), OBJECTIVES)
    assert [(t.trainable_params, t.values["accuracy"]) for t in front] == [(1000, 0.80), (500, 0.72)]


def test_two_jobs_never_see_each_other(store_url):
    store = Store(store_url)
    a, b = store.create_job({}, budget_trials=1), store.create_job({}, budget_trials=1)
    add(store, a, 10)
    assert store.trials(b) == [] and len(store.trials(a)) == 1
    assert add(store, b, 10).number == 0


def test_missing_job_and_trial_are_one_line_errors(store_url):
    store = Store(store_url)
    with pytest.raises(StoreError, match=r"^no job 42 in the store at "):
        store.job(42)
    job_id = store.create_job({}, budget_trials=1)
    with pytest.raises(StoreError, match=rf"^job {job_id} has no trial 3$"):
        store.trial(job_id, 3)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://127.0.0.1:5499/none", r"^cannot reach the store at postgresql\+psycopg://127.0.0.1:5499/none: "),
        ("/no/such/folder/store.db", r"^cannot open the store at sqlite:////no/such/folder/store.db: folder /no/such/folder does not exist$"),
        ("mysql+nodriver://x/y", r"^cannot use storage URL"),
    ],
)
def test_unreachable_stores_fail_with_one_line(url, expected):
    with pytest.raises(StoreError, match=expected) as error:
        Store(url)
    assert "\n" not in str(error.value)


def test_passwords_never_appear_in_messages():
    with pytest.raises(StoreError) as error:
        Store("postgresql://user:secret@127.0.0.1:5499/none")
    assert "secret" not in str(error.value)


def test_the_first_outcome_of_an_attempt_wins(store_url):
    """The worker stores its outcome first; the driver's copy, or a later 'cancelled', changes nothing."""
    store = Store(store_url)
    job_id = store.create_job({}, budget_trials=1)
    trial = add(store, job_id, 100)
    finish(store, trial, 0.8)
    again = store.record_outcome(TrialOutcome(trial.id, TrialState.FAILED, "driver", error="cancelled"))
    assert (again.state, again.values["accuracy"], again.worker) == (TrialState.COMPLETED, 0.8, "w1")
    retried = store.retry_trial(trial.id, "worker lost")  # a new attempt records its own outcome
    assert retried.state == TrialState.PENDING
    assert finish(store, retried, 0.7).values["accuracy"] == 0.7


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.INTERRUPTED, JobState.RUNNING])
def test_failed_and_interrupted_jobs_can_be_claimed_again(store_url, state):
    store = Store(store_url)
    job_id = store.create_job({}, budget_trials=1)
    store.set_job_state(job_id, state, "driver went away")
    store.claim_job(job_id, "host:1", stale_after_s=0.0)
    assert store.job(job_id).driver == "host:1"


@pytest.mark.parametrize("state", [JobState.COMPLETED, JobState.CANCELLED])
def test_completed_and_user_cancelled_jobs_are_final(store_url, state):
    store = Store(store_url)
    job_id = store.create_job({}, budget_trials=1)
    store.set_job_state(job_id, state)
    with pytest.raises(StoreError, match=f"job {job_id} is {state}; nothing to resume"):
        store.claim_job(job_id, "host:1", stale_after_s=0.0)
