"""SqlDeliveryLog: deliveries recorded before and after each post, guarded states, durability."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import create_engine, create_session_factory
from db.models import AuditLogEntry, Broadcast, Delivery, utc_now
from db.stores import (
    BroadcastNotFound,
    DeliveryNotFound,
    InvalidStateTransition,
    SqlDeliveryLog,
    broadcast_status_for,
)
from segments.ports import (
    BroadcastStatus,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
)

TEAM_ID = "T0TEAM0001"
OTHER_TEAM_ID = "T0TEAM0002"
USER_ID = "U0USER0001"

NewBroadcastFactory = Callable[..., NewBroadcast]
TargetFactory = Callable[..., DeliveryTarget]


async def _delivery_rows(
    session_factory: async_sessionmaker[AsyncSession], broadcast_id: int
) -> list[Delivery]:
    async with session_factory() as session:
        statement = (
            select(Delivery).where(Delivery.broadcast_id == broadcast_id).order_by(Delivery.id)
        )
        return list((await session.scalars(statement)).all())


async def _send(log: SqlDeliveryLog, delivery_id: int, *, ts: str) -> None:
    await log.mark_sending(delivery_id)
    await log.mark_sent(delivery_id, ts=ts)


async def _fail(log: SqlDeliveryLog, delivery_id: int) -> None:
    await log.mark_sending(delivery_id)
    await log.mark_failed(delivery_id, error="channel_not_found", reason="The channel is gone.")


async def test_create_broadcast_records_pending_delivery_per_target(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
    make_target: TargetFactory,
) -> None:
    targets = (
        make_target("C0000000001", "Acme", "Acme Europe"),
        make_target("C000000002P", "Globex"),
    )

    record = await delivery_log.create_broadcast(new_broadcast(targets=targets))

    rows = await _delivery_rows(session_factory, record.id)
    assert record.status == BroadcastStatus.SENDING
    assert record.team_id == TEAM_ID
    assert record.segment_name == "Renewals"
    assert [delivery.channel_id for delivery in record.deliveries] == ["C0000000001", "C000000002P"]
    assert {delivery.status for delivery in record.deliveries} == {DeliveryStatus.PENDING}
    assert {delivery.attempts for delivery in record.deliveries} == {0}
    assert [row.is_private for row in rows] == [False, True]
    assert rows[0].companies == [
        {
            "company_id": "id-acme",
            "company_name": "Acme",
            "values": {"renewalDate": "2025-03-01", "custom.Tier": "Gold"},
            "variables": {"company.name": "Acme"},
        },
        {
            "company_id": "id-acme europe",
            "company_name": "Acme Europe",
            "values": {"renewalDate": "2025-03-01", "custom.Tier": "Gold"},
            "variables": {"company.name": "Acme Europe"},
        },
    ]
    assert [company["company_name"] for company in rows[1].companies] == ["Globex"]


async def test_create_broadcast_stores_message_and_unmapped(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
) -> None:
    broadcast = new_broadcast()

    record = await delivery_log.create_broadcast(broadcast)

    async with session_factory() as session:
        row = await session.get(Broadcast, record.id)
    assert row is not None
    assert row.message_text == broadcast.message_text
    assert row.message_blocks == broadcast.message_blocks
    assert row.rules_text == broadcast.rules_text
    assert row.sent_by == USER_ID
    assert row.unmapped == [dict(company) for company in broadcast.unmapped]
    assert row.finished_at is None


async def test_create_broadcast_is_audited(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())

    async with session_factory() as session:
        entries = (await session.scalars(select(AuditLogEntry))).all()
    assert [entry.action for entry in entries] == ["broadcast.created"]
    assert entries[0].user_id == USER_ID
    assert entries[0].target == f"broadcast:{record.id}"
    assert entries[0].details["channels"] == 2
    assert entries[0].details["unmapped"] == 1


async def test_create_broadcast_rejects_zero_targets(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
) -> None:
    with pytest.raises(ValueError, match="at least one target channel"):
        await delivery_log.create_broadcast(new_broadcast(targets=()))

    async with session_factory() as session:
        assert (await session.scalars(select(Broadcast))).all() == []


async def test_create_broadcast_rejects_repeated_channel(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
    make_target: TargetFactory,
) -> None:
    targets = (make_target("C0000000001", "Acme"), make_target("C0000000001", "Globex"))

    with pytest.raises(ValueError, match="C0000000001"):
        await delivery_log.create_broadcast(new_broadcast(targets=targets))

    async with session_factory() as session:
        assert (await session.scalars(select(Broadcast))).all() == []


async def test_unique_constraint_rejects_second_row_for_channel(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    duplicate = Delivery(
        broadcast_id=record.id,
        channel_id=record.deliveries[0].channel_id,
        channel_name="customer-acme-copy",
        is_private=False,
        companies=[],
        status=DeliveryStatus.PENDING,
        attempts=0,
    )

    with pytest.raises(IntegrityError):
        async with session_factory() as session, session.begin():
            session.add(duplicate)

    assert len(await _delivery_rows(session_factory, record.id)) == 2


async def test_mark_sending_increments_attempts(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id

    first = await delivery_log.mark_sending(delivery_id)
    second = await delivery_log.mark_sending(delivery_id)

    stored = await delivery_log.get_broadcast(record.id)
    assert (first, second) == (1, 2)
    assert stored is not None
    assert stored.deliveries[0].status == DeliveryStatus.SENDING
    assert stored.deliveries[0].attempts == 2
    assert stored.deliveries[1].attempts == 0


async def test_mark_sent_stores_ts(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id

    await _send(delivery_log, delivery_id, ts="1700000000.000100")

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].status == DeliveryStatus.SENT
    assert stored.deliveries[0].ts == "1700000000.000100"
    assert stored.deliveries[0].error is None


async def test_repeated_mark_sent_keeps_first_ts_and_warns(
    delivery_log: SqlDeliveryLog,
    new_broadcast: NewBroadcastFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    await _send(delivery_log, delivery_id, ts="1700000000.000100")

    with caplog.at_level(logging.WARNING, logger="db.stores"):
        await delivery_log.mark_sent(delivery_id, ts="1700000099.000200")

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].ts == "1700000000.000100"
    warnings = [entry for entry in caplog.records if entry.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "already sent" in warnings[0].getMessage()


async def test_mark_sent_on_pending_delivery_raises(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())

    with pytest.raises(InvalidStateTransition, match="Call mark_sending before posting"):
        await delivery_log.mark_sent(record.deliveries[0].id, ts="1700000000.000100")


async def test_mark_failed_stores_error_and_reason(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    await delivery_log.mark_sending(delivery_id)

    await delivery_log.mark_failed(
        delivery_id, error="is_archived", reason="The channel is archived. Unarchive it."
    )

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].status == DeliveryStatus.FAILED
    assert stored.deliveries[0].error == "is_archived"
    assert stored.deliveries[0].reason == "The channel is archived. Unarchive it."
    assert stored.deliveries[0].ts is None


async def test_mark_failed_allowed_before_any_attempt(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())

    await delivery_log.mark_failed(
        record.deliveries[0].id, error="not_in_channel", reason="Invite segment-bot."
    )

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].status == DeliveryStatus.FAILED
    assert stored.deliveries[0].attempts == 0


async def test_repeated_mark_failed_keeps_first_error(
    delivery_log: SqlDeliveryLog,
    new_broadcast: NewBroadcastFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    await _fail(delivery_log, delivery_id)

    with caplog.at_level(logging.WARNING, logger="db.stores"):
        await delivery_log.mark_failed(delivery_id, error="ratelimited", reason="Try later.")

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].error == "channel_not_found"
    assert any("already failed" in entry.getMessage() for entry in caplog.records)


@pytest.mark.parametrize("final_status", [DeliveryStatus.SENT, DeliveryStatus.FAILED])
async def test_mark_sending_after_final_status_raises(
    delivery_log: SqlDeliveryLog,
    new_broadcast: NewBroadcastFactory,
    final_status: DeliveryStatus,
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    if final_status == DeliveryStatus.SENT:
        await _send(delivery_log, delivery_id, ts="1700000000.000100")
    else:
        await _fail(delivery_log, delivery_id)

    with pytest.raises(InvalidStateTransition, match=f"already {final_status}"):
        await delivery_log.mark_sending(delivery_id)

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].attempts == 1


async def test_mark_failed_after_sent_raises(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    await _send(delivery_log, delivery_id, ts="1700000000.000100")

    with pytest.raises(InvalidStateTransition, match="already sent"):
        await delivery_log.mark_failed(delivery_id, error="x", reason="y")

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.deliveries[0].status == DeliveryStatus.SENT


async def test_mark_sent_after_failed_raises(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    await _fail(delivery_log, delivery_id)

    with pytest.raises(InvalidStateTransition, match="already failed"):
        await delivery_log.mark_sent(delivery_id, ts="1700000000.000100")


async def test_marking_unknown_delivery_raises(delivery_log: SqlDeliveryLog) -> None:
    with pytest.raises(DeliveryNotFound):
        await delivery_log.mark_sending(404)
    with pytest.raises(DeliveryNotFound):
        await delivery_log.mark_sent(404, ts="1700000000.000100")
    with pytest.raises(DeliveryNotFound):
        await delivery_log.mark_failed(404, error="x", reason="y")


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (("sent", "sent", "sent"), BroadcastStatus.SENT),
        (("sent", "failed", "sent"), BroadcastStatus.PARTIALLY_SENT),
        (("failed", "failed", "failed"), BroadcastStatus.FAILED),
    ],
)
async def test_finish_broadcast_derives_status(
    delivery_log: SqlDeliveryLog,
    session_factory: async_sessionmaker[AsyncSession],
    new_broadcast: NewBroadcastFactory,
    make_target: TargetFactory,
    outcomes: tuple[str, ...],
    expected: BroadcastStatus,
) -> None:
    targets = [make_target(f"C000000000{index}", f"Company {index}") for index in range(3)]
    record = await delivery_log.create_broadcast(new_broadcast(targets=targets))
    for delivery, outcome in zip(record.deliveries, outcomes, strict=True):
        if outcome == "sent":
            await _send(delivery_log, delivery.id, ts=f"1700000000.00000{delivery.id}")
        else:
            await _fail(delivery_log, delivery.id)
    before = utc_now()

    finished = await delivery_log.finish_broadcast(record.id)

    stored = await delivery_log.get_broadcast(record.id)
    async with session_factory() as session:
        row = await session.get(Broadcast, record.id)
    assert finished.status == expected
    assert stored == finished
    assert [delivery.status for delivery in finished.deliveries] == [
        DeliveryStatus(outcome) for outcome in outcomes
    ]
    assert row is not None
    assert row.finished_at is not None
    assert row.finished_at.tzinfo is UTC
    assert row.finished_at >= before


async def test_finish_broadcast_with_unfinished_delivery_raises(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    await _send(delivery_log, record.deliveries[0].id, ts="1700000000.000100")
    await delivery_log.mark_sending(record.deliveries[1].id)

    with pytest.raises(InvalidStateTransition, match="1 deliveries are still pending or sending"):
        await delivery_log.finish_broadcast(record.id)

    stored = await delivery_log.get_broadcast(record.id)
    assert stored is not None
    assert stored.status == BroadcastStatus.SENDING


async def test_finish_broadcast_twice_returns_first_result(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    for delivery in record.deliveries:
        await _send(delivery_log, delivery.id, ts=f"1700000000.00000{delivery.id}")
    first = await delivery_log.finish_broadcast(record.id)

    second = await delivery_log.finish_broadcast(record.id)

    assert second == first


async def test_finish_unknown_broadcast_raises(delivery_log: SqlDeliveryLog) -> None:
    with pytest.raises(BroadcastNotFound):
        await delivery_log.finish_broadcast(404)


def test_broadcast_status_of_no_deliveries_is_failed() -> None:
    assert broadcast_status_for([]) == BroadcastStatus.FAILED


async def test_get_broadcast_returns_none_when_missing(delivery_log: SqlDeliveryLog) -> None:
    assert await delivery_log.get_broadcast(404) is None


async def test_list_broadcasts_newest_first_per_workspace(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    created = [await delivery_log.create_broadcast(new_broadcast()) for _ in range(3)]
    await delivery_log.create_broadcast(new_broadcast(team_id=OTHER_TEAM_ID))

    latest_two = await delivery_log.list_broadcasts(TEAM_ID, limit=2)

    assert [record.id for record in latest_two] == [created[2].id, created[1].id]
    assert all(len(record.deliveries) == 2 for record in latest_two)


async def test_committed_state_survives_reopening_database(
    database_url: str,
    delivery_log: SqlDeliveryLog,
    new_broadcast: NewBroadcastFactory,
) -> None:
    # A second engine on the same file reads what a bot restarted after a crash would read.
    record = await delivery_log.create_broadcast(new_broadcast())
    first, second = record.deliveries
    await _send(delivery_log, first.id, ts="1700000000.000100")
    await delivery_log.mark_sending(second.id)

    reopened = create_engine(database_url)
    try:
        stored = await SqlDeliveryLog(create_session_factory(reopened)).get_broadcast(record.id)
    finally:
        await reopened.dispose()

    assert stored is not None
    assert stored.status == BroadcastStatus.SENDING
    assert stored.deliveries[0].status == DeliveryStatus.SENT
    assert stored.deliveries[0].ts == "1700000000.000100"
    assert stored.deliveries[1].status == DeliveryStatus.SENDING
    assert stored.deliveries[1].attempts == 1


async def test_broadcast_timestamps_are_utc_aware(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    before = utc_now()
    created = await delivery_log.create_broadcast(new_broadcast())

    stored = await delivery_log.get_broadcast(created.id)

    assert stored is not None
    assert stored.created_at.tzinfo is UTC
    assert stored.created_at == created.created_at
    assert stored.created_at >= before
