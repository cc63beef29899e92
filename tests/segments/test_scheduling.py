"""Scheduled broadcasts on a migrated SQLite file: store, list, edit, cancel, claim and the cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.models import Delivery
from db.scheduled import NewScheduledBroadcast, ScheduledBroadcast, SqlScheduledBroadcasts
from db.stores import SqlDeliveryLog, SqlSegmentStore, SqlSettingsStore
from loopback.slack_server import SlackState
from segments.errors import UserFacingError
from segments.ports import (
    BroadcastStatus,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
    QualifyingCompany,
    SegmentRecord,
)
from segments.scheduling import (
    PastSendTime,
    Scheduler,
    cancel_scheduled,
    edit_scheduled,
    schedule_broadcast,
    send_time,
)
from tests.fakes import SlackStarter

TEAM_ID = "T0SCHED01"
USER_ID = "U0SENDER1"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
RULES = {"match": "all", "rules": [{"field": "name", "op": "is_set"}]}


class Clock:
    """A settable UTC clock for the scheduler."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'scheduling.db'}")
    await upgrade_database(engine)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture
def store(sessions: async_sessionmaker[AsyncSession]) -> SqlScheduledBroadcasts:
    return SqlScheduledBroadcasts(sessions)


@pytest.fixture
async def segment(sessions: async_sessionmaker[AsyncSession]) -> SegmentRecord:
    return await SqlSegmentStore(sessions).create(
        team_id=TEAM_ID, name="Renewals", rules=RULES, user_id=USER_ID
    )


@pytest.fixture
async def slack(start_slack: SlackStarter) -> tuple[SlackState, AsyncWebClient]:
    state = SlackState(channels=[])
    return state, await start_slack(state)


def _new(segment: SegmentRecord, *, at: datetime, text: str = "Renewal news") -> NewScheduledBroadcast:
    return NewScheduledBroadcast(
        team_id=TEAM_ID,
        segment_id=segment.id,
        segment_name=segment.name,
        message_text=text,
        message_blocks=None,
        sent_by=USER_ID,
        scheduled_at=at,
        timezone="Europe/Berlin",
        confirmed_channel_ids=frozenset({"C1", "C2"}),
    )


def _scheduler(
    store: SqlScheduledBroadcasts,
    sessions: async_sessionmaker[AsyncSession],
    *,
    reader: AsyncWebClient,
    clock: Clock,
    dispatched: list[int],
) -> Scheduler:
    async def dispatch(scheduled: ScheduledBroadcast) -> None:
        dispatched.append(scheduled.id)

    return Scheduler(
        store=store,
        segments=SqlSegmentStore(sessions),
        dispatch=dispatch,
        reader=reader,
        clock=clock,
    )


async def test_schedule_lists_soonest_first(
    store: SqlScheduledBroadcasts, segment: SegmentRecord
) -> None:
    later = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(days=2)), now=NOW)
    sooner = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(hours=1)), now=NOW)

    listed = await store.list(team_id=TEAM_ID)

    assert [row.id for row in listed] == [sooner.id, later.id]
    assert listed[0].scheduled_at == NOW + timedelta(hours=1)
    assert listed[0].confirmed_channel_ids == frozenset({"C1", "C2"})
    assert listed[0].timezone == "Europe/Berlin"


async def test_schedule_rejects_past_time(
    store: SqlScheduledBroadcasts, segment: SegmentRecord
) -> None:
    with pytest.raises(PastSendTime):
        await schedule_broadcast(store, _new(segment, at=NOW - timedelta(minutes=1)), now=NOW)

    assert await store.list(team_id=TEAM_ID) == ()


async def test_edit_changes_time_and_message(
    store: SqlScheduledBroadcasts, segment: SegmentRecord
) -> None:
    scheduled = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(hours=1)), now=NOW)

    edited = await edit_scheduled(
        store,
        scheduled.id,
        scheduled_at=NOW + timedelta(hours=5),
        timezone="America/New_York",
        message_text="New text",
        message_blocks=None,
        user_id=USER_ID,
        now=NOW,
    )

    stored = await store.get(scheduled.id)
    assert stored == edited
    assert edited.scheduled_at == NOW + timedelta(hours=5)
    assert edited.message_text == "New text"
    assert edited.timezone == "America/New_York"


async def test_edit_rejects_past_time(
    store: SqlScheduledBroadcasts, segment: SegmentRecord
) -> None:
    scheduled = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(hours=1)), now=NOW)

    with pytest.raises(PastSendTime):
        await edit_scheduled(
            store,
            scheduled.id,
            scheduled_at=NOW - timedelta(hours=1),
            timezone="UTC",
            message_text="x",
            message_blocks=None,
            user_id=USER_ID,
            now=NOW,
        )

    stored = await store.get(scheduled.id)
    assert stored is not None
    assert stored.scheduled_at == NOW + timedelta(hours=1)


