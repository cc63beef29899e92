"""Alembic environment for segment-bot, used by `db.migrate` and by the `alembic` command.

`db.migrate.upgrade_database` passes an open connection in `config.attributes["connection"]`.
Without one (the `alembic -c db/alembic.ini ...` command), this script opens its own async engine
from the `DATABASE_URL` environment variable, or from `sqlalchemy.url` in alembic.ini.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from db.engine import create_engine
from db.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata

_external_connection: Connection | None = config.attributes.get("connection")

# Only the command configures logging from alembic.ini: inside the bot, the bot's own logging
# configuration must stay as it is.
if _external_connection is None and config.config_file_name is not None:
    fileConfig(config.config_file_name)


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("No database URL: set DATABASE_URL or sqlalchemy.url in alembic.ini.")
    return url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Generated revisions describe plain portable types, so they never import from db.models.
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot alter most constraints in place, so later revisions copy the table.
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """Write the migration SQL to standard output (`alembic upgrade head --sql`)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    if _external_connection is not None:
        _configure_and_run(_external_connection)
    else:
        asyncio.run(_run_with_own_engine())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
