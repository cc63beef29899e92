"""Edit, delete and follow-up of a sent broadcast against the loopback Slack server and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from db.actions import SqlActionLog
from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.stores import SqlDeliveryLog
from loopback.slack_server import SlackState
from segments.errors import UserFacingError
from segments.followups import (
    FOLLOWUP_METADATA_EVENT_TYPE,
    ActionKind,
    ActionRefused,
    ActionRequest,
    ActionSender,
    ActionStatus,
    NewAction,
    TargetStatus,
    format_action_report,
    run_action,
)
from segments.pacing import Pacer
from segments.ports import DeliveryTarget, NewBroadcast, QualifyingCompany
from segments.properties import PropertyCatalog
from segments.sending import BroadcastSender
from tests.fakes import ManualClock, SlackStarter, slack_channel

TEAM = "T0TEAM"
SENDER = "U0SENDER"
CHANNELS = (("C0000000A1", "customer-acme", "Acme"), ("C0000000B2", "customer-globex", "Globex"))


def _rich_text(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


@dataclass
class Sent:
    """A broadcast posted to every channel of `CHANNELS`, with the stores and Slack behind it."""

    broadcast_id: int
    slack: SlackState
    client: AsyncWebClient
    deliveries: SqlDeliveryLog
    actions: SqlActionLog
    clock: ManualClock

    def sender(self) -> ActionSender:
        pacer = Pacer(channel_interval=0.0, clock=self.clock, sleep=self.clock.sleep)
        return ActionSender(
            client=self.client, log=self.actions, pacer=pacer, sleep=self.clock.sleep
        )

    async def run(self, kind: ActionKind, text: str = "") -> Any:
        # The loopback server allows one post per channel per second, so its clock moves on first.
        self.clock.advance(2.0)
        return await run_action(
            ActionRequest(
                team_id=TEAM,
                user_id=SENDER,
                broadcast_id=self.broadcast_id,
                kind=kind,
                text=text,
                blocks=[_rich_text(text)] if text else None,
            ),
            actions=self.actions,
            broadcasts=self.deliveries,
            poster=self.client,
            reader=self.client,
            catalog=PropertyCatalog.builtin(),
            pacer=Pacer(channel_interval=0.0, clock=self.clock, sleep=self.clock.sleep),
            sleep=self.clock.sleep,
        )

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return self.slack.posts_in(channel_id)


@pytest.fixture
async def sent(tmp_path: Path, start_slack: SlackStarter) -> AsyncIterator[Sent]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'followups.db'}")
    await upgrade_database(engine)
    sessions = create_session_factory(engine)
    clock = ManualClock()
    slack = SlackState(
        channels=[slack_channel(channel_id, name) for channel_id, name, _ in CHANNELS],
        bot_token="xoxb-test",
        clock=clock,
        scopes=("chat:write", "channels:history", "groups:history"),
    )
    client = await start_slack(slack)
    deliveries = SqlDeliveryLog(sessions)
    broadcast = NewBroadcast(
        team_id=TEAM,
        segment_id=None,
        segment_name="Renewals",
        rules_text="renewal date within 90 days",
        message_text="Hello {{company.name}}",
        message_blocks=[_rich_text("Hello {{company.name}}")],
        sent_by=SENDER,
        targets=[
            DeliveryTarget(
                channel_id=channel_id,
                channel_name=name,
                is_private=False,
                companies=[
                    QualifyingCompany(
                        company_id=f"id-{company}",
                        company_name=company,
                        variables={"company.name": company},
                    )
                ],
            )
            for channel_id, name, company in CHANNELS
        ],
    )
    record = await BroadcastSender(
        client=client, log=deliveries, sleep=clock.sleep, clock=clock
    ).send(broadcast)
    yield Sent(
        broadcast_id=record.id,
        slack=slack,
        client=client,
        deliveries=deliveries,
        actions=SqlActionLog(sessions),
        clock=clock,
    )
    await engine.dispose()


async def test_edit_updates_each_message_once(sent: Sent) -> None:
    finished = await sent.run(ActionKind.EDIT, "Moved to {{company.name}} HQ")

    assert finished.status == ActionStatus.DONE
    assert [target.status for target in finished.targets] == [TargetStatus.DONE] * 2
    assert len(sent.slack.calls_to("chat.update")) == 2 + _dm_updates(sent)
    for channel_id, _, company in CHANNELS:
        messages = sent.channel_messages(channel_id)
        assert len(messages) == 1
        assert messages[0]["text"] == f"Moved to {company} HQ"
        assert messages[0]["blocks"] == [_rich_text(f"Moved to {company} HQ")]
        assert "edited" in messages[0]


async def test_delete_removes_each_message(sent: Sent) -> None:
    finished = await sent.run(ActionKind.DELETE)

    assert finished.status == ActionStatus.DONE
    for channel_id, _, _ in CHANNELS:
        assert sent.channel_messages(channel_id) == []


async def test_followup_posts_one_reply_per_thread(sent: Sent) -> None:
    parents = {
        channel_id: sent.channel_messages(channel_id)[0]["ts"] for channel_id, _, _ in CHANNELS
    }

    finished = await sent.run(ActionKind.FOLLOWUP, "Reminder for {{company.name}}")

    assert finished.status == ActionStatus.DONE
    for channel_id, _, company in CHANNELS:
        replies = [
            message for message in sent.channel_messages(channel_id) if "thread_ts" in message
        ]
        assert len(replies) == 1
        assert replies[0]["thread_ts"] == parents[channel_id]
        assert replies[0]["text"] == f"Reminder for {company}"
        assert replies[0]["metadata"]["event_type"] == FOLLOWUP_METADATA_EVENT_TYPE
    assert {target.reply_ts for target in finished.targets} == {
        message["ts"]
        for channel_id, _, _ in CHANNELS
        for message in sent.channel_messages(channel_id)
        if "thread_ts" in message
    }


async def test_edit_of_hand_deleted_message_fails_with_reason(sent: Sent) -> None:
    gone_channel = CHANNELS[0][0]
    sent.slack.messages[gone_channel].clear()

    finished = await sent.run(ActionKind.EDIT, "New text")

    by_channel = {target.channel_id: target for target in finished.targets}
    assert finished.status == ActionStatus.PARTIALLY_DONE
    assert by_channel[gone_channel].status == TargetStatus.FAILED
    assert by_channel[gone_channel].error == "message_not_found"
    assert by_channel[gone_channel].reason is not None
    assert "#customer-acme" in by_channel[gone_channel].reason
    assert by_channel[CHANNELS[1][0]].status == TargetStatus.DONE
    assert "Message deleted in Slack (1): #customer-acme" in format_action_report(finished)


async def test_cant_update_message_is_permanent_failure(sent: Sent) -> None:
    sent.slack.fail_next["chat.update"] = [(200, "cant_update_message")]

    finished = await sent.run(ActionKind.EDIT, "New text")

    failed = [target for target in finished.targets if target.status == TargetStatus.FAILED]
    assert [target.error for target in failed] == ["cant_update_message"]
    assert (
        len(
            [
                call
                for call in sent.slack.calls_to("chat.update")
                if call.params.get("channel") == failed[0].channel_id
            ]
        )
        == 1
    )


async def test_resumed_followup_does_not_post_twice(sent: Sent) -> None:
    # A crash after the reply was posted and before its result was stored leaves it `sending`.
    action = await sent.actions.create_action(
        NewAction(
            broadcast_id=sent.broadcast_id,
            kind=ActionKind.FOLLOWUP,
            text="Reminder",
            blocks=None,
            requested_by=SENDER,
        )
    )
    crashed = action.targets[0]
    await sent.actions.claim_target(crashed.id)
    sent.clock.advance(2.0)
    await sent.client.chat_postMessage(
        channel=crashed.channel_id,
        thread_ts=crashed.message_ts,
        text="Reminder",
        metadata={
            "event_type": FOLLOWUP_METADATA_EVENT_TYPE,
            "event_payload": {"action_id": action.id, "delivery_id": crashed.delivery_id},
        },
    )
    stored = await sent.actions.get_action(action.id)
    assert stored is not None

    finished = await sent.sender().run(stored)

    for channel_id, _, _ in CHANNELS:
        replies = [
            message for message in sent.channel_messages(channel_id) if "thread_ts" in message
        ]
        assert len(replies) == 1
    assert finished.status == ActionStatus.DONE


async def test_action_after_delete_is_rejected(sent: Sent) -> None:
    await sent.run(ActionKind.DELETE)

    with pytest.raises(ActionRefused):
        await sent.run(ActionKind.EDIT, "Too late")


async def test_variable_without_stored_value_rejected(sent: Sent) -> None:
    with pytest.raises(UserFacingError) as raised:
        await sent.run(ActionKind.FOLLOWUP, "Your ARR is {{arr}}")

    assert "{{arr}}" in str(raised.value)
    assert await sent.actions.list_actions(sent.broadcast_id) == ()


async def test_report_dm_gets_action_line(sent: Sent) -> None:
    await sent.run(ActionKind.EDIT, "New text")

    dm = sent.slack.dm_messages(SENDER)
    assert dm
    assert "*Edit* by <@U0SENDER>: edited in 2 of 2 channels." in dm[-1]["text"]


def _dm_updates(sent: Sent) -> int:
    dm_channel = "D" + SENDER.removeprefix("U")
    return len(
        [
            call
            for call in sent.slack.calls_to("chat.update")
            if call.params.get("channel") == dm_channel
        ]
    )
