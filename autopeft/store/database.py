"""Opening a store: URL defaults, engine settings per backend, migrations to the latest schema."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from autopeft.bundled import migrations_dir
from autopeft.errors import StoreError

DEFAULT_URL = "sqlite:///autopeft.db"
"""A file in the working directory, as the CLI's default ``--storage``."""

VERSION_TABLE = "autopeft_alembic_version"
"""Where Alembic records a store's schema revision (named so it cannot clash with a user's own)."""


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and plain file paths; use psycopg 3 for PostgreSQL.

    SQLite paths become absolute, so that Ray workers started elsewhere open the same file.
    """
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writing driver
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` that has been reached and migrated; StoreError when unreachable."""
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"malformed storage URL: {url}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise StoreError(f"cannot open the store at {url}: folder {folder} does not exist")
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    try:
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use storage URL {display_url(url)}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest revision (a no-op when it is already there).

    A store already at the newest revision is recognised from its version row alone, without
    importing Alembic: that import is about 0.6 s of every CLI command and worker start.
    """
    try:
        with engine.connect() as connection:
            if stored_revision(connection) == newest_revision():
                return
        _upgrade(engine)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        raise StoreError(f"cannot reach the store at {display_url(str(engine.url))}: {reason}") from exc


def stored_revision(connection: Connection) -> str | None:
    """The schema revision the store records, or None before its first migration."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def newest_revision() -> str:
    """The newest migration's revision: each file in ``versions/`` is named ``<revision>_<what>.py``."""
    return max(path.name.split("_", 1)[0] for path in (migrations_dir() / "versions").glob("*_*.py"))


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
