"""Fronts and status read from the store's index (autopeft.store.fronts) equal those computed from
every trial, and migration 0006 brings an existing store to the indexed schema."""

from __future__ import annotations

import importlib.util
import random

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, inspect, select

from autopeft import reports
from autopeft.bundled import migrations_dir
from autopeft.objectives import job_objectives, observed
from autopeft.store import Store, TrialRole
from autopeft.store.database import migrate
from autopeft.store.models import Trial, structure_digest
from autopeft.trials import TrialOutcome, TrialState

ACCURACY = [{"name": "accuracy", "goal": "max"}, {"name": "trainable_params", "goal": "min"}]
LOSS = [{"name": "loss", "goal": "min"}, {"name": "peak_memory_bytes", "goal": "min"}]
THREE = [*ACCURACY, {"name": "step_time_s", "goal": "min"}]


def random_job(store: Store, objectives: list[dict], seed: int, n: int = 160) -> int:
    """A job written through the store's API as a search writes one: structures drawn from a small
    pool (so that some run twice and pool), values and costs with ties, failures, trials without
    the metric, practitioner defaults, two rungs, and validation runs of a few trials."""
    rng = random.Random(seed)
    job = store.create_job({"model": "m", "task": "t", "objectives": objectives}, budget_trials=n)
    metric = objectives[0]["name"]
    pool = [{"lora": {"ranks": {f"{i}.q": rng.choice([1, 2, 4, 8])}}, "id": i} for i in range(n // 2)]
    added = []
    for number in range(n):
        structure = rng.choice(pool)
        role = TrialRole.DEFAULT if number < 3 else rng.choice([TrialRole.EXPLORE] * 4 + [TrialRole.REPLICATE])
        params = rng.randrange(1, 20) * 100  # drawn per run: pooling keeps the first run's count
        trial = store.add_trial(
            job, config={"i": structure["id"]}, structure=structure, trainable_params=params, seed=number,
            fidelity={"steps": 10}, rung=int(rng.random() < 0.15), role=role,
            label=f"default {number}" if role == TrialRole.DEFAULT else None,
        )  # fmt: skip
        added.append(trial)
        if rng.random() < 0.05:
            continue  # still pending
        if rng.random() < 0.08:
            store.record_outcome(TrialOutcome(trial.id, TrialState.FAILED, "w", error=f"nan at step {number}"))
            continue
        metrics = {"f1": rng.random(), "predicted_classes": rng.choice([1.0, 2.0])}
        if rng.random() > 0.03:
            metrics[metric] = rng.randrange(40) / 40  # ties within and across costs
        store.record_outcome(TrialOutcome(
            trial.id, TrialState.COMPLETED, "w", metrics=metrics, wall_time_s=rng.random(),
            step_time_s=rng.choice([None, 0.1, 0.2]), peak_memory_bytes=rng.choice([None, 1000, 2000, 3000]),
        ))  # fmt: skip
    for origin in rng.sample(added, 5):  # validation runs, scored on dev
        run = store.add_trial(job, config=origin.config, structure=origin.structure, trainable_params=origin.trainable_params,
                              seed=1, fidelity={"steps": 40}, rung=origin.rung, split="dev", role=TrialRole.VALIDATION,
                              origin_id=origin.id)  # fmt: skip
        store.record_outcome(TrialOutcome(run.id, TrialState.COMPLETED, "w", metrics={metric: rng.random()},
                                          peak_memory_bytes=1000, step_time_s=0.1))  # fmt: skip
    for done in range(1, 4):
        store.record_hypervolume(job, 0, done, done / 10, {"accuracy": 0.5, "trainable_params": 1e4})
    return job


def assert_same_views(store: Store, job_id: int) -> None:
    job = store.job(job_id)
    objectives = job_objectives(job)
    trials = store.trials(job_id)
    for rung in (None, 0, 1, 2):
        everything = [reports.trial_json(t, objectives) for t in reports.reported_front(trials, objectives, rung)]
        assert [reports.trial_json(t, objectives) for t in reports.stored_front(store, job, rung)] == everything
    expected = reports.status_json(job, trials, objectives, store.hypervolumes(job_id))
    assert reports.stored_status(store, job) == expected
    assert reports.stored_status(store, job, history=False) == {
        **expected, "hypervolume_history": expected["hypervolume_history"][-1:]
    }
    assert reports.stored_proxy_warning(store, job) == reports.proxy_warning(trials, objectives)
    everyone = [t for t in observed(trials, objectives) if t.role == TrialRole.DEFAULT]
    assert reports.stored_defaults(store, job) == everyone


@pytest.mark.parametrize("seed", [0, 1])
def test_the_front_and_status_read_from_the_index_equal_those_of_every_trial(store_url, seed):
    store = Store(store_url)
    job = random_job(store, ACCURACY, seed)
    assert store.scan(job, job_objectives(store.job(job)), 0) is not None  # the indexed path, not the fallback
    assert any(t.n > 1 for t in reports.stored_front(store, store.job(job), 0))  # pooled runs on the front
    assert_same_views(store, job)


def test_small_in_lists_and_batches_give_the_same_views(tmp_path, monkeypatch):
    """Lookups by id or digest go in chunks, and the single-class check reads a first batch."""
    monkeypatch.setattr("autopeft.store.store._IN_CHUNK", 3)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job = random_job(store, ACCURACY, seed=6, n=80)
    assert_same_views(store, job)


@pytest.mark.parametrize("objectives", [LOSS, THREE], ids=["minimised metric and memory", "three objectives"])
def test_other_objectives_give_the_same_views_too(tmp_path, objectives):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job = random_job(store, objectives, seed=3)
    assert (store.scan(job, job_objectives(store.job(job)), 0) is None) == (len(objectives) == 3)
    assert_same_views(store, job)


@pytest.mark.parametrize("case", ["one class", "same score", "within the noise"])
def test_proxy_warnings_read_from_the_index_equal_those_of_every_trial(tmp_path, monkeypatch, case):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job = store.create_job({"objectives": ACCURACY}, budget_trials=20)
    for number in range(20):
        twice = number % 5 == 0  # every fifth structure runs twice: a pooled record with a seed spread
        for run in range(2 if twice else 1):
            trial = store.add_trial(job, config={}, structure={"s": number}, trainable_params=100 + number, seed=run,
                                    fidelity={}, role=TrialRole.REPLICATE if run else TrialRole.EXPLORE)
            accuracy = {"one class": 0.5, "same score": 0.7, "within the noise": 0.7 + 0.001 * number + 0.05 * run}[case]
            classes = 1.0 if case == "one class" or number < 10 else 2.0  # the first ten predict one class
            store.record_outcome(TrialOutcome(trial.id, TrialState.COMPLETED, "w",
                                              metrics={"accuracy": accuracy, "predicted_classes": classes}))
    trials, objectives = store.trials(job), job_objectives(store.job(job))
    warning = reports.stored_proxy_warning(store, store.job(job))
    assert warning is not None and warning == reports.proxy_warning(trials, objectives)
    assert_same_views(store, job)
    monkeypatch.setattr("autopeft.store.store._IN_CHUNK", 3)  # a first batch of one-class trials, then others
    assert reports.stored_proxy_warning(store, store.job(job)) == warning


def test_twins_are_marked_when_the_second_run_of_a_structure_is_added(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job = store.create_job({"objectives": ACCURACY}, budget_trials=5)
    first = store.add_trial(job, config={}, structure={"a": 1, "b": 2}, trainable_params=1, seed=0, fidelity={})
    other_rung = store.add_trial(job, config={}, structure={"a": 1, "b": 2}, trainable_params=1, seed=0, fidelity={},
                                 rung=1)
    validation = store.add_trial(job, config={}, structure={"a": 1, "b": 2}, trainable_params=1, seed=0, fidelity={},
                                 role=TrialRole.VALIDATION)
    with store.engine.connect() as connection:
        assert not any(connection.execute(select(Trial.twinned)).scalars())
    second = store.add_trial(job, config={}, structure={"b": 2, "a": 1}, trainable_params=1, seed=1, fidelity={})
    with store.engine.connect() as connection:
        twinned = dict(connection.execute(select(Trial.id, Trial.twinned)).all())
    assert twinned == {first.id: True, other_rung.id: False, validation.id: False, second.id: True}


def _alembic():
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def test_migration_0006_brings_an_existing_store_to_the_indexed_schema(tmp_path):
    """A store written at revision 0005 (trials without digests) upgrades; its views stay the same."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    job = random_job(store, ACCURACY, seed=4, n=120)
    before = {t.id: t for t in store.trials(job)}
    objectives = job_objectives(store.job(job))
    expected_front = [reports.trial_json(t, objectives) for t in reports.reported_front(list(before.values()), objectives)]
    with store.engine.connect() as connection:
        twinned = dict(connection.execute(select(Trial.id, Trial.twinned)).all())
    store.close()

    engine = create_engine(url)
    config = _alembic()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    columns = {c["name"] for c in inspect(engine).get_columns("trials")}
    assert not {"structure_digest", "metric_value", "twinned"} & columns
    migrate(engine)  # what opening the store does

    columns = {c["name"] for c in inspect(engine).get_columns("trials")}
    assert {"structure_digest", "metric_value", "twinned"} <= columns
    indexes = {i["name"] for i in inspect(engine).get_indexes("trials")}
    assert {"ix_trials_job_rung_cost", "ix_trials_job_digest", "ix_trials_job_role"} <= indexes
    with engine.connect() as connection:
        rows = connection.execute(select(Trial.id, Trial.structure_digest, Trial.metric_value, Trial.twinned)).all()
    for trial_id, digest, metric, twin in rows:
        assert digest == structure_digest(before[trial_id].structure)
        assert metric == before[trial_id].values.get("accuracy")
        assert twin == twinned[trial_id]
    store = Store(url)
    assert store.scan(job, objectives, 0) is not None
    assert [reports.trial_json(t, objectives) for t in reports.stored_front(store, store.job(job))] == expected_front
    assert_same_views(store, job)


def test_the_migration_digests_structures_as_the_store_does():
    path = next(migrations_dir().glob("versions/0006_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for structure in ({}, {"lora": {"ranks": {"0.q": 8, "1.v": 4}, "variant": "dora"}}, {"b": [1, 2.5], "a": None}, {1: "x"}):
        assert migration.structure_digest(structure) == structure_digest(structure)


def test_trials_without_a_digest_fall_back_to_reading_every_trial(tmp_path):
    """Rows written by an autopeft from before the digest (an older process on a migrated store)."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    job = random_job(store, ACCURACY, seed=5, n=60)
    with store.engine.begin() as connection:
        connection.execute(insert(Trial).values(
            job_id=job, number=1000, state=TrialState.COMPLETED, config={}, structure={"old": 1}, trainable_params=1,
            seed=0, fidelity={}, structure_digest=None,
        ))  # fmt: skip
    assert store.scan(job, job_objectives(store.job(job)), 0) is None
    assert_same_views(store, job)


@pytest.mark.parametrize("cost", ["trainable_params", "peak_memory_bytes", "step_time_s", "wall_time_s"])
def test_twinned_runs_pool_as_the_objectives_pool_them(cost):
    """The light pooling of autopeft.store.fronts gives the two objectives autopeft.objectives.pooled gives."""
    from autopeft.objectives import Objective
    from autopeft.store.fronts import pooled_objectives
    from autopeft.store.store import Measurement

    rng = random.Random(cost)
    metric, spent = Objective("accuracy", "max"), Objective(cost, "min")
    for _ in range(200):
        runs = [
            Measurement(id=i, number=i, state=TrialState.COMPLETED, role=TrialRole.EXPLORE, rung=0,
                        structure={"digest": "d"}, values={} if rng.random() < 0.1 else {"accuracy": rng.random()},
                        trainable_params=rng.randrange(1, 10**6), step_time_s=rng.choice([None, rng.random()]),
                        wall_time_s=rng.choice([None, rng.random() * 100]),
                        peak_memory_bytes=rng.choice([None, rng.randrange(10**9)]))
            for i in range(rng.randrange(1, 5))
        ]  # fmt: skip
        light = pooled_objectives(runs, metric, spent)
        pooled = observed(runs, [metric, spent])
        assert (light is None) == (not pooled)
        if light is not None:
            assert (light[0], float(light[1])) == (pooled[0].value("accuracy"), pooled[0].value(cost))


def test_the_staircase_says_whether_any_point_dominates():
    from autopeft.store.fronts import _Staircase

    rng = random.Random(7)
    for _ in range(2000):  # small integers: many ties on either axis
        points = [(rng.randrange(5), rng.randrange(5)) for _ in range(rng.randrange(6))]
        query = (rng.randrange(5), rng.randrange(5))
        dominated = any(a >= query[0] and c >= query[1] and (a > query[0] or c > query[1]) for a, c in points)
        assert _Staircase(points)(query) == dominated
