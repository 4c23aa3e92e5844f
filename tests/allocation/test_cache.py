"""The sensitivity cache on SQLite and, when the server is up, on a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from autopeft.space.sensitivity import Sensitivity
from autopeft.bundled import migrations_dir
from autopeft.store import Store
from autopeft.store.database import migrate
from autopeft.store.sensitivity import cached_sensitivity, save_sensitivity, sensitivity_key

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
PARAMS = {"batches": 16, "batch_size": 32, "seed": 0, "max_length": 64, "train_examples": 512}


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
