"""Delivering a stored broadcast again after a crash, a cancel or a resend, exactly once per channel.

Each test leaves a broadcast in the SQLite delivery log as a crash at one point would, then runs
`BroadcastSender.deliver` as `segment-bot serve` does on start, against the loopback Slack server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.stores import SqlDeliveryLog
from loopback.slack_server import DEFAULT_BOT_SCOPES, SlackState
from segments.ports import (
    BroadcastRecord,
    BroadcastStatus,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
    QualifyingCompany,
)
from segments.sending import METADATA_EVENT_TYPE, BroadcastSender
from tests.fakes import ManualClock, SlackStarter, slack_channel

TOKEN = "xoxb-resume"
HISTORY_SCOPES = (*DEFAULT_BOT_SCOPES, "channels:history", "groups:history")
TEXT = "Office hours on Thursday"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[SqlDeliveryLog]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'resume.db'}")
    await upgrade_database(engine)
    yield SqlDeliveryLog(create_session_factory(engine))
    await engine.dispose()


def _channels() -> list[dict[str, Any]]:
    return [
        slack_channel("C0ACME001", "customer-acme"),
        slack_channel("G0GLOBEX1", "customer-globex", is_private=True),
    ]


def _broadcast(channels: list[dict[str, Any]]) -> NewBroadcast:
    return NewBroadcast(
        team_id="T0SEGMENT",
        segment_id=None,
        segment_name="Onboarding",
        rules_text="all",
        message_text=TEXT,
        message_blocks=None,
        sent_by="U0SENDER",
        targets=[
            DeliveryTarget(
                channel_id=channel["id"],
                channel_name=channel["name"],
                is_private=bool(channel["is_private"]),
                companies=[QualifyingCompany(company_id=channel["id"], company_name=channel["name"])],
            )
            for channel in channels
        ],
    )


async def _resume(
    client: AsyncWebClient, log: SqlDeliveryLog, clock: ManualClock, broadcast_id: int
) -> BroadcastRecord:
    stored = await log.get_broadcast(broadcast_id)
    assert stored is not None
    sender = BroadcastSender(client=client, log=log, sleep=clock.sleep, clock=clock)
    return await sender.deliver(stored, message_text=TEXT, message_blocks=None)


async def _post_with_metadata(
    client: AsyncWebClient, *, channel_id: str, broadcast_id: int, delivery_id: int
) -> str:
    # What the crashed process posted before it could store the result.
    response = await client.chat_postMessage(
        channel=channel_id,
        text=TEXT,
        metadata={
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"broadcast_id": broadcast_id, "delivery_id": delivery_id},
        },
    )
    return str(response["ts"])


def _statuses(record: BroadcastRecord) -> dict[str, DeliveryStatus]:
    return {delivery.channel_id: delivery.status for delivery in record.deliveries}


async def test_crash_before_post_posts_once_on_resume(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    await log.mark_sending(record.deliveries[0].id)

    finished = await _resume(client, log, clock, record.id)

    assert len(state.posts_in("C0ACME001")) == 1
    assert len(state.posts_in("G0GLOBEX1")) == 1
    assert len(state.calls_to("conversations.history")) == 1
    assert finished.status == BroadcastStatus.SENT


async def test_crash_before_join_posts_once_on_resume(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0INITECH", "customer-initech", is_member=False)]
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    await log.mark_sending(record.deliveries[0].id)

    finished = await _resume(client, log, clock, record.id)

    assert len(state.posts_in("C0INITECH")) == 1
    assert len(state.calls_to("conversations.join")) == 1
    assert finished.deliveries[0].status == DeliveryStatus.SENT


async def test_crash_after_post_is_found_not_reposted(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    acme = record.deliveries[0]
    await log.mark_sending(acme.id)
    ts = await _post_with_metadata(
        client, channel_id="C0ACME001", broadcast_id=record.id, delivery_id=acme.id
    )

    finished = await _resume(client, log, clock, record.id)

    assert len(state.posts_in("C0ACME001")) == 1
    assert finished.deliveries[0].status == DeliveryStatus.SENT
    assert finished.deliveries[0].ts == ts
    assert len(state.posts_in("G0GLOBEX1")) == 1


async def test_crash_after_post_finds_post_of_private_channel(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    globex = record.deliveries[1]
    await log.mark_sending(globex.id)
    await _post_with_metadata(
        client, channel_id="G0GLOBEX1", broadcast_id=record.id, delivery_id=globex.id
    )

    finished = await _resume(client, log, clock, record.id)

    assert len(state.posts_in("G0GLOBEX1")) == 1
    assert _statuses(finished)["G0GLOBEX1"] == DeliveryStatus.SENT


async def test_other_delivery_metadata_does_not_count(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    acme = record.deliveries[0]
    await log.mark_sending(acme.id)
    # An earlier broadcast's message in the same channel must not be taken for this one.
    await _post_with_metadata(
        client, channel_id="C0ACME001", broadcast_id=record.id + 100, delivery_id=acme.id
    )

    finished = await _resume(client, log, clock, record.id)

    assert len(state.posts_in("C0ACME001")) == 2
    assert _statuses(finished)["C0ACME001"] == DeliveryStatus.SENT


async def test_crash_without_history_scope_is_unconfirmed(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    await log.mark_sending(record.deliveries[0].id)

    finished = await _resume(client, log, clock, record.id)

    assert state.posts_in("C0ACME001") == []
    assert state.calls_to("conversations.history") == []
    assert _statuses(finished) == {
        "C0ACME001": DeliveryStatus.UNCONFIRMED,
        "G0GLOBEX1": DeliveryStatus.SENT,
    }
    assert finished.status == BroadcastStatus.PARTIALLY_SENT


async def test_cancelled_broadcast_posts_nothing_more(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    await log.cancel_broadcast(record.id, user_id="U0SENDER")

    finished = await _resume(client, log, clock, record.id)

    assert state.calls_to("chat.postMessage") == []
    assert finished.status == BroadcastStatus.CANCELLED
    assert set(_statuses(finished).values()) == {DeliveryStatus.CANCELLED}


async def test_resend_posts_only_failed_deliveries_once(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    channels[0]["is_archived"] = True
    state = SlackState(channels=channels, bot_token=TOKEN, scopes=HISTORY_SCOPES, clock=clock)
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))
    first = await _resume(client, log, clock, record.id)
    channels[0]["is_archived"] = False
    await log.reopen_failed(record.id, user_id="U0SENDER")

    second = await _resume(client, log, clock, record.id)

    assert _statuses(first)["C0ACME001"] == DeliveryStatus.FAILED
    assert second.status == BroadcastStatus.SENT
    assert len(state.posts_in("C0ACME001")) == 1
    assert len(state.posts_in("G0GLOBEX1")) == 1


async def test_server_error_with_stored_post_is_found(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(
        channels=channels,
        bot_token=TOKEN,
        scopes=HISTORY_SCOPES,
        clock=clock,
        fail_next={"chat.postMessage": [(500, "internal_error")]},
        store_post_on_server_error=True,
    )
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))

    finished = await _resume(client, log, clock, record.id)

    acme = finished.deliveries[0]
    assert len(state.posts_in("C0ACME001")) == 1
    assert acme.status == DeliveryStatus.SENT
    assert acme.ts == state.posts_in("C0ACME001")[0]["ts"]
    assert acme.attempts == 1


async def test_server_error_without_post_is_reposted_once(
    start_slack: SlackStarter, log: SqlDeliveryLog, clock: ManualClock
) -> None:
    channels = _channels()
    state = SlackState(
        channels=channels,
        bot_token=TOKEN,
        scopes=HISTORY_SCOPES,
        clock=clock,
        fail_next={"chat.postMessage": [(500, "internal_error")]},
    )
    client = await start_slack(state)
    record = await log.create_broadcast(_broadcast(channels))

    finished = await _resume(client, log, clock, record.id)

    acme = finished.deliveries[0]
    assert len(state.posts_in("C0ACME001")) == 1
    assert acme.status == DeliveryStatus.SENT
    assert acme.attempts == 2
    assert len(state.calls_to("conversations.history")) == 1