async def test_cancel_removes_from_list_and_twice_fails(
    store: SqlScheduledBroadcasts,
    segment: SegmentRecord,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    scheduled = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(hours=1)), now=NOW)

    await cancel_scheduled(store, scheduled.id, user_id=USER_ID)

    assert await store.list(team_id=TEAM_ID) == ()
    record = await SqlDeliveryLog(sessions).get_broadcast(scheduled.id)
    assert record is not None
    assert record.status == BroadcastStatus.CANCELLED
    with pytest.raises(UserFacingError):
        await cancel_scheduled(store, scheduled.id, user_id=USER_ID)


async def test_scheduler_claims_only_due_rows(
    store: SqlScheduledBroadcasts,
    segment: SegmentRecord,
    sessions: async_sessionmaker[AsyncSession],
    slack: tuple[SlackState, AsyncWebClient],
) -> None:
    due = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(minutes=5)), now=NOW)
    later = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(hours=5)), now=NOW)
    clock = Clock(NOW)
    dispatched: list[int] = []
    scheduler = _scheduler(store, sessions, reader=slack[1], clock=clock, dispatched=dispatched)

    before = await scheduler.run_once()
    clock.now = NOW + timedelta(minutes=5)
    at_time = await scheduler.run_once()
    again = await scheduler.run_once()

    assert before == []
    assert at_time == [due.id]
    assert again == []
    assert dispatched == [due.id]
    record = await SqlDeliveryLog(sessions).get_stored_broadcast(due.id)
    assert record is not None
    assert record.record.status == BroadcastStatus.RESOLVING
    assert record.rules == RULES
    assert [row.id for row in await store.list(team_id=TEAM_ID)] == [later.id]


async def test_racing_schedulers_claim_each_row_once(
    store: SqlScheduledBroadcasts,
    segment: SegmentRecord,
    sessions: async_sessionmaker[AsyncSession],
    slack: tuple[SlackState, AsyncWebClient],
) -> None:
    ids = [
        (await schedule_broadcast(store, _new(segment, at=NOW + timedelta(minutes=1)), now=NOW)).id
        for _ in range(20)
    ]
    clock = Clock(NOW + timedelta(minutes=2))
    first: list[int] = []
    second: list[int] = []
    # Two stores on one database behave like two instances sharing it.
    one = _scheduler(store, sessions, reader=slack[1], clock=clock, dispatched=first)
    two = _scheduler(
        SqlScheduledBroadcasts(sessions), sessions, reader=slack[1], clock=clock, dispatched=second
    )

    await asyncio.gather(one.run_once(), two.run_once(), one.run_once(), two.run_once())

    assert sorted(first + second) == sorted(ids)
    assert not set(first) & set(second)


async def test_deleted_segment_cancels_with_dm(
    store: SqlScheduledBroadcasts,
    segment: SegmentRecord,
    sessions: async_sessionmaker[AsyncSession],
    slack: tuple[SlackState, AsyncWebClient],
) -> None:
    scheduled = await schedule_broadcast(store, _new(segment, at=NOW + timedelta(days=1)), now=NOW)
    await SqlSegmentStore(sessions).delete(segment.id, user_id=USER_ID)
    dispatched: list[int] = []
    scheduler = _scheduler(store, sessions, reader=slack[1], clock=Clock(NOW), dispatched=dispatched)

    await scheduler.run_once()

    assert dispatched == []
    assert await store.list(team_id=TEAM_ID) == ()
    record = await SqlDeliveryLog(sessions).get_broadcast(scheduled.id)
    assert record is not None
    assert record.status == BroadcastStatus.CANCELLED
    dms = slack[0].dm_messages(USER_ID)
    assert len(dms) == 1
    assert "segment was deleted" in dms[0]["text"]
    assert "*Renewals*" in dms[0]["text"]


def test_send_time_converts_local_to_utc() -> None:
    moment = send_time(day=date(2026, 7, 1), time_of_day=time(9, 30), timezone="Europe/Berlin")

    assert moment == datetime(2026, 7, 1, 7, 30, tzinfo=UTC)


def test_send_time_rejects_unknown_zone() -> None:
    with pytest.raises(UserFacingError):
        send_time(day=date(2026, 7, 1), time_of_day=time(9, 30), timezone="Mars/Olympus")


def _target(channel_id: str) -> DeliveryTarget:
    return DeliveryTarget(
        channel_id=channel_id,
        channel_name=f"customer-{channel_id.lower()}",
        is_private=False,
        companies=(QualifyingCompany(company_id=f"id-{channel_id}", company_name=channel_id),),
    )


