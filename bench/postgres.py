"""A throwaway database on the local PostgreSQL (127.0.0.1:5432, trust auth) for a benchmark's store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN = "host=127.0.0.1 port=5432 dbname=postgres user=postgres"


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database named ``PREFIX_<random hex>``, yield its URL, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
