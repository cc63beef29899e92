"""After sending, over HTTP: the report DM's Cancel, Resend failed, Edit, Delete and Follow up."""

from __future__ import annotations

import uuid
from typing import Any

from handlers.views import reports as report_views
from handlers.views import send as send_views
from segments.broadcasts import REPORT_ACTIONS_BLOCK
from segments.permissions import NOT_ALLOWED
from segments.ports import BroadcastRecord, BroadcastStatus, DeliveryStatus
from segments.rules import rules_to_json
from segments.text import parse_rules
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID, SlackSimulator

AT_RISK = "Health Score less than 4"
TINY = "ARR greater than 200000"
SLOW_TIMEOUT = 30


def _rich_text(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


async def _send(world: World, rules_text: str, *, wait_for_report: bool = True) -> None:
    """Save a segment and send "Office hours moved" to it through the shortcut and the modals."""
    catalog = await world.services.resolver.catalog()
    segment = await world.services.segments.create(
        team_id=TEAM_ID,
        name=f"Segment {uuid.uuid4().hex[:6]}",
        rules=rules_to_json(parse_rules(rules_text, catalog)),
        user_id=ADMIN_ID,
    )
    await world.sim.interact(
        {
            "type": "shortcut",
            "callback_id": send_views.GLOBAL_SHORTCUT_CALLBACK,
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "user": SlackSimulator.user(ADMIN_ID),
        }
    )
    modal = await eventually(
        lambda: next(
            (
                view
                for view in world.slack.views.values()
                if view.get("callback_id") == send_views.SEND_CALLBACK
            ),
            None,
        )
    )
    values = {
        send_views.SEGMENT_BLOCK: {
            send_views.SEGMENT_ACTION: {"selected_option": {"value": str(segment.id)}}
        },
        send_views.MESSAGE_BLOCK: {
            send_views.MESSAGE_ACTION: {"rich_text_value": _rich_text("Office hours moved")}
        },
        send_views.TEST_BLOCK: {send_views.TEST_ACTION: {"selected_options": []}},
    }
    await _submit(world, modal, values)
    confirmation = await eventually(
        lambda: (
            world.slack.views[modal["id"]]
            if world.slack.views[modal["id"]]["callback_id"] == send_views.CONFIRM_CALLBACK
            else None
        ),
        timeout=SLOW_TIMEOUT,
    )
    await _submit(world, confirmation, {})
    if wait_for_report:
        await eventually(lambda: _report_buttons(world, "delivered to"), timeout=SLOW_TIMEOUT)


async def _submit(
    world: World, view: dict[str, Any], values: dict[str, Any], *, user_id: str = ADMIN_ID
) -> dict[str, Any] | None:
    response = await world.sim.interact(
        {
            "type": "view_submission",
            "user": SlackSimulator.user(user_id),
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "view": {**view, "state": {"values": values}, "app_installed_team_id": TEAM_ID},
        }
    )
    assert response.status == 200
    result: dict[str, Any] | None = response.json()
    return result


def _report(world: World) -> dict[str, Any] | None:
    """Return the sender's report DM: the message that carries report buttons."""
    for message in reversed(world.slack.dm_messages(ADMIN_ID)):
        if any(
            block.get("block_id") == REPORT_ACTIONS_BLOCK for block in message.get("blocks") or []
        ):
            return message
    return None


def _dm_containing(world: World, fragment: str) -> dict[str, Any] | None:
    """Return the sender's newest direct message whose text contains `fragment`."""
    for message in reversed(world.slack.dm_messages(ADMIN_ID)):
        if fragment in message.get("text", ""):
            return message
    return None


def _report_buttons(world: World, fragment: str) -> dict[str, dict[str, Any]] | None:
    """Return the report's buttons by action id once its text contains `fragment`."""
    report = _report(world)
    if report is None or fragment not in report["text"]:
        return None
    actions = next(
        block for block in report["blocks"] if block.get("block_id") == REPORT_ACTIONS_BLOCK
    )
    return {element["action_id"]: element for element in actions["elements"]}


async def _click(world: World, button: dict[str, Any], *, user_id: str = ADMIN_ID) -> None:
    response = await world.sim.interact(
        {
            "type": "block_actions",
            "user": SlackSimulator.user(user_id),
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "channel": {"id": "D" + user_id.removeprefix("U")},
            "container": {"type": "message", "channel_id": "D" + user_id.removeprefix("U")},
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": REPORT_ACTIONS_BLOCK,
                    "value": button["value"],
                    "action_ts": "1764835200.000100",
                }
            ],
        }
    )
    assert response.status == 200


