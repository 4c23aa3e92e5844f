"""The sensitivity cache on SQLite and, when the server is up, on a throwaway PostgreSQL database;
and its key, which follows the task's data and columns, not just its path."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from autopeft.space.sensitivity import Sensitivity
from autopeft.bundled import migrations_dir
from autopeft.scheduler import JobSpec, TaskOptions, prepare
from autopeft.scheduler.sensitivities import provide_sensitivities
from autopeft.store import Store
from autopeft.store.database import migrate
from autopeft.store.sensitivity import (
    cached_sensitivity, cached_tensors, save_sensitivity, save_tensors, sensitivity_key,
)
from autopeft.trials import Fidelity

POSTGRES_SERVER = "host=127.0.0.1 port=5432 dbname=test"

SPT = Sensitivity(
    method="spt",
    matrix_scores={"0.q": 1.5e-4, "0.v": 2.25e-3},
    tau_grid=(1e-5, 0.2),
    sensitive_counts={"0.q": (0, 7), "0.v": (3, 40)},
    total_weights=2048,
    seconds=12.5,
)
IST = Sensitivity(method="ist", layer_importance=(0.031, 0.002), seconds=40.0)
PARAMS = {"batches": 16, "batch_size": 32, "seed": 0, "max_length": 64, "train_examples": 512,
          "train_digest": "ab" * 32, "text_columns": None, "label_column": None}


@pytest.fixture(scope="module")
def postgres_url():
    """An empty database on the machine's PostgreSQL for this module, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        server = psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("AUTOPEFT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    name = f"autopeft_alloc_{uuid.uuid4().hex[:10]}"
    server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        server.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    url = str(tmp_path / "store.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = Store(url)
    yield opened
    opened.close()


def test_scores_come_back_exactly_for_the_same_settings_only(store):
    where = {"model": "minilm", "task": "glue/SST-2"}
    assert cached_sensitivity(store, **where, method="spt", params=PARAMS) is None

    save_sensitivity(store, SPT, **where, params=PARAMS)
    save_sensitivity(store, IST, **where, params=PARAMS)

    assert cached_sensitivity(store, **where, method="spt", params=PARAMS) == SPT
    assert cached_sensitivity(store, **where, method="ist", params=PARAMS) == IST
    assert cached_sensitivity(store, **where, method="spt", params={**PARAMS, "seed": 1}) is None
    assert cached_sensitivity(store, model="smollm2", task="glue/SST-2", method="spt", params=PARAMS) is None


def test_tensors_come_back_byte_for_byte_beside_the_scores(store):
    """EVA's vectors are one safetensors blob (bytea on PostgreSQL), kept under the same kind of key."""
    where = {"model": "minilm", "task": "glue/SST-2"}
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
    key = save_tensors(store, blob, 10.5, **where, method="eva", params=PARAMS)
    assert cached_tensors(store, key) == (blob, 10.5)
    save_sensitivity(store, SPT, **where, params=PARAMS)
    assert cached_tensors(store, sensitivity_key(**where, method="spt", params=PARAMS)) is None


def test_saving_the_same_settings_twice_keeps_the_first_record(store):
    where = {"model": "minilm", "task": "glue/RTE", "params": PARAMS}
    save_sensitivity(store, SPT, **where)
    save_sensitivity(store, Sensitivity.from_json({**SPT.to_json(), "seconds": 99.0}), **where)
    assert cached_sensitivity(store, **where, method="spt").seconds == 12.5


def test_the_key_ignores_the_order_of_params():
    reordered = dict(reversed(list(PARAMS.items())))
    assert sensitivity_key(model="m", task="t", method="spt", params=PARAMS) == sensitivity_key(
        model="m", task="t", method="spt", params=reordered
    )


def test_migration_0003_adds_and_removes_only_the_sensitivity_table(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    assert "sensitivities" in inspect(engine).get_table_names()

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    tables = set(inspect(engine).get_table_names())
    assert "sensitivities" not in tables and {"jobs", "trials", "trial_values", "events"} <= tables

    migrate(engine)
    assert "sensitivities" in inspect(engine).get_table_names()


def test_a_key_without_the_data_is_refused():
    without_data = {k: v for k, v in PARAMS.items() if k != "train_digest"}
    with pytest.raises(ValueError, match="lack train_digest"):
        sensitivity_key(model="m", task="t", method="spt", params=without_data)


SPT_ONLY_SPACE = """
name: tiny-spt
budget:
  fraction: {low: 0.001, high: 0.02}
  rules: [spt]
  sharpness: {low: 0.0, high: 2.0}
  roles: [q, v]
  sensitivity: {batches: 1, batch_size: 4}
"""


def _write_table(path: Path, flip_labels: bool = False) -> None:
    rows = ["text,alt,label"]
    for i in range(60):
        rows.append(f"review {i} was {'good' if i % 2 else 'bad'},note {i} {'yes' if i % 3 else 'no'},{(i + flip_labels) % 2}")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_edited_data_or_other_columns_are_measured_again(tmp_path):
    """A cached score is reused for the same data only: the same path with edited labels, or read
    through other columns, is measured afresh (the settings are the same every time)."""
    table, space = tmp_path / "reviews.csv", tmp_path / "space.yaml"
    space.write_text(SPT_ONLY_SPACE)
    store = Store(str(tmp_path / "store.db"))
    fidelity = Fidelity(train_examples=16, steps=2, batch_size=4, max_length=16)

    def measured(flip_labels: bool = False, options: TaskOptions = TaskOptions()) -> list[str]:
        _write_table(table, flip_labels)
        spec = JobSpec(model="minilm", task=str(table), space=str(space), trials=2, optimizer="random",
                       fidelity=fidelity, task_options=options)
        methods: list[str] = []
        provide_sensitivities(prepare(spec), store, methods.append)
        return methods

    assert measured() == ["spt"]
    assert measured() == []  # same data, same settings: cached
    assert measured(flip_labels=True) == ["spt"]
    assert measured(options=TaskOptions(text_columns=("alt",), label_column="label")) == ["spt"]
    store.close()


def test_a_space_without_a_budget_measures_its_ist_schedule_and_rankings_with_the_default_settings():
    """The shipped sparse space needs IST scores (its IST schedule) and two entry rankings, but has
    no budget block to hold measurement settings: it prepares, and its keys use the defaults."""
    from autopeft.scheduler.sensitivities import measurement_params, ranking_params
    from autopeft.space.schema import SensitivitySettings

    prepared = prepare(JobSpec(model="minilm", task="demo", space="sparse", trials=2, optimizer="random"))
    defaults = SensitivitySettings()
    assert prepared.space.needed_sensitivities == ("ist",)
    assert prepared.space.measured_masks == {"sensitivity": 16, "lottery": 16}
    assert measurement_params(prepared, "ist")["steps"] == defaults.ist_steps
    assert ranking_params(prepared, "sensitivity", 16)["batches"] == defaults.batches


SPT_SPARSE_SPACE = SPT_ONLY_SPACE.replace("rules: [spt]", "rules: [spt_sparse]")


@pytest.mark.slow
def test_spt_sparse_measures_its_scores_and_entry_ranking_in_one_gradient_pass(tmp_path, monkeypatch):
    """``spt_sparse`` needs SPT's matrix scores and its per-entry ranking, both sums of the same
    squared gradients over the same batches: the driver runs those batches backward once."""
    import autopeft.allocation.spt as spt

    passes = []
    measure_once = spt.squared_gradients
    monkeypatch.setattr(spt, "squared_gradients", lambda *args: passes.append(1) or measure_once(*args))
    table, space = tmp_path / "reviews.csv", tmp_path / "space.yaml"
    _write_table(table)
    space.write_text(SPT_SPARSE_SPACE)
    spec = JobSpec(model="minilm", task=str(table), space=str(space), trials=2, optimizer="random",
                   fidelity=Fidelity(train_examples=16, steps=2, batch_size=4, max_length=16))
    store = Store(str(tmp_path / "store.db"))
    methods: list[str] = []
    prepared = provide_sensitivities(prepare(spec), store, methods.append)
    assert methods == ["spt", "sparse_sensitivity"] and len(passes) == 1
    assert prepared.rankings["sensitivity"].entries and prepared.space.sensitivities["spt"].matrix_scores
    assert provide_sensitivities(prepare(spec), store, methods.append) and len(methods) == 2  # cached
    store.close()
