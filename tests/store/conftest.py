"""Store fixtures: a fresh SQLite file, and a throwaway PostgreSQL database when the server is up."""

from __future__ import annotations

import os
import uuid

import pytest

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 dbname=postgres"


def _postgres_admin():
    import psycopg

    return psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def postgres_url():
    """A new empty database on the machine's PostgreSQL, dropped afterwards."""
    import psycopg

    try:
        admin = _postgres_admin()
    except psycopg.OperationalError as exc:
        if os.environ.get("AUTOPEFT_REQUIRE_POSTGRES") == "1":  # CI must test the store on PostgreSQL
            pytest.fail(f"PostgreSQL required but not reachable at 127.0.0.1:5432: {exc}")
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    name = f"autopeft_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")
