"""Fixtures for the storage tests: a migrated SQLite file per test and the stores built on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.stores import SqlAuditLog, SqlDeliveryLog, SqlSegmentStore, SqlSettingsStore
from segments.ports import DeliveryTarget, NewBroadcast, QualifyingCompany

TEAM_ID = "T0TEAM0001"
OTHER_TEAM_ID = "T0TEAM0002"
USER_ID = "U0USER0001"

NewBroadcastFactory = Callable[..., NewBroadcast]


# Optional: a PostgreSQL server URL such as postgresql+asyncpg://postgres@127.0.0.1:5432/postgres.
# When set (and asyncpg is installed), each test gets its own new database on that server
# instead of a SQLite file.
POSTGRES_URL_VARIABLE = "SEGMENT_BOT_TEST_POSTGRES_URL"


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    server_url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not server_url:
        yield f"sqlite+aiosqlite:///{tmp_path / 'segment-bot.db'}"
        return

    name = f"segment_bot_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@pytest.fixture
def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("checks SQLite-specific storage")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade_database(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
def segment_store(session_factory: async_sessionmaker[AsyncSession]) -> SqlSegmentStore:
    return SqlSegmentStore(session_factory)


@pytest.fixture
def delivery_log(session_factory: async_sessionmaker[AsyncSession]) -> SqlDeliveryLog:
    return SqlDeliveryLog(session_factory)


@pytest.fixture
def settings_store(session_factory: async_sessionmaker[AsyncSession]) -> SqlSettingsStore:
    return SqlSettingsStore(session_factory, default_channel_field="custom.Slack Channel")


@pytest.fixture
def audit_log(session_factory: async_sessionmaker[AsyncSession]) -> SqlAuditLog:
    return SqlAuditLog(session_factory)


def _make_target(channel_id: str, *company_names: str) -> DeliveryTarget:
    companies = tuple(
        QualifyingCompany(
            company_id=f"id-{name.lower()}",
            company_name=name,
            values={"renewalDate": "2025-03-01", "custom.Tier": "Gold"},
            variables={"company.name": name},
        )
        for name in company_names
    )
    return DeliveryTarget(
        channel_id=channel_id,
        channel_name=f"customer-{channel_id.lower()}",
        is_private=channel_id.endswith("P"),
        companies=companies,
    )


@pytest.fixture
def make_target() -> Callable[..., DeliveryTarget]:
    """Return a builder of a target channel qualified by the named companies."""
    return _make_target


@pytest.fixture
def new_broadcast() -> NewBroadcastFactory:
    """Return a builder of NewBroadcast values; keyword arguments override the defaults."""

    def build(
        *,
        targets: Sequence[DeliveryTarget] | None = None,
        segment_id: int | None = None,
        team_id: str = TEAM_ID,
    ) -> NewBroadcast:
        return NewBroadcast(
            team_id=team_id,
            segment_id=segment_id,
            segment_name="Renewals",
            rules_text="renewal date within 90 days",
            message_text="Your renewal is coming up.",
            message_blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "Hello"}}],
            sent_by=USER_ID,
            targets=(
                targets
                if targets is not None
                else (_make_target("C0000000001", "Acme"), _make_target("C0000000002", "Globex"))
            ),
            unmapped=(
                {"company_id": "id-initech", "reason": "no channel named #customer-initech"},
            ),
        )

    return build
