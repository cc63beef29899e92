"""Scheduled broadcasts over HTTP: "Send later" in the send modal, App Home edit and cancel, sending."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.server import build_scheduler
from db.scheduled import ScheduledBroadcast
from handlers.home import NO_LONGER_SCHEDULED
from handlers.views import send as views
from handlers.views.home import (
    SCHEDULED_CANCEL_ACTION,
    SCHEDULED_CANCEL_VIEW,
    SCHEDULED_EDIT_ACTION,
    SCHEDULED_EDIT_VIEW,
)
from segments.permissions import NOT_ALLOWED
from segments.ports import BroadcastStatus, DeliveryStatus
from segments.rules import rules_from_json, rules_to_json
from segments.text import parse_rules
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID, SlackSimulator

ZONE = "Europe/Berlin"
SLOW_TIMEOUT = 20
# A segment of a few big accounts, so that sending stays quick.
BIG_ACCOUNTS = "ARR greater than 200000"


def _rich_text(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


def _in_days(days: int) -> date:
    """Return the date `days` from today in `ZONE`, by the real clock the app checks against."""
    return (datetime.now(UTC).astimezone(ZoneInfo(ZONE)) + timedelta(days=days)).date()


async def _save_segment(world: World, name: str = "Big accounts") -> int:
    catalog = await world.services.resolver.catalog()
    record = await world.services.segments.create(
        team_id=TEAM_ID,
        name=name,
        rules=rules_to_json(parse_rules(BIG_ACCOUNTS, catalog)),
        user_id=ADMIN_ID,
    )
    return record.id


async def _reachable_channels(world: World, segment_id: int) -> set[str]:
    """Return the channels of the segment's audience right now that accept posts."""
    segment = await world.services.segments.get(segment_id)
    assert segment is not None
    mapping, timezone = await world.services.mapping_for(TEAM_ID)
    audience = await world.services.resolver.resolve(
        rules_from_json(segment.rules), fresh=True, mapping=mapping, timezone=timezone
    )
    return {
        target.channel_id
        for target in audience.targets
        if not (world.slack.channel(target.channel_id) or {}).get("restricted")
    }


def _views_with(world: World, callback_id: str) -> list[dict[str, Any]]:
    return [view for view in world.slack.views.values() if view.get("callback_id") == callback_id]


async def _open_send_modal(world: World) -> dict[str, Any]:
    ack = await world.sim.interact(
        {
            "type": "shortcut",
            "callback_id": views.GLOBAL_SHORTCUT_CALLBACK,
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "action_ts": "1764835200.000100",
            "user": SlackSimulator.user(ADMIN_ID),
        }
    )
    assert ack.status == 200
    opened = await eventually(lambda: _views_with(world, views.SEND_CALLBACK))
    return opened[-1]


def _schedule_values(day: date | None, time_of_day: str | None, zone: str) -> dict[str, Any]:
    return {
        views.WHEN_BLOCK: {
            views.WHEN_ACTION: {"type": "radio_buttons", "selected_option": {"value": views.SEND_LATER}}
        },
        views.DATE_BLOCK: {
            views.DATE_ACTION: {
                "type": "datepicker",
                "selected_date": None if day is None else day.isoformat(),
            }
        },
        views.TIME_BLOCK: {views.TIME_ACTION: {"type": "timepicker", "selected_time": time_of_day}},
        views.ZONE_BLOCK: {
            views.ZONE_ACTION: {"type": "static_select", "selected_option": {"value": zone}}
        },
    }


def _send_values(
    segment_id: int, text: str, *, day: date | None, time_of_day: str | None, zone: str = ZONE
) -> dict[str, Any]:
    return {
        views.SEGMENT_BLOCK: {
            views.SEGMENT_ACTION: {"type": "static_select", "selected_option": {"value": str(segment_id)}}
        },
        views.MESSAGE_BLOCK: {
            views.MESSAGE_ACTION: {"type": "rich_text_input", "rich_text_value": _rich_text(text)}
        },
        views.TEST_BLOCK: {views.TEST_ACTION: {"type": "checkboxes", "selected_options": []}},
        **_schedule_values(day, time_of_day, zone),
    }


async def _submit(
    world: World, view: dict[str, Any], values: dict[str, Any], *, user_id: str = ADMIN_ID
) -> dict[str, Any] | None:
    """Submit `view` with `values` as Slack does and return the ack's JSON body, if any."""
    response = await world.sim.interact(
        {
            "type": "view_submission",
            "user": SlackSimulator.user(user_id),
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "view": {
                "id": view["id"],
                "type": "modal",
                "callback_id": view["callback_id"],
                "private_metadata": view.get("private_metadata", ""),
                "hash": view.get("hash", ""),
                "app_installed_team_id": TEAM_ID,
                "state": {"values": values},
            },
        }
    )
    assert response.status == 200
    result: dict[str, Any] | None = response.json()
    return result


