"""A follow-up left running by a stopped process is finished once when serve starts again."""

from __future__ import annotations

from bot.server import resume_unfinished_actions
from db.actions import SqlActionLog
from db.engine import create_session_factory
from loopback.stack import Stack
from segments.followups import ActionKind, NewAction
from segments.ports import DeliveryStatus, DeliveryTarget, NewBroadcast, QualifyingCompany
from segments.sending import BroadcastSender
from tests.scenario.helpers import eventually


async def test_running_followup_is_continued_at_start(world: Stack) -> None:
    reachable = [
        channel
        for channel in world.sample.channels
        if channel["is_member"] and not channel["is_private"] and not channel["is_archived"]
        and not channel["restricted"]
    ][:2]
    record = await world.services.deliveries.create_broadcast(
        NewBroadcast(
            team_id="T0SEGMENT",
            segment_id=None,
            segment_name="Renewals",
            rules_text="Renewal Date within 60 days",
            message_text="Renewal check-in",
            message_blocks=None,
            sent_by="U0ADMIN",
            targets=[
                DeliveryTarget(
                    channel_id=channel["id"],
                    channel_name=channel["name"],
                    is_private=False,
                    companies=[QualifyingCompany(company_id=channel["id"], company_name=channel["name"])],
                )
                for channel in reachable
            ],
        )
    )
    sent = await BroadcastSender(client=world.services.poster, log=world.services.deliveries).deliver(
        record, message_text="Renewal check-in", message_blocks=None
    )
    actions = SqlActionLog(create_session_factory(world.services.engine))
    await actions.create_action(
        NewAction(
            broadcast_id=record.id, kind=ActionKind.FOLLOWUP, text="Reminder", blocks=None, requested_by="U0ADMIN"
        )
    )

    resumed = await resume_unfinished_actions(world.services)
    await eventually(lambda: all(len(world.slack.posts_in(c["id"])) == 2 for c in reachable), timeout=10)
    await world.services.tasks.drain(timeout=10)

    assert [delivery.status for delivery in sent.deliveries] == [DeliveryStatus.SENT] * len(reachable)
    assert resumed == 1
    for channel in reachable:
        original, reply = world.slack.posts_in(channel["id"])
        assert reply["text"] == "Reminder"
        assert reply["thread_ts"] == original["ts"]
    assert len(await actions.list_unfinished_actions()) == 0