async def _sent_yesterday(
    sessions: async_sessionmaker[AsyncSession], log: SqlDeliveryLog, channel_id: str
) -> None:
    record = await log.create_broadcast(
        NewBroadcast(
            team_id=TEAM_ID,
            segment_id=None,
            segment_name="Earlier",
            rules_text="",
            message_text="earlier",
            message_blocks=None,
            sent_by=USER_ID,
            targets=[_target(channel_id)],
        )
    )
    delivery = record.deliveries[0]
    await log.mark_sending(delivery.id)
    await log.mark_sent(delivery.id, ts="1.000001")
    async with sessions() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id)
            .values(updated_at=datetime.now(UTC) - timedelta(days=1))
        )


async def _save_cap(sessions: async_sessionmaker[AsyncSession], cap_days: int | None) -> None:
    await SqlSettingsStore(sessions).update(
        TEAM_ID,
        channel_field=None,
        channel_template="customer-{slug}",
        timezone="UTC",
        managers=(),
        user_id=USER_ID,
        frequency_cap_days=cap_days,
    )


async def test_frequency_cap_skips_recent_channel(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    log = SqlDeliveryLog(sessions)
    await _sent_yesterday(sessions, log, "C1")
    await _save_cap(sessions, 7)

    record = await log.create_broadcast(
        NewBroadcast(
            team_id=TEAM_ID,
            segment_id=None,
            segment_name="Now",
            rules_text="",
            message_text="now",
            message_blocks=None,
            sent_by=USER_ID,
            targets=[_target("C1"), _target("C2")],
        )
    )

    by_channel = {delivery.channel_id: delivery for delivery in record.deliveries}
    assert by_channel["C1"].status == DeliveryStatus.SKIPPED
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert by_channel["C1"].reason == (
        f"Received a broadcast on {yesterday}; the workspace's frequency cap is 7 days."
    )
    assert by_channel["C2"].status == DeliveryStatus.PENDING


async def test_frequency_cap_off_sends_to_recent_channel(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    log = SqlDeliveryLog(sessions)
    await _sent_yesterday(sessions, log, "C1")
    await _save_cap(sessions, None)

    started = await log.start_resolving(
        NewBroadcast(
            team_id=TEAM_ID,
            segment_id=None,
            segment_name="Now",
            rules_text="",
            message_text="now",
            message_blocks=None,
            sent_by=USER_ID,
            targets=(),
        ),
        rules=RULES,
    )
    record = await log.add_audience(started.id, rules_text="", targets=[_target("C1")], unmapped=())

    assert [delivery.status for delivery in record.deliveries] == [DeliveryStatus.PENDING]


async def test_frequency_cap_ignores_failed_deliveries(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    log = SqlDeliveryLog(sessions)
    earlier = await log.create_broadcast(
        NewBroadcast(
            team_id=TEAM_ID,
            segment_id=None,
            segment_name="Earlier",
            rules_text="",
            message_text="earlier",
            message_blocks=None,
            sent_by=USER_ID,
            targets=[_target("C1")],
        )
    )
    await log.mark_failed(earlier.deliveries[0].id, error="channel_not_found", reason="gone")
    await _save_cap(sessions, 7)

    record = await log.create_broadcast(
        NewBroadcast(
            team_id=TEAM_ID,
            segment_id=None,
            segment_name="Now",
            rules_text="",
            message_text="now",
            message_blocks=None,
            sent_by=USER_ID,
            targets=[_target("C1")],
        )
    )

    assert [delivery.status for delivery in record.deliveries] == [DeliveryStatus.PENDING]


async def test_latest_broadcasts_leave_out_scheduled(
    sessions: async_sessionmaker[AsyncSession], store: SqlScheduledBroadcasts, segment: SegmentRecord
) -> None:
    await schedule_broadcast(store, _new(segment, at=NOW + timedelta(hours=1)), now=NOW)

    latest = await SqlDeliveryLog(sessions).list_broadcasts(TEAM_ID)

    assert await store.list(team_id=TEAM_ID)
    assert list(latest) == []


async def test_frequency_capped_previews_the_skip(sessions: async_sessionmaker[AsyncSession]) -> None:
    log = SqlDeliveryLog(sessions)
    await _sent_yesterday(sessions, log, "C1")
    await _save_cap(sessions, 7)

    capped = await log.frequency_capped(team_id=TEAM_ID, channel_ids=["C1", "C2"])

    assert list(capped) == ["C1"]
    assert "frequency cap is 7 days" in capped["C1"]
