"""SqlSettingsStore and SqlAuditLog: defaults, audited changes, newest-first listing, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.models import Workspace, utc_now
from db.records import AuditAction
from db.stores import SqlAuditLog, SqlSettingsStore

TEAM_ID = "T0TEAM0001"
OTHER_TEAM_ID = "T0TEAM0002"
USER_ID = "U0USER0001"
MANAGER_IDS = ["U0MANAGER1", "U0MANAGER2"]


async def test_settings_default_when_never_saved(settings_store: SqlSettingsStore) -> None:
    settings = await settings_store.get(TEAM_ID)

    assert settings.team_id == TEAM_ID
    assert settings.channel_field == "custom.Slack Channel"
    assert settings.channel_template == "customer-{slug}"
    assert settings.timezone == "UTC"
    assert settings.managers == ()
    assert settings.updated_by is None
    assert settings.updated_at is None


async def test_settings_update_stores_values_and_updater(
    settings_store: SqlSettingsStore,
) -> None:
    before = utc_now()

    returned = await settings_store.update(
        TEAM_ID,
        channel_field=" custom.CS Channel ",
        channel_template="cs-{slug}",
        timezone="Europe/Berlin",
        managers=[" U0MANAGER1", "U0MANAGER2", "U0MANAGER1"],
        user_id=USER_ID,
    )

    stored = await settings_store.get(TEAM_ID)
    assert stored == returned
    assert stored.channel_field == "custom.CS Channel"
    assert stored.channel_template == "cs-{slug}"
    assert stored.timezone == "Europe/Berlin"
    assert stored.managers == tuple(MANAGER_IDS)
    assert stored.updated_by == USER_ID
    assert stored.updated_at is not None
    assert stored.updated_at.tzinfo is UTC
    assert stored.updated_at >= before
    assert (await settings_store.get(OTHER_TEAM_ID)).updated_by is None


async def test_settings_update_stores_empty_field_as_none(
    settings_store: SqlSettingsStore,
) -> None:
    settings = await settings_store.update(
        TEAM_ID,
        channel_field="  ",
        channel_template="customer-{slug}",
        timezone="UTC",
        managers=[],
        user_id=USER_ID,
    )

    assert settings.channel_field is None


@pytest.mark.parametrize(
    ("template", "zone", "managers", "message_part"),
    [
        ("customer-{slug}", "Mars/Olympus_Mons", MANAGER_IDS, "was not found"),
        ("customer-{slug}", "../etc/passwd", MANAGER_IDS, "was not found"),
        (" ", "UTC", MANAGER_IDS, "template is empty"),
        ("customer-{slug}", "UTC", ["U0MANAGER1", " "], "user id is empty"),
    ],
)
async def test_settings_update_rejects_invalid_values(
    settings_store: SqlSettingsStore,
    template: str,
    zone: str,
    managers: list[str],
    message_part: str,
) -> None:
    with pytest.raises(ValueError, match=message_part):
        await settings_store.update(
            TEAM_ID,
            channel_field=None,
            channel_template=template,
            timezone=zone,
            managers=managers,
            user_id=USER_ID,
        )

    assert (await settings_store.get(TEAM_ID)).updated_by is None


async def test_settings_update_audits_changed_fields(
    settings_store: SqlSettingsStore, audit_log: SqlAuditLog
) -> None:
    await settings_store.update(
        TEAM_ID,
        channel_field="custom.Slack Channel",
        channel_template="customer-{slug}",
        timezone="America/New_York",
        managers=MANAGER_IDS,
        user_id=USER_ID,
    )

    entries = await audit_log.list(TEAM_ID)

    assert len(entries) == 1
    assert entries[0].action == AuditAction.SETTINGS_UPDATED
    assert entries[0].user_id == USER_ID
    assert entries[0].target == f"workspace:{TEAM_ID}"
    assert entries[0].details == {
        "changes": {
            "timezone": {"old": "UTC", "new": "America/New_York"},
            "managers": {"old": [], "new": MANAGER_IDS},
        }
    }


async def test_settings_update_creates_workspace_row(
    settings_store: SqlSettingsStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await settings_store.update(
        TEAM_ID,
        channel_field=None,
        channel_template="customer-{slug}",
        timezone="UTC",
        managers=[],
        user_id=USER_ID,
    )

    async with session_factory() as session:
        workspace = await session.get(Workspace, TEAM_ID)
    assert workspace is not None
    assert workspace.name is None
    assert workspace.created_at.tzinfo is UTC


async def test_save_workspace_sets_and_keeps_name(
    settings_store: SqlSettingsStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await settings_store.save_workspace(TEAM_ID, name="Acme CS")
    await settings_store.save_workspace(TEAM_ID, name=None)

    async with session_factory() as session:
        workspace = await session.get(Workspace, TEAM_ID)
    assert workspace is not None
    assert workspace.name == "Acme CS"


async def test_audit_record_returns_stored_entry(audit_log: SqlAuditLog) -> None:
    before = utc_now()

    entry = await audit_log.record(
        team_id=TEAM_ID,
        user_id=USER_ID,
        action=AuditAction.PERMISSION_DENIED,
        target="segment:7",
        details={"command": "/segment send"},
    )

    listed = await audit_log.list(TEAM_ID)
    assert listed == (entry,)
    assert entry.action == "permission.denied"
    assert entry.details == {"command": "/segment send"}
    assert entry.created_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= entry.created_at <= utc_now()


async def test_audit_list_is_newest_first_and_limited(audit_log: SqlAuditLog) -> None:
    for number in range(4):
        await audit_log.record(
            team_id=TEAM_ID, user_id=USER_ID, action="segment.created", target=f"segment:{number}"
        )
    await audit_log.record(team_id=OTHER_TEAM_ID, user_id=USER_ID, action="segment.created")

    entries = await audit_log.list(TEAM_ID, limit=3)

    assert [entry.target for entry in entries] == ["segment:3", "segment:2", "segment:1"]
    assert all(entry.team_id == TEAM_ID for entry in entries)


async def test_audit_list_rejects_limit_below_one(audit_log: SqlAuditLog) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await audit_log.list(TEAM_ID, limit=0)


async def test_offset_datetime_comes_back_as_utc(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    local = datetime(2025, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    async with session_factory() as session, session.begin():
        session.add(Workspace(team_id=TEAM_ID, name="Acme", created_at=local))

    async with session_factory() as session:
        workspace = await session.get(Workspace, TEAM_ID)

    assert workspace is not None
    assert workspace.created_at == datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
    assert workspace.created_at.tzinfo is UTC


@pytest.mark.usefixtures("sqlite_only")
async def test_sqlite_holds_utc_wall_clock_time(
    session_factory: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    # 14:30 at UTC+02:00 is 12:30 UTC; SQLite text has no offset, so 12:30 must be stored.
    local = datetime(2025, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    async with session_factory() as session, session.begin():
        session.add(Workspace(team_id=TEAM_ID, name="Acme", created_at=local))

    async with engine.connect() as connection:
        raw = (await connection.execute(text("SELECT created_at FROM workspaces"))).scalar()

    assert str(raw).startswith("2025-06-01 12:30:00")


async def test_naive_datetime_is_rejected(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    naive = datetime(2025, 6, 1, 12, 30)

    with pytest.raises(StatementError, match="Naive datetime"):
        async with session_factory() as session, session.begin():
            session.add(Workspace(team_id=TEAM_ID, name="Acme", created_at=naive))
