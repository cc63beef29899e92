"""The delivery state machine and the durable-broadcast steps of SqlDeliveryLog.

The expected transitions are written out here, not read from `DELIVERY_TRANSITIONS`, so a change
to the table has to change this list too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditLogEntry
from db.stores import BroadcastNotFound, InvalidStateTransition, SqlDeliveryLog
from segments.ports import BroadcastStatus, DeliveryStatus, DeliveryTarget, QualifyingCompany
from tests.db.conftest import USER_ID, NewBroadcastFactory

TargetFactory = Callable[..., DeliveryTarget]

P, SENDING, SENT, FAILED, UNCONFIRMED, SKIPPED, CANCELLED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNCONFIRMED,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.CANCELLED,
)
ALLOWED = {
    (P, SENDING),
    (SENDING, SENDING),
    (SENDING, SENT),
    (UNCONFIRMED, SENT),
    (P, FAILED),
    (SENDING, FAILED),
    (SENDING, UNCONFIRMED),
    (P, SKIPPED),
}
# Marking a delivery with the status it already has keeps the first values and does not raise.
REPEATS = {(SENT, SENT), (FAILED, FAILED), (UNCONFIRMED, UNCONFIRMED), (SKIPPED, SKIPPED)}

Step = Callable[[SqlDeliveryLog, int], Awaitable[object]]


async def _to_sending(log: SqlDeliveryLog, delivery_id: int) -> object:
    return await log.mark_sending(delivery_id)


async def _to_sent(log: SqlDeliveryLog, delivery_id: int) -> object:
    return await log.mark_sent(delivery_id, ts="1700000000.000200")


async def _to_failed(log: SqlDeliveryLog, delivery_id: int) -> object:
    return await log.mark_failed(delivery_id, error="is_archived", reason="Archived.")


async def _to_unconfirmed(log: SqlDeliveryLog, delivery_id: int) -> object:
    return await log.mark_unconfirmed(delivery_id, error="unknown_outcome", reason="Unknown.")


async def _to_skipped(log: SqlDeliveryLog, delivery_id: int) -> object:
    return await log.mark_skipped(delivery_id, reason="Skipped by the frequency cap.")


MARKS: dict[DeliveryStatus, Step] = {
    SENDING: _to_sending,
    SENT: _to_sent,
    FAILED: _to_failed,
    UNCONFIRMED: _to_unconfirmed,
    SKIPPED: _to_skipped,
}
PATHS: dict[DeliveryStatus, tuple[Step, ...]] = {
    P: (),
    SENDING: (_to_sending,),
    SENT: (_to_sending, _to_sent),
    FAILED: (_to_failed,),
    UNCONFIRMED: (_to_sending, _to_unconfirmed),
    SKIPPED: (_to_skipped,),
}


async def _delivery_in(
    log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory, status: DeliveryStatus
) -> tuple[int, int]:
    record = await log.create_broadcast(new_broadcast())
    delivery_id = record.deliveries[0].id
    if status == CANCELLED:
        await log.cancel_broadcast(record.id, user_id=USER_ID)
    for step in PATHS.get(status, ()):
        await step(log, delivery_id)
    return record.id, delivery_id


async def _status(log: SqlDeliveryLog, broadcast_id: int, delivery_id: int) -> DeliveryStatus:
    record = await log.get_broadcast(broadcast_id)
    assert record is not None
    return next(d.status for d in record.deliveries if d.id == delivery_id)


@pytest.mark.parametrize("target", list(MARKS))
@pytest.mark.parametrize("source", [P, SENDING, SENT, FAILED, UNCONFIRMED, SKIPPED, CANCELLED])
async def test_delivery_transition_allowed_or_refused(
    delivery_log: SqlDeliveryLog,
    new_broadcast: NewBroadcastFactory,
    source: DeliveryStatus,
    target: DeliveryStatus,
) -> None:
    broadcast_id, delivery_id = await _delivery_in(delivery_log, new_broadcast, source)

    if (source, target) in ALLOWED or (source, target) in REPEATS:
        await MARKS[target](delivery_log, delivery_id)
        expected = target
    else:
        with pytest.raises(InvalidStateTransition, match=f"cannot become {target}"):
            await MARKS[target](delivery_log, delivery_id)
        expected = source

    assert await _status(delivery_log, broadcast_id, delivery_id) == expected


async def test_records_carry_companies_and_privacy(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory, make_target: TargetFactory
) -> None:
    targets = (make_target("C000000001P", "Acme", "Acme Europe"),)

    created = await delivery_log.create_broadcast(new_broadcast(targets=targets))
    stored = await delivery_log.get_broadcast(created.id)

    assert stored is not None
    delivery = stored.deliveries[0]
    assert delivery.is_private is True
    assert delivery.companies[0] == QualifyingCompany(
        company_id="id-acme",
        company_name="Acme",
        values={"renewalDate": "2025-03-01", "custom.Tier": "Gold"},
        variables={"company.name": "Acme"},
    )
    assert [company.company_name for company in delivery.companies] == ["Acme", "Acme Europe"]


async def test_sending_started_at_set_once_per_round(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    broadcast_id, delivery_id = await _delivery_in(delivery_log, new_broadcast, SENDING)
    first = await delivery_log.get_broadcast(broadcast_id)
    await delivery_log.mark_sending(delivery_id)

    second = await delivery_log.get_broadcast(broadcast_id)

    assert first is not None and second is not None
    assert first.deliveries[0].sending_started_at is not None
    assert second.deliveries[0].sending_started_at == first.deliveries[0].sending_started_at
    assert second.deliveries[0].attempts == 2


async def test_claim_returns_none_for_cancelled_delivery(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    broadcast_id, delivery_id = await _delivery_in(delivery_log, new_broadcast, CANCELLED)

    attempts = await delivery_log.claim_for_sending(delivery_id)

    assert attempts is None
    assert await _status(delivery_log, broadcast_id, delivery_id) == CANCELLED


async def test_cancel_cancels_pending_and_keeps_in_flight(
    delivery_log: SqlDeliveryLog,
    new_broadcast: NewBroadcastFactory,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    in_flight, pending = (delivery.id for delivery in record.deliveries)
    await delivery_log.mark_sending(in_flight)

    cancelled = await delivery_log.cancel_broadcast(record.id, user_id=USER_ID)
    await delivery_log.mark_sent(in_flight, ts="1700000000.000300")
    finished = await delivery_log.finish_broadcast(record.id)

    assert cancelled.status == BroadcastStatus.CANCELLED
    assert [d.status for d in cancelled.deliveries] == [SENDING, CANCELLED]
    assert finished.status == BroadcastStatus.CANCELLED
    assert [d.status for d in finished.deliveries] == [SENT, CANCELLED]
    async with session_factory() as session:
        actions = (await session.scalars(select(AuditLogEntry.action))).all()
    assert "broadcast.cancelled" in actions
    assert pending != in_flight


async def test_cancel_of_finished_broadcast_raises(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    for delivery in record.deliveries:
        await _to_failed(delivery_log, delivery.id)
    await delivery_log.finish_broadcast(record.id)

    with pytest.raises(InvalidStateTransition, match="cannot be cancelled"):
        await delivery_log.cancel_broadcast(record.id, user_id=USER_ID)


async def test_cancel_unknown_broadcast_raises(delivery_log: SqlDeliveryLog) -> None:
    with pytest.raises(BroadcastNotFound):
        await delivery_log.cancel_broadcast(404, user_id=USER_ID)


async def test_reopen_failed_moves_only_failed_to_pending(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory, make_target: TargetFactory
) -> None:
    targets = tuple(make_target(f"C00000000{index}", f"Co{index}") for index in range(3))
    record = await delivery_log.create_broadcast(new_broadcast(targets=targets))
    sent, failed, unconfirmed = (delivery.id for delivery in record.deliveries)
    for step in PATHS[SENT]:
        await step(delivery_log, sent)
    await _to_failed(delivery_log, failed)
    for step in PATHS[UNCONFIRMED]:
        await step(delivery_log, unconfirmed)
    await delivery_log.finish_broadcast(record.id)

    reopened = await delivery_log.reopen_failed(record.id, user_id=USER_ID)

    assert reopened.status == BroadcastStatus.SENDING
    assert [d.status for d in reopened.deliveries] == [SENT, P, UNCONFIRMED]
    assert reopened.deliveries[1].error is None
    assert reopened.deliveries[1].sending_started_at is None


async def test_reopen_twice_raises_while_running(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    for delivery in record.deliveries:
        await _to_failed(delivery_log, delivery.id)
    await delivery_log.finish_broadcast(record.id)
    await delivery_log.reopen_failed(record.id, user_id=USER_ID)

    with pytest.raises(InvalidStateTransition, match="no failed delivery to resend"):
        await delivery_log.reopen_failed(record.id, user_id=USER_ID)


async def test_reopen_without_failed_delivery_raises(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    for delivery in record.deliveries:
        for step in PATHS[SENT]:
            await step(delivery_log, delivery.id)
    await delivery_log.finish_broadcast(record.id)

    with pytest.raises(InvalidStateTransition):
        await delivery_log.reopen_failed(record.id, user_id=USER_ID)


async def test_finish_counts_unconfirmed_as_not_sent(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast())
    first, second = (delivery.id for delivery in record.deliveries)
    for step in PATHS[SENT]:
        await step(delivery_log, first)
    for step in PATHS[UNCONFIRMED]:
        await step(delivery_log, second)

    finished = await delivery_log.finish_broadcast(record.id)

    assert finished.status == BroadcastStatus.PARTIALLY_SENT


async def test_resolving_broadcast_takes_audience_once(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory, make_target: TargetFactory
) -> None:
    draft = new_broadcast()
    started = await delivery_log.start_resolving(draft, rules={"all": []})
    unfinished = await delivery_log.list_unfinished()

    record = await delivery_log.add_audience(
        started.id, rules_text="all", targets=draft.targets, unmapped=()
    )

    assert started.status == BroadcastStatus.RESOLVING
    assert [stored.record.id for stored in unfinished] == [started.id]
    assert unfinished[0].rules == {"all": []}
    assert record.status == BroadcastStatus.SENDING
    assert len(record.deliveries) == len(draft.targets)
    with pytest.raises(InvalidStateTransition, match="only a resolving broadcast"):
        await delivery_log.add_audience(
            started.id, rules_text="all", targets=(make_target("C0000000009", "Co"),), unmapped=()
        )


async def test_fail_resolving_finishes_broadcast(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    started = await delivery_log.start_resolving(new_broadcast(), rules={"all": []})

    failed = await delivery_log.fail_resolving(started.id)
    unfinished = await delivery_log.list_unfinished()

    assert failed.status == BroadcastStatus.FAILED
    assert unfinished == ()


async def test_report_message_is_stored(
    delivery_log: SqlDeliveryLog, new_broadcast: NewBroadcastFactory
) -> None:
    record = await delivery_log.create_broadcast(new_broadcast(), rules={"any": []})

    await delivery_log.set_report_message(record.id, channel="D0USER0001", ts="1700000000.000400")
    stored = await delivery_log.get_stored_broadcast(record.id)

    assert stored is not None
    assert stored.report_channel == "D0USER0001"
    assert stored.report_ts == "1700000000.000400"
    assert stored.rules == {"any": []}
    assert stored.message_text == "Your renewal is coming up."
