"""A scheduled broadcast survives a restart: new services on the same database send it once."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.server import build_scheduler
from db.scheduled import NewScheduledBroadcast
from loopback.slack_requests import ADMIN_ID
from loopback.stack import start_stack
from segments.ports import BroadcastStatus, DeliveryStatus
from segments.rules import rules_to_json
from segments.text import parse_rules
from tests.scenario.conftest import TODAY
from tests.scenario.helpers import eventually

TEAM_ID = "T0SEGMENT"


async def test_scheduled_broadcast_sends_once_after_restart(tmp_path: Path) -> None:
    database = tmp_path / "restart.db"
    first = await start_stack(database_path=database, today=TODAY)
    send_at = datetime.now(UTC) + timedelta(hours=1)
    try:
        catalog = await first.services.resolver.catalog()
        segment = await first.services.segments.create(
            team_id=TEAM_ID,
            name="Big accounts",
            rules=rules_to_json(parse_rules("ARR greater than 100000", catalog)),
            user_id=ADMIN_ID,
        )
        scheduled = await first.services.scheduled.schedule(
            NewScheduledBroadcast(
                team_id=TEAM_ID,
                segment_id=segment.id,
                segment_name=segment.name,
                message_text="Quarterly update",
                message_blocks=None,
                sent_by=ADMIN_ID,
                scheduled_at=send_at,
                timezone="UTC",
                confirmed_channel_ids=frozenset(),
            )
        )
    finally:
        await first.stop()

    second = await start_stack(database_path=database, today=TODAY)
    try:
        schedulers = [
            build_scheduler(second.services, clock=lambda: send_at + timedelta(minutes=1))
            for _ in range(2)
        ]
        loops = [asyncio.create_task(scheduler.run_forever()) for scheduler in schedulers]

        async def finished() -> bool:
            record = await second.services.deliveries.get_broadcast(scheduled.id)
            return record is not None and record.status not in (
                BroadcastStatus.SCHEDULED,
                BroadcastStatus.RESOLVING,
                BroadcastStatus.SENDING,
            )

        for _ in range(300):
            if await finished():
                break
            await asyncio.sleep(0.1)
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        record = await second.services.deliveries.get_broadcast(scheduled.id)
        await eventually(lambda: second.slack.dm_messages(ADMIN_ID), timeout=5)
    finally:
        await second.stop()

    assert record is not None
    assert record.status in (BroadcastStatus.SENT, BroadcastStatus.PARTIALLY_SENT)
    sent = [delivery for delivery in record.deliveries if delivery.status == DeliveryStatus.SENT]
    assert sent
    for delivery in sent:
        posts = second.slack.posts_in(delivery.channel_id)
        assert [post["text"] for post in posts] == ["Quarterly update"]