async def _confirmation(world: World, view_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: (
            world.slack.views[view_id]
            if world.slack.views[view_id]["callback_id"] == views.CONFIRM_CALLBACK
            and "submit" in world.slack.views[view_id]
            else None
        ),
        timeout=SLOW_TIMEOUT,
    )


async def _scheduled_rows(world: World) -> Sequence[ScheduledBroadcast]:
    return await world.services.scheduled.list(team_id=TEAM_ID)


async def _schedule_through_modal(
    world: World, segment_id: int, *, day: date, time_of_day: str, text: str = "Quarterly update"
) -> tuple[ScheduledBroadcast, dict[str, Any]]:
    """Send later through the modal and its confirmation, and return the stored row and confirmation."""
    view = await _open_send_modal(world)
    values = _send_values(segment_id, text, day=day, time_of_day=time_of_day)
    await _submit(world, view, values)
    confirmation = await _confirmation(world, view["id"])
    ack = await _submit(world, confirmation, {})
    assert ack is None
    await eventually(lambda: _dm_containing(world, "Scheduled:"), timeout=SLOW_TIMEOUT)
    rows = await _scheduled_rows(world)
    assert len(rows) == 1
    return rows[0], confirmation


def _channel_posts(world: World) -> dict[str, int]:
    """Count posts per channel, direct messages left out."""
    return {
        channel_id: len(messages)
        for channel_id, messages in world.slack.messages.items()
        if not channel_id.startswith("D") and messages
    }


def _dm_containing(world: World, fragment: str, user_id: str = ADMIN_ID) -> str | None:
    for message in reversed(world.slack.dm_messages(user_id)):
        if fragment in str(message.get("text") or ""):
            return str(message["text"])
    return None


async def _open_home(world: World, user_id: str = ADMIN_ID) -> dict[str, Any]:
    world.slack.home_views.pop(user_id, None)
    body = {
        "token": "legacy",
        "team_id": TEAM_ID,
        "api_app_id": "A0SEGMENT",
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "event": {
            "type": "app_home_opened",
            "user": user_id,
            "channel": "D" + user_id.removeprefix("U"),
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
        },
    }
    response = await world.sim.post(json.dumps(body))
    assert response.status == 200
    return await eventually(lambda: world.slack.home_views.get(user_id))


async def _click(world: World, action_id: str, *, value: str, user_id: str = ADMIN_ID) -> None:
    response = await world.sim.interact(
        {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
            "container": {"type": "view", "view_id": "VHOME"},
            "view": {"id": "VHOME", "type": "home", "app_installed_team_id": TEAM_ID},
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": "1.2",
                }
            ],
        }
    )
    assert response.status == 200


