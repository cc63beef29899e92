"""Create the async engine and the one session factory that the stores share.

`DATABASE_URL` is any SQLAlchemy async URL; the default is a SQLite file in the working directory.
SQLite needs per-connection settings that other databases have on by default, so they are applied
here on every new connection.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# NOTE: The test suite runs on SQLite by default. PostgreSQL is exercised only when
# SEGMENT_BOT_TEST_POSTGRES_URL is set and asyncpg is installed, because asyncpg is not a project
# dependency. Other databases (such as MySQL) are untested.

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./segment-bot.db"

# How long a SQLite connection waits for another writer's lock before failing with
# "database is locked", in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 5000


def create_engine(url: str | URL = DEFAULT_DATABASE_URL) -> AsyncEngine:
    """Create an async engine for `url`, configuring SQLite connections when the URL is SQLite.

    SQLite connections get foreign keys enforced (SQLite leaves them off by default, and the
    schema relies on `ON DELETE SET NULL`), a busy timeout, and write-ahead logging for file
    databases so readers do not block the writer.
    """
    parsed = make_url(url)
    engine = create_async_engine(parsed)
    if engine.dialect.name == "sqlite":
        use_wal = _is_sqlite_file(parsed)
        event.listen(
            engine.sync_engine,
            "connect",
            lambda dbapi_connection, _record: _configure_sqlite_connection(
                dbapi_connection, use_wal=use_wal
            ),
        )
    logger.info("Database engine created for %s", parsed.render_as_string(hide_password=True))
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a session factory whose sessions keep loaded values after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _is_sqlite_file(url: URL) -> bool:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    return not in_memory and url.query.get("mode") != "memory"


def _configure_sqlite_connection(dbapi_connection: Any, *, use_wal: bool) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if use_wal:
            # WAL mode is stored in the database file, so after the first connection this changes
            # nothing. It runs on every connection because a file created elsewhere may lack it.
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()