def _action_modal(world: World) -> dict[str, Any] | None:
    return next(
        (
            view
            for view in world.slack.views.values()
            if view.get("callback_id") == report_views.ACTION_VIEW
        ),
        None,
    )


async def _latest(world: World) -> BroadcastRecord:
    broadcasts = await world.services.deliveries.list_broadcasts(TEAM_ID, limit=1)
    return broadcasts[0]


def _posted(record: BroadcastRecord) -> dict[str, str]:
    return {
        delivery.channel_id: delivery.ts
        for delivery in record.deliveries
        if delivery.status == DeliveryStatus.SENT and delivery.ts
    }


async def test_running_report_cancel_stops_pending_posts(world: World) -> None:
    world.slack.latency_seconds = 0.2
    await _send(world, AT_RISK, wait_for_report=False)
    buttons = await eventually(lambda: _report_buttons(world, "Sending"), timeout=SLOW_TIMEOUT)

    await _click(world, buttons[report_views.REPORT_CANCEL_ACTION])
    report = await eventually(lambda: _report_buttons(world, "Cancelled:"), timeout=SLOW_TIMEOUT)

    record = await _latest(world)
    statuses = [delivery.status for delivery in record.deliveries]
    assert record.status == BroadcastStatus.CANCELLED
    assert DeliveryStatus.CANCELLED in statuses
    assert DeliveryStatus.PENDING not in statuses
    assert DeliveryStatus.SENDING not in statuses
    for delivery in record.deliveries:
        expected = 1 if delivery.status == DeliveryStatus.SENT else 0
        assert len(world.slack.posts_in(delivery.channel_id)) == expected
    assert report_views.REPORT_CANCEL_ACTION not in report


async def test_resend_failed_posts_fixed_channel_once(world: World) -> None:
    await _send(world, AT_RISK)
    before = await _latest(world)
    failed = [
        delivery for delivery in before.deliveries if delivery.status == DeliveryStatus.FAILED
    ]
    assert len(failed) == 1
    channel = world.slack.channel(failed[0].channel_id)
    assert channel is not None
    channel["restricted"] = False
    buttons = _report_buttons(world, "delivered to")
    assert buttons is not None

    await _click(world, buttons[report_views.REPORT_RESEND_ACTION])
    total = len(before.deliveries)
    await eventually(
        lambda: _report_buttons(world, f"delivered to {total} of {total}"), timeout=SLOW_TIMEOUT
    )

    after = await _latest(world)
    assert after.status == BroadcastStatus.SENT
    for delivery in after.deliveries:
        assert len(world.slack.posts_in(delivery.channel_id)) == 1


async def test_edit_button_opens_modal_and_edits_everywhere(world: World) -> None:
    await _send(world, TINY)
    buttons = _report_buttons(world, "delivered to")
    assert buttons is not None

    await _click(world, buttons[report_views.REPORT_EDIT_ACTION])
    modal = await eventually(lambda: _action_modal(world))
    values = {
        report_views.TEXT_BLOCK: {
            report_views.TEXT_ACTION: {"rich_text_value": _rich_text("Office hours are back")}
        }
    }
    ack = await _submit(world, modal, values)
    await eventually(lambda: _report_buttons(world, "*Edit* by"), timeout=SLOW_TIMEOUT)
    await eventually(lambda: _report_buttons(world, "edited in"), timeout=SLOW_TIMEOUT)

    posted = _posted(await _latest(world))
    initial = modal["blocks"][1]["element"]["initial_value"]
    assert ack is None
    assert send_views.rich_text_to_mrkdwn(initial) == "Office hours moved"
    assert posted
    for channel_id in posted:
        messages = world.slack.posts_in(channel_id)
        assert len(messages) == 1
        assert messages[0]["text"] == "Office hours are back"
        assert "edited" in messages[0]


async def test_delete_asks_to_confirm_then_deletes(world: World) -> None:
    await _send(world, TINY)
    posted = _posted(await _latest(world))
    buttons = _report_buttons(world, "delivered to")
    assert buttons is not None

    await _click(world, buttons[report_views.REPORT_DELETE_ACTION])
    modal = await eventually(lambda: _action_modal(world))
    still_there = {channel_id: len(world.slack.posts_in(channel_id)) for channel_id in posted}
    await _submit(world, modal, {})
    report = await eventually(lambda: _dm_containing(world, "deleted in"), timeout=SLOW_TIMEOUT)

    assert modal["submit"]["text"] == "Delete"
    assert still_there == {channel_id: 1 for channel_id in posted}
    for channel_id in posted:
        assert world.slack.posts_in(channel_id) == []
    # Nothing is left to edit, delete, follow up or resend, so the report offers no buttons.
    assert all(block.get("block_id") != REPORT_ACTIONS_BLOCK for block in report.get("blocks") or [])


