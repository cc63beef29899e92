"""SqlSegmentStore: per-workspace unique names ignoring case, audited writes, kept history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditLogEntry, Broadcast, utc_now
from db.stores import SegmentNotFound, SqlDeliveryLog, SqlSegmentStore
from segments.ports import DuplicateSegmentName, NewBroadcast

TEAM_ID = "T0TEAM0001"
OTHER_TEAM_ID = "T0TEAM0002"
USER_ID = "U0USER0001"
OTHER_USER_ID = "U0USER0002"
RULES = {"all": [{"field": "renewalDate", "op": "within_days", "value": 90}]}


class StoreWithoutNameCheck(SqlSegmentStore):
    """Skips the query before the insert, as if another writer took the name in between."""

    async def _ensure_name_free(
        self, session: AsyncSession, *, team_id: str, name: str, segment_id: int | None
    ) -> None:
        return None


async def _audit_rows(
    session_factory: async_sessionmaker[AsyncSession], team_id: str
) -> list[AuditLogEntry]:
    async with session_factory() as session:
        statement = (
            select(AuditLogEntry).where(AuditLogEntry.team_id == team_id).order_by(AuditLogEntry.id)
        )
        return list((await session.scalars(statement)).all())


async def test_create_strips_name_and_returns_stored_record(segment_store: SqlSegmentStore) -> None:
    before = utc_now()

    record = await segment_store.create(
        team_id=TEAM_ID, name="  Renewals  ", rules=RULES, user_id=USER_ID
    )

    assert record.name == "Renewals"
    assert record.team_id == TEAM_ID
    assert record.rules == RULES
    assert record.created_by == USER_ID
    assert record.updated_by == USER_ID
    assert record.created_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= record.created_at <= utc_now()
    assert await segment_store.get(record.id) == record


async def test_create_rejects_same_name_ignoring_case_and_spaces(
    segment_store: SqlSegmentStore,
) -> None:
    await segment_store.create(team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID)

    with pytest.raises(DuplicateSegmentName) as raised:
        await segment_store.create(team_id=TEAM_ID, name=" renewals ", rules=RULES, user_id=USER_ID)

    assert raised.value.name == "renewals"
    assert len(await segment_store.list(team_id=TEAM_ID)) == 1


async def test_create_allows_same_name_in_other_workspace(segment_store: SqlSegmentStore) -> None:
    first = await segment_store.create(
        team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID
    )

    second = await segment_store.create(
        team_id=OTHER_TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID
    )

    assert second.id != first.id
    assert [record.id for record in await segment_store.list(team_id=OTHER_TEAM_ID)] == [second.id]


async def test_create_translates_unique_violation_from_race(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = StoreWithoutNameCheck(session_factory)
    await store.create(team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID)

    with pytest.raises(DuplicateSegmentName):
        await store.create(team_id=TEAM_ID, name="RENEWALS", rules=RULES, user_id=USER_ID)

    assert len(await store.list(team_id=TEAM_ID)) == 1


@pytest.mark.parametrize(
    ("name", "message_part"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 81, "81 characters long"),
    ],
)
async def test_create_rejects_invalid_name(
    segment_store: SqlSegmentStore, name: str, message_part: str
) -> None:
    with pytest.raises(ValueError, match=message_part):
        await segment_store.create(team_id=TEAM_ID, name=name, rules=RULES, user_id=USER_ID)

    assert await segment_store.list(team_id=TEAM_ID) == ()


async def test_create_accepts_name_of_80_characters(segment_store: SqlSegmentStore) -> None:
    name = "é" * 80

    record = await segment_store.create(team_id=TEAM_ID, name=name, rules=RULES, user_id=USER_ID)

    assert record.name == name


async def test_get_by_name_ignores_case_and_spaces(segment_store: SqlSegmentStore) -> None:
    created = await segment_store.create(
        team_id=TEAM_ID, name="Renewals Q3", rules=RULES, user_id=USER_ID
    )

    found = await segment_store.get_by_name(team_id=TEAM_ID, name="  renewals q3 ")
    other_team = await segment_store.get_by_name(team_id=OTHER_TEAM_ID, name="Renewals Q3")
    missing = await segment_store.get_by_name(team_id=TEAM_ID, name="Churn risk")

    assert found == created
    assert other_team is None
    assert missing is None


async def test_list_orders_by_name_ignoring_case(segment_store: SqlSegmentStore) -> None:
    for name in ("beta", "Alpha", "gamma", "Delta"):
        await segment_store.create(team_id=TEAM_ID, name=name, rules=RULES, user_id=USER_ID)
    await segment_store.create(team_id=OTHER_TEAM_ID, name="Aardvark", rules=RULES, user_id=USER_ID)

    records = await segment_store.list(team_id=TEAM_ID)

    assert [record.name for record in records] == ["Alpha", "beta", "Delta", "gamma"]


async def test_update_changes_name_rules_and_updater(segment_store: SqlSegmentStore) -> None:
    created = await segment_store.create(
        team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID
    )
    new_rules = {"all": [{"field": "h", "op": "lt", "value": 40}]}

    updated = await segment_store.update(
        created.id, name="Low health", rules=new_rules, user_id=OTHER_USER_ID
    )

    assert updated.name == "Low health"
    assert updated.rules == new_rules
    assert updated.updated_by == OTHER_USER_ID
    assert updated.created_by == USER_ID
    assert updated.created_at == created.created_at
    assert updated.updated_at >= created.updated_at
    assert await segment_store.get_by_name(team_id=TEAM_ID, name="Renewals") is None
    assert await segment_store.get(created.id) == updated


async def test_update_to_taken_name_raises(segment_store: SqlSegmentStore) -> None:
    await segment_store.create(team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID)
    other = await segment_store.create(
        team_id=TEAM_ID, name="Low health", rules=RULES, user_id=USER_ID
    )

    with pytest.raises(DuplicateSegmentName):
        await segment_store.update(other.id, name="RENEWALS ", rules=RULES, user_id=USER_ID)

    assert await segment_store.get(other.id) == other


async def test_update_allows_changing_only_case(segment_store: SqlSegmentStore) -> None:
    created = await segment_store.create(
        team_id=TEAM_ID, name="renewals", rules=RULES, user_id=USER_ID
    )

    updated = await segment_store.update(created.id, name="Renewals", rules=RULES, user_id=USER_ID)

    assert updated.name == "Renewals"


async def test_update_translates_unique_violation_from_race(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = StoreWithoutNameCheck(session_factory)
    await store.create(team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID)
    other = await store.create(team_id=TEAM_ID, name="Low health", rules=RULES, user_id=USER_ID)

    with pytest.raises(DuplicateSegmentName):
        await store.update(other.id, name="renewals", rules=RULES, user_id=USER_ID)

    assert await store.get(other.id) == other


async def test_update_missing_segment_raises(segment_store: SqlSegmentStore) -> None:
    with pytest.raises(SegmentNotFound, match="Segment 999 was not found"):
        await segment_store.update(999, name="Renewals", rules=RULES, user_id=USER_ID)


async def test_delete_returns_false_for_missing_segment(segment_store: SqlSegmentStore) -> None:
    deleted = await segment_store.delete(999, user_id=USER_ID)

    assert deleted is False


async def test_delete_keeps_broadcasts_with_segment_id_cleared(
    segment_store: SqlSegmentStore,
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: Callable[..., NewBroadcast],
) -> None:
    segment = await segment_store.create(
        team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID
    )
    broadcast = await delivery_log.create_broadcast(new_broadcast(segment_id=segment.id))

    deleted = await segment_store.delete(segment.id, user_id=USER_ID)

    async with session_factory() as session:
        row = await session.get(Broadcast, broadcast.id)
    kept = await delivery_log.get_broadcast(broadcast.id)
    assert deleted is True
    assert await segment_store.get(segment.id) is None
    assert row is not None
    assert row.segment_id is None
    assert row.segment_name == "Renewals"
    assert kept is not None
    assert len(kept.deliveries) == 2


async def test_each_write_is_audited_with_user_and_time(
    segment_store: SqlSegmentStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    before = utc_now()
    created = await segment_store.create(
        team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID
    )
    await segment_store.update(created.id, name="Renewals soon", rules=RULES, user_id=OTHER_USER_ID)
    await segment_store.delete(created.id, user_id=USER_ID)

    rows = await _audit_rows(session_factory, TEAM_ID)

    assert [row.action for row in rows] == [
        "segment.created",
        "segment.updated",
        "segment.deleted",
    ]
    assert [row.user_id for row in rows] == [USER_ID, OTHER_USER_ID, USER_ID]
    assert {row.target for row in rows} == {f"segment:{created.id}"}
    for row in rows:
        assert row.created_at.tzinfo is UTC
        assert before - timedelta(seconds=1) <= row.created_at <= utc_now()
    assert rows[0].details == {"name": "Renewals", "rules": RULES}
    assert rows[1].details["previous_name"] == "Renewals"
    assert rows[1].details["name"] == "Renewals soon"
    assert rows[2].details["name"] == "Renewals soon"


async def test_rejected_write_leaves_no_audit_row(
    segment_store: SqlSegmentStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await segment_store.create(team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID)

    with pytest.raises(DuplicateSegmentName):
        await segment_store.create(team_id=TEAM_ID, name="renewals", rules=RULES, user_id=USER_ID)

    rows = await _audit_rows(session_factory, TEAM_ID)
    assert [row.action for row in rows] == ["segment.created"]
