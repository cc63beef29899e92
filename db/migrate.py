"""Apply the Alembic migrations that ship inside this package, without the `alembic` command.

The bot calls `upgrade_database` at start so a new or older database is brought to the current
schema before any store touches it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def alembic_config() -> Config:
    """Return the Alembic configuration of the packaged migrations, with absolute paths.

    The absolute `script_location` makes the migrations found whatever the working directory.
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade_database(engine_or_url: AsyncEngine | str | URL) -> None:
    """Apply every migration up to head. A database already at head is left unchanged.

    Given a URL, a temporary engine is created and disposed of afterwards. Given an engine, the
    caller keeps ownership of it.
    """
    if isinstance(engine_or_url, AsyncEngine):
        await _upgrade_with_engine(engine_or_url)
        return

    engine = create_engine(engine_or_url)
    try:
        await _upgrade_with_engine(engine)
    finally:
        await engine.dispose()


async def _upgrade_with_engine(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_to_head)


def _upgrade_to_head(connection: Connection) -> None:
    config = alembic_config()
    # env.py uses this connection instead of opening its own, so the upgrade runs inside the
    # transaction opened by `_upgrade_with_engine`.
    config.attributes["connection"] = connection
    logger.info("Applying database migrations up to head")
    command.upgrade(config, "head")