async def test_followup_replies_in_each_thread(world: World) -> None:
    await _send(world, TINY)
    posted = _posted(await _latest(world))
    buttons = _report_buttons(world, "delivered to")
    assert buttons is not None

    await _click(world, buttons[report_views.REPORT_FOLLOWUP_ACTION])
    modal = await eventually(lambda: _action_modal(world))
    values = {
        report_views.TEXT_BLOCK: {
            report_views.TEXT_ACTION: {"rich_text_value": _rich_text("Slides attached")}
        }
    }
    await _submit(world, modal, values)
    await eventually(lambda: _report_buttons(world, "posted in"), timeout=SLOW_TIMEOUT)

    for channel_id, ts in posted.items():
        replies = [
            message for message in world.slack.posts_in(channel_id) if message.get("thread_ts")
        ]
        assert len(replies) == 1
        assert replies[0]["thread_ts"] == ts
        assert replies[0]["text"] == "Slides attached"


async def test_member_without_permission_is_rejected(world: World) -> None:
    await _send(world, TINY)
    buttons = _report_buttons(world, "delivered to")
    assert buttons is not None

    await _click(world, buttons[report_views.REPORT_EDIT_ACTION], user_id=MEMBER_ID)
    refusal = await eventually(
        lambda: [
            message
            for message in world.slack.dm_messages(MEMBER_ID)
            if message["text"] == NOT_ALLOWED
        ]
    )

    assert len(refusal) == 1
    assert _action_modal(world) is None
    channel_edits = [
        call
        for call in world.slack.calls_to("chat.update")
        if not str(call.params.get("channel", "")).startswith("D")
    ]
    assert channel_edits == []


async def test_home_menu_opens_followup_modal(world: World) -> None:
    await _send(world, TINY)
    record = await _latest(world)

    response = await world.sim.interact(
        {
            "type": "block_actions",
            "user": SlackSimulator.user(ADMIN_ID),
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "container": {"type": "view", "view_id": "VHOME"},
            "actions": [
                {
                    "type": "overflow",
                    "action_id": report_views.HOME_BROADCAST_MENU_ACTION,
                    "block_id": f"home_broadcast:{record.id}",
                    "selected_option": {"value": f"followup:{record.id}"},
                    "action_ts": "1764835200.000100",
                }
            ],
        }
    )
    modal = await eventually(lambda: _action_modal(world))

    assert response.status == 200
    assert modal["title"]["text"] == "Post a follow-up"
    assert report_views.read_action_metadata(
        modal["private_metadata"]
    ) == report_views.ActionMetadata(broadcast_id=record.id, kind=report_views.ActionKind.FOLLOWUP)


async def test_resend_after_edit_posts_edited_text(world: World) -> None:
    await _send(world, AT_RISK)
    before = await _latest(world)
    failed = [delivery for delivery in before.deliveries if delivery.status == DeliveryStatus.FAILED]
    assert len(failed) == 1
    buttons = _report_buttons(world, "delivered to")
    assert buttons is not None
    await _click(world, buttons[report_views.REPORT_EDIT_ACTION])
    modal = await eventually(lambda: _action_modal(world))
    values = {
        report_views.TEXT_BLOCK: {
            report_views.TEXT_ACTION: {"rich_text_value": _rich_text("Edited for everyone")}
        }
    }
    await _submit(world, modal, values)
    await eventually(lambda: _report_buttons(world, "edited in"), timeout=SLOW_TIMEOUT)
    channel = world.slack.channel(failed[0].channel_id)
    assert channel is not None
    channel["restricted"] = False
    buttons = _report_buttons(world, "edited in")
    assert buttons is not None

    await _click(world, buttons[report_views.REPORT_RESEND_ACTION])
    total = len(before.deliveries)
    await eventually(lambda: _report_buttons(world, f"delivered to {total} of {total}"), timeout=SLOW_TIMEOUT)

    resent = world.slack.posts_in(failed[0].channel_id)
    assert len(resent) == 1
    assert "Edited for everyone" in resent[0]["text"]