def _home_buttons(home: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        element
        for block in home["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


# Send later from the send modal


async def test_send_later_stores_and_posts_nothing(world: World) -> None:
    segment_id = await _save_segment(world)
    woken: list[bool] = []
    world.services.wake_scheduler = lambda: woken.append(True)
    day = _in_days(2)

    scheduled, confirmation = await _schedule_through_modal(
        world, segment_id, day=day, time_of_day="09:30"
    )

    confirmation_text = json.dumps(confirmation["blocks"])
    expected_at = datetime(day.year, day.month, day.day, 9, 30, tzinfo=ZoneInfo(ZONE))
    assert "Scheduled for" in confirmation_text
    assert f"09:30 ({ZONE})" in confirmation_text
    assert "resolved again when it sends" in confirmation_text
    assert confirmation["submit"]["text"] == views.SCHEDULE_SUBMIT
    assert scheduled.scheduled_at == expected_at.astimezone(UTC)
    assert scheduled.timezone == ZONE
    assert scheduled.segment_id == segment_id
    assert scheduled.message_text == "Quarterly update"
    assert scheduled.confirmed_channel_ids
    assert f"<#{sorted(scheduled.confirmed_channel_ids)[0]}>" in confirmation_text
    assert _channel_posts(world) == {}
    assert woken == [True]
    dm = _dm_containing(world, "Scheduled:")
    assert dm is not None
    assert f"09:30 ({ZONE})" in dm


async def test_send_later_in_past_is_rejected_inline(world: World) -> None:
    segment_id = await _save_segment(world)
    view = await _open_send_modal(world)

    ack = await _submit(
        world, view, _send_values(segment_id, "Too late", day=_in_days(-1), time_of_day="09:30")
    )

    assert ack is not None
    assert ack["response_action"] == "errors"
    assert "already passed" in ack["errors"][views.DATE_BLOCK]
    assert await _scheduled_rows(world) == ()
    assert _channel_posts(world) == {}


async def test_send_later_missing_fields_rejected(world: World) -> None:
    segment_id = await _save_segment(world)
    view = await _open_send_modal(world)

    ack = await _submit(
        world,
        view,
        _send_values(segment_id, "Hi", day=_in_days(1), time_of_day=None, zone="Mars/Base"),
    )

    assert ack is not None
    assert ack["response_action"] == "errors"
    assert set(ack["errors"]) == {views.TIME_BLOCK, views.ZONE_BLOCK}
    assert await _scheduled_rows(world) == ()


async def test_send_modal_opens_with_workspace_zone(world: World) -> None:
    await _save_segment(world)
    saved = await world.services.settings_for(TEAM_ID)

    view = await _open_send_modal(world)

    zone = next(block for block in view["blocks"] if block.get("block_id") == views.ZONE_BLOCK)
    assert zone["element"]["initial_option"]["value"] == saved.timezone


# App Home: list, edit, cancel


async def test_home_lists_scheduled_broadcast(world: World) -> None:
    segment_id = await _save_segment(world)
    scheduled, _ = await _schedule_through_modal(
        world, segment_id, day=_in_days(3), time_of_day="14:15", text="Renewal <!channel> call"
    )

    home = await _open_home(world)

    text = json.dumps(home["blocks"])
    assert "Scheduled" in text
    assert f"14:15 ({ZONE})" in text
    assert f"scheduled by <@{ADMIN_ID}>" in text
    assert "<!channel>" not in text
    buttons = {(button["action_id"], button["value"]) for button in _home_buttons(home)}
    assert (SCHEDULED_EDIT_ACTION, str(scheduled.id)) in buttons
    assert (SCHEDULED_CANCEL_ACTION, str(scheduled.id)) in buttons


async def test_edit_from_home_changes_time_and_message(world: World) -> None:
    segment_id = await _save_segment(world)
    scheduled, _ = await _schedule_through_modal(
        world, segment_id, day=_in_days(2), time_of_day="09:30"
    )
    new_day = _in_days(5)

    await _click(world, SCHEDULED_EDIT_ACTION, value=str(scheduled.id))
    modal = (await eventually(lambda: _views_with(world, SCHEDULED_EDIT_VIEW)))[-1]
    values = {
        **_schedule_values(new_day, "16:00", "Asia/Tokyo"),
        views.MESSAGE_BLOCK: {
            views.MESSAGE_ACTION: {"type": "rich_text_input", "rich_text_value": _rich_text("Moved")}
        },
    }
    world.slack.home_views.pop(ADMIN_ID, None)
    ack = await _submit(world, modal, values)
    # Home is published again after the edit is stored.
    home = await eventually(lambda: world.slack.home_views.get(ADMIN_ID), timeout=SLOW_TIMEOUT)

    row = await world.services.scheduled.get(scheduled.id)
    expected = datetime(
        new_day.year, new_day.month, new_day.day, 16, 0, tzinfo=ZoneInfo("Asia/Tokyo")
    )
    assert ack is None
    assert row is not None
    assert row.scheduled_at == expected.astimezone(UTC)
    assert row.timezone == "Asia/Tokyo"
    assert row.message_text == "Moved"
    assert "16:00 (Asia/Tokyo)" in json.dumps(home["blocks"])


async def test_edit_to_past_time_is_rejected_inline(world: World) -> None:
    segment_id = await _save_segment(world)
    scheduled, _ = await _schedule_through_modal(
        world, segment_id, day=_in_days(2), time_of_day="09:30"
    )
    await _click(world, SCHEDULED_EDIT_ACTION, value=str(scheduled.id))
    modal = (await eventually(lambda: _views_with(world, SCHEDULED_EDIT_VIEW)))[-1]
    values = {
        **_schedule_values(_in_days(-2), "09:30", ZONE),
        views.MESSAGE_BLOCK: {
            views.MESSAGE_ACTION: {"type": "rich_text_input", "rich_text_value": _rich_text("Hi")}
        },
    }

    ack = await _submit(world, modal, values)

    assert ack is not None
    assert ack["response_action"] == "errors"
    assert views.DATE_BLOCK in ack["errors"]
    row = await world.services.scheduled.get(scheduled.id)
    assert row is not None
    assert row.scheduled_at == scheduled.scheduled_at


async def test_cancel_from_home_cancels_and_republishes(world: World) -> None:
    segment_id = await _save_segment(world)
    scheduled, _ = await _schedule_through_modal(
        world, segment_id, day=_in_days(2), time_of_day="09:30"
    )
    await _open_home(world)

    await _click(world, SCHEDULED_CANCEL_ACTION, value=str(scheduled.id))
    modal = (await eventually(lambda: _views_with(world, SCHEDULED_CANCEL_VIEW)))[-1]
    world.slack.home_views.pop(ADMIN_ID, None)
    ack = await _submit(world, modal, {})
    home = await eventually(lambda: world.slack.home_views.get(ADMIN_ID))

    record = await world.services.deliveries.get_broadcast(scheduled.id)
    assert ack is None
    assert record is not None
    assert record.status == BroadcastStatus.CANCELLED
    assert await _scheduled_rows(world) == ()
    assert SCHEDULED_CANCEL_ACTION not in json.dumps(home["blocks"])
    ran = await build_scheduler(
        world.services, clock=lambda: scheduled.scheduled_at + timedelta(minutes=1)
    ).run_once()
    assert ran == []
    assert _channel_posts(world) == {}


async def test_member_cannot_cancel_from_home(world: World) -> None:
    segment_id = await _save_segment(world)
    scheduled, _ = await _schedule_through_modal(
        world, segment_id, day=_in_days(2), time_of_day="09:30"
    )

    await _click(world, SCHEDULED_CANCEL_ACTION, value=str(scheduled.id), user_id=MEMBER_ID)
    refusal = await eventually(lambda: _dm_containing(world, NOT_ALLOWED, MEMBER_ID))

    assert refusal == NOT_ALLOWED
    assert _views_with(world, SCHEDULED_CANCEL_VIEW) == []
    assert await world.services.scheduled.get(scheduled.id) is not None


async def test_cancel_of_unknown_broadcast_says_so(world: World) -> None:
    await _click(world, SCHEDULED_CANCEL_ACTION, value="999999")

    message = await eventually(lambda: _dm_containing(world, "no longer scheduled"))

    assert message == NO_LONGER_SCHEDULED
    assert _views_with(world, SCHEDULED_CANCEL_VIEW) == []


# Sending at the scheduled time


async def test_scheduler_sends_with_fresh_audience_once(world: World) -> None:
    segment_id = await _save_segment(world)
    scheduled, _ = await _schedule_through_modal(
        world, segment_id, day=_in_days(1), time_of_day="08:00"
    )
    # One company of today's audience leaves Planhat before the send time.
    confirmed = sorted(scheduled.confirmed_channel_ids)
    segment = await world.services.segments.get(segment_id)
    assert segment is not None
    mapping, timezone = await world.services.mapping_for(TEAM_ID)
    audience = await world.services.resolver.resolve(
        rules_from_json(segment.rules), fresh=True, mapping=mapping, timezone=timezone
    )
    leaving = next(target for target in audience.targets if len(target.companies) == 1)
    world.planhat.companies[:] = [
        company
        for company in world.planhat.companies
        if company["_id"] != leaving.companies[0].company_id
    ]
    reachable = await _reachable_channels(world, segment_id)
    scheduler = build_scheduler(
        world.services, clock=lambda: scheduled.scheduled_at + timedelta(seconds=1)
    )

    claimed = await scheduler.run_once()
    claimed_again = await scheduler.run_once()
    report = await eventually(lambda: _dm_containing(world, "delivered to"), timeout=SLOW_TIMEOUT)

    record = await world.services.deliveries.get_broadcast(scheduled.id)
    assert claimed == [scheduled.id]
    assert claimed_again == []
    assert leaving.channel_id in confirmed
    assert leaving.channel_id not in reachable
    assert _channel_posts(world) == {channel_id: 1 for channel_id in reachable}
    for channel_id in reachable:
        assert [post["text"] for post in world.slack.posts_in(channel_id)] == ["Quarterly update"]
    assert record is not None
    assert record.status in (BroadcastStatus.SENT, BroadcastStatus.PARTIALLY_SENT)
    sent = {d.channel_id for d in record.deliveries if d.status == DeliveryStatus.SENT}
    assert sent == reachable
    assert "*Big accounts*" in report
    assert "left" in report
    assert f"<#{leaving.channel_id}>" in report
