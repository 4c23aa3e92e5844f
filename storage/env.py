"""Alembic environment of the autopeft trial store.

autopeft runs migrations itself when it opens a store (passing its connection in
``config.attributes["connection"]``). To run Alembic by hand::

    AUTOPEFT_STORAGE=postgresql+psycopg://host/db alembic -c storage/alembic.ini upgrade head
"""

import os

from alembic import context
from sqlalchemy import create_engine

from autopeft.store.database import VERSION_TABLE
from autopeft.store.models import Base

target_metadata = Base.metadata


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = os.environ.get("AUTOPEFT_STORAGE") or context.config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as own_connection:
        run_migrations(own_connection)
