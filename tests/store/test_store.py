"""The trial store on SQLite and PostgreSQL: jobs, trials, values, Pareto queries, errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import inspect

from autopeft.bundled import migrations_dir
from autopeft.errors import StoreError
from autopeft.objectives import Objective, pareto_front
from autopeft.store import JobState, Store
from autopeft.store.database import newest_revision, stored_revision
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


def alembic_config(connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def test_the_newest_revision_is_alembics_head():
    from alembic.script import ScriptDirectory

    assert newest_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_a_store_one_revision_behind_is_upgraded_on_open(store_url):
    from alembic import command

    store = Store(store_url)
    with store.engine.begin() as connection:  # as the previous release left it
        command.downgrade(alembic_config(connection), "-1")
    store.close()
    store = Store(store_url)
    with store.engine.connect() as connection:
        assert stored_revision(connection) == newest_revision()
    assert "ix_trials_job_rung_cost" in {index["name"] for index in inspect(store.engine).get_indexes("trials")}
    store.close()


def test_opening_an_up_to_date_store_does_not_import_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    Store(url).close()
    probe = f"import sys; from autopeft.store import Store; Store({url!r}).close(); print('alembic' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


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


def _claim_when_released(url: str, job_id: int, driver: str, start, results) -> None:
    """One real driver process: wait for the start signal, then claim the job."""
    store = Store(url)
    start.wait(30)
    try:
        store.claim_job(job_id, driver, stale_after_s=60.0)
        results.put((driver, "claimed"))
    except StoreError as exc:
        results.put((driver, str(exc)))
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("state", [JobState.PENDING, JobState.INTERRUPTED])
def test_two_driver_processes_claiming_at_once_on_postgres_one_wins(postgres_url, state):
    import multiprocessing

    store = Store(postgres_url)
    context = multiprocessing.get_context("spawn")
    for _ in range(3):
        job_id = store.create_job({}, budget_trials=1)
        store.set_job_state(job_id, state)
        start, results = context.Event(), context.Queue()
        drivers = [context.Process(target=_claim_when_released, args=(postgres_url, job_id, f"host:{i}", start, results))
                   for i in range(2)]
        for process in drivers:
            process.start()
        time.sleep(1.0)  # both have connected and wait on the event
        start.set()
        outcomes = dict(results.get(timeout=60) for _ in drivers)
        for process in drivers:
            process.join(30)
        winners = [d for d, outcome in outcomes.items() if outcome == "claimed"]
        assert len(winners) == 1, outcomes
        loser = next(d for d in outcomes if d not in winners)
        assert outcomes[loser].startswith(f"job {job_id} is driven by {winners[0]}: its lease was renewed")
        assert (store.job(job_id).driver, store.job(job_id).state) == (winners[0], JobState.RUNNING)


def test_a_driver_whose_lease_was_taken_over_stops(store_url):
    from autopeft.errors import LeaseLost

    store = Store(store_url)
    job_id = store.create_job({}, budget_trials=1)
    store.claim_job(job_id, "host:1", stale_after_s=60.0)
    assert store.heartbeat_job(job_id, "host:1", run_seconds=12.5) == JobState.RUNNING
    assert store.job(job_id).run_seconds == 12.5  # a resumed driver's --max-time clock starts from here
    with pytest.raises(StoreError, match="is driven by host:1"):
        store.claim_job(job_id, "host:2", stale_after_s=60.0)
    store.claim_job(job_id, "host:2", stale_after_s=0.0)  # host:1 fell silent past the lease
    with pytest.raises(LeaseLost, match="now driven by host:2"):
        store.heartbeat_job(job_id, "host:1")
