"""Send to segment over HTTP: shortcuts, the send modal, confirmation, posts and the DM report."""

from __future__ import annotations

import json
import uuid
from typing import Any

from handlers.send import TRIGGER_EXPIRED
from handlers.views import send as views
from planhat.errors import TOKEN_HELP
from segments.audience import Audience
from segments.permissions import NOT_ALLOWED
from segments.ports import BroadcastStatus
from segments.rules import rules_from_json, rules_to_json
from segments.text import parse_rules
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID, SlackSimulator

AT_RISK = "Health Score less than 4"
SLOW_TIMEOUT = 20


def _rich_text(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


async def _save_segment(world: World, name: str, rules_text: str = AT_RISK) -> int:
    catalog = await world.services.resolver.catalog()
    record = await world.services.segments.create(
        team_id=TEAM_ID,
        name=name,
        rules=rules_to_json(parse_rules(rules_text, catalog)),
        user_id=ADMIN_ID,
    )
    return record.id


async def _audience(world: World, segment_id: int) -> Audience:
    segment = await world.services.segments.get(segment_id)
    assert segment is not None
    mapping, timezone = await world.services.mapping_for(TEAM_ID)
    return await world.services.resolver.resolve(
        rules_from_json(segment.rules), fresh=True, mapping=mapping, timezone=timezone
    )


def _send_views(world: World) -> list[dict[str, Any]]:
    return [
        view
        for view in world.slack.views.values()
        if view.get("callback_id") == views.SEND_CALLBACK
    ]


async def _open_with_shortcut(world: World, *, user_id: str = ADMIN_ID) -> dict[str, Any]:
    ack = await world.sim.interact(
        {
            "type": "shortcut",
            "callback_id": views.GLOBAL_SHORTCUT_CALLBACK,
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "action_ts": "1764835200.000100",
            "user": SlackSimulator.user(user_id),
        }
    )
    assert ack.status == 200
    opened = await eventually(lambda: _send_views(world))
    return opened[-1]


def _form_values(
    segment_id: int | None, message: dict[str, Any] | None, *, test_first: bool = False
) -> dict[str, Any]:
    values: dict[str, Any] = {
        views.SEGMENT_BLOCK: {
            views.SEGMENT_ACTION: {
                "type": "static_select",
                "selected_option": None if segment_id is None else {"value": str(segment_id)},
            }
        },
        views.MESSAGE_BLOCK: {
            views.MESSAGE_ACTION: {"type": "rich_text_input", "rich_text_value": message}
        },
        views.TEST_BLOCK: {
            views.TEST_ACTION: {
                "type": "checkboxes",
                "selected_options": [{"value": views.TEST_VALUE}] if test_first else [],
            }
        },
    }
    return values


async def _submit(
    world: World, view: dict[str, Any], values: dict[str, Any], *, user_id: str = ADMIN_ID
) -> dict[str, Any] | None:
    """Submit `view` with `values` as Slack does and return the ack's JSON body, if any."""
    submitted = {**view, "state": {"values": values}, "app_installed_team_id": TEAM_ID}
    response = await world.sim.interact(
        {
            "type": "view_submission",
            "user": SlackSimulator.user(user_id),
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "view": submitted,
        }
    )
    assert response.status == 200
    result: dict[str, Any] | None = response.json()
    return result


async def _confirmation(world: World, view_id: str) -> dict[str, Any]:
    """Wait until the send modal was replaced by the view that follows "Checking…"."""
    return await eventually(
        lambda: (
            world.slack.views[view_id]
            if world.slack.views[view_id]["callback_id"] == views.CONFIRM_CALLBACK
            else None
        ),
        timeout=SLOW_TIMEOUT,
    )


def _view_text(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"])


def _channel_posts(world: World) -> dict[str, int]:
    """Count posts per channel, direct messages left out."""
    return {
        channel_id: len(messages)
        for channel_id, messages in world.slack.messages.items()
        if not channel_id.startswith("D") and messages
    }


def _final_report(world: World) -> str | None:
    """Return the sender's DM once it contains the delivery report, else None."""
    return _last_dm_containing(world, "delivered to")


def _last_dm_containing(world: World, fragment: str) -> str | None:
    text = _last_dm(world)
    return text if fragment in text else None


def _last_ephemeral(world: World) -> str:
    messages = world.slack.ephemeral_messages
    return str(messages[-1]["text"]) if messages else ""


def _last_dm(world: World, user_id: str = ADMIN_ID) -> str:
    messages = world.slack.dm_messages(user_id)
    return str(messages[-1]["text"]) if messages else ""


async def test_global_shortcut_opens_send_modal(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")

    view = await _open_with_shortcut(world)

    select = next(
        block for block in view["blocks"] if block.get("block_id") == views.SEGMENT_BLOCK
    )["element"]
    assert select["type"] == "static_select"
    assert [option["value"] for option in select["options"]] == [str(segment_id)]
    assert any(block.get("block_id") == views.MESSAGE_BLOCK for block in view["blocks"])


async def test_submit_shows_confirmation_with_channel_count(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    view = await _open_with_shortcut(world)

    ack = await _submit(world, view, _form_values(segment_id, _rich_text("Office hours moved")))
    confirmation = await _confirmation(world, view["id"])

    audience = await _audience(world, segment_id)
    count = len(audience.targets)
    assert ack is not None
    assert ack["response_action"] == "update"
    assert "Checking" in json.dumps(ack["view"])
    assert confirmation["submit"]["text"] == f"Send to {count} channels"
    assert f"*{count} channels*" in _view_text(confirmation)
    for target in audience.targets:
        assert f"<#{target.channel_id}>" in _view_text(confirmation)
    assert "no channel" in _view_text(confirmation)
    assert len(confirmation["private_metadata"]) <= 3000
    assert _channel_posts(world) == {}


async def test_confirm_posts_once_to_each_reachable_channel(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text("Office hours moved")))
    confirmation = await _confirmation(world, view["id"])

    ack = await _submit(world, confirmation, {})
    report = await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    audience = await _audience(world, segment_id)
    restricted = {
        target.channel_id
        for target in audience.targets
        if (world.slack.channel(target.channel_id) or {}).get("restricted")
    }
    reachable = {target.channel_id for target in audience.targets} - restricted
    assert ack is None
    assert _channel_posts(world) == {channel_id: 1 for channel_id in reachable}
    assert restricted
    lines = report.split("\n")
    assert f"*At risk*: delivered to {len(reachable)} of {len(audience.targets)} channels." in lines
    assert f"Failed in {len(restricted)} channel:" in lines
    assert lines[-1].startswith("• Posting is restricted (1): #")
    assert "Posting is restricted" in report


async def test_confirmed_post_carries_blocks_and_fallback(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    message = _rich_text("Renewal <!channel> call")
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, message))
    confirmation = await _confirmation(world, view["id"])

    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    posts = [
        post
        for channel_id, count in _channel_posts(world).items()
        for post in world.slack.posts_in(channel_id)
    ]
    assert posts
    for post in posts:
        assert post["blocks"] == [message]
        assert post["text"] == "Renewal &lt;!channel&gt; call"


async def test_message_shortcut_prefills_and_delivers(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    original = {
        "type": "message",
        "user": "U0OTHER",
        "ts": "1764835200.000200",
        "text": "Kickoff *Monday* <@U0OTHER>",
    }
    ack = await world.sim.interact(
        {
            "type": "message_action",
            "callback_id": views.MESSAGE_SHORTCUT_CALLBACK,
            "trigger_id": f"trigger-{uuid.uuid4().hex}",
            "user": SlackSimulator.user(ADMIN_ID),
            "channel": {"id": "C0CSTEAM00", "name": "cs-team"},
            "message": original,
            "message_ts": original["ts"],
            "response_url": world.sim.response_url(),
        }
    )
    assert ack.status == 200
    view = (await eventually(lambda: _send_views(world)))[-1]

    message_input = next(
        block for block in view["blocks"] if block.get("block_id") == views.MESSAGE_BLOCK
    )["element"]
    prefilled = message_input["initial_value"]
    assert views.rich_text_to_mrkdwn(prefilled) == original["text"]

    await _submit(world, view, _form_values(segment_id, prefilled))
    confirmation = await _confirmation(world, view["id"])
    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    audience = await _audience(world, segment_id)
    for target in audience.targets:
        posts = world.slack.posts_in(target.channel_id)
        assert len(posts) == 1
        assert posts[0]["text"] == original["text"]


async def test_slash_command_send_opens_modal_with_segment(world: World) -> None:
    segment_id = await _save_segment(world, "At Risk Accounts")

    ack = await world.sim.command("send at risk accounts")

    view = (await eventually(lambda: _send_views(world)))[-1]
    select = next(
        block for block in view["blocks"] if block.get("block_id") == views.SEGMENT_BLOCK
    )["element"]
    assert ack.status == 200
    assert select["initial_option"]["value"] == str(segment_id)


async def test_slash_command_send_unknown_name_still_opens(world: World) -> None:
    await _save_segment(world, "At risk")

    await world.sim.command("send At rsk")

    view = (await eventually(lambda: _send_views(world)))[-1]
    assert view["blocks"][0]["type"] == "context"
    notice = view["blocks"][0]["elements"][0]["text"]
    assert 'No segment is named "At rsk"' in notice
    assert 'Did you mean "At risk"?' in notice


async def test_test_first_dms_sender_and_posts_nothing_until_confirm(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    view = await _open_with_shortcut(world)

    await _submit(
        world, view, _form_values(segment_id, _rich_text("Draft for review"), test_first=True)
    )
    confirmation = await _confirmation(world, view["id"])

    test_dm = world.slack.dm_messages(ADMIN_ID)
    assert len(test_dm) == 1
    assert test_dm[0]["text"] == "Draft for review"
    assert "Test of your message" in json.dumps(test_dm[0]["blocks"])
    assert views.TEST_SENT in _view_text(confirmation)
    assert _channel_posts(world) == {}

    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    audience = await _audience(world, segment_id)
    assert _channel_posts(world) == {target.channel_id: 1 for target in audience.targets}


async def test_member_without_permission_is_refused_inline(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    view = await _open_with_shortcut(world, user_id=MEMBER_ID)

    ack = await _submit(
        world, view, _form_values(segment_id, _rich_text("Hello")), user_id=MEMBER_ID
    )

    assert ack == {"response_action": "errors", "errors": {views.SEGMENT_BLOCK: NOT_ALLOWED}}
    assert world.slack.calls_to("chat.postMessage") == []
    assert world.slack.calls_to("views.update") == []
    entries = await world.services.audit.list(team_id=TEAM_ID)
    assert any(
        entry.action == "permission.denied" and entry.user_id == MEMBER_ID for entry in entries
    )


async def test_empty_message_is_rejected_inline(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    view = await _open_with_shortcut(world)

    ack = await _submit(world, view, _form_values(segment_id, _rich_text("   ")))

    assert ack is not None
    assert ack["response_action"] == "errors"
    assert set(ack["errors"]) == {views.MESSAGE_BLOCK}


async def test_planhat_failure_during_confirmation_is_one_sentence(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    view = await _open_with_shortcut(world)
    world.planhat.fail_on_page = 1
    world.planhat.fail_status = 401

    await _submit(world, view, _form_values(segment_id, _rich_text("Hello")))
    shown = await _confirmation(world, view["id"])

    assert "submit" not in shown
    assert len(shown["blocks"]) == 1
    assert TOKEN_HELP in shown["blocks"][0]["text"]["text"]
    assert _channel_posts(world) == {}


async def test_long_message_survives_the_confirmation(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    long_text = "Renewal notes. " * 2000
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text(long_text)))
    confirmation = await _confirmation(world, view["id"])

    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    posted = [world.slack.posts_in(channel_id)[0] for channel_id in _channel_posts(world)]
    assert len(long_text) > 3000
    assert len(confirmation["private_metadata"]) <= 3000
    assert posted
    for post in posted:
        assert post["text"] == long_text


async def test_over_100_segments_load_options_externally(world: World) -> None:
    for index in range(101):
        await _save_segment(world, f"Segment {index:03d}")
    view = await _open_with_shortcut(world)

    response = await world.sim.interact(
        {
            "type": "block_suggestion",
            "action_id": views.SEGMENT_ACTION,
            "block_id": views.SEGMENT_BLOCK,
            "value": "segment 05",
            "user": SlackSimulator.user(ADMIN_ID),
            "view": view,
        }
    )

    select = next(
        block for block in view["blocks"] if block.get("block_id") == views.SEGMENT_BLOCK
    )["element"]
    options = response.json()["options"]
    assert select["type"] == "external_select"
    assert [option["text"]["text"] for option in options] == [
        f"Segment {index:03d}" for index in range(50, 60)
    ]


async def test_expired_confirmation_sends_nothing(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text("Hello")))
    confirmation = await _confirmation(world, view["id"])

    ack = await _submit(world, {**confirmation, "private_metadata": "unknown-draft"}, {})

    assert ack is not None
    assert ack["response_action"] == "update"
    assert "expired" in json.dumps(ack["view"])
    assert _channel_posts(world) == {}


async def test_planhat_failure_at_send_time_reaches_sender_by_dm(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text("Hello")))
    confirmation = await _confirmation(world, view["id"])
    world.planhat.fail_on_page = 1
    world.planhat.fail_status = 401

    await _submit(world, confirmation, {})
    text = await eventually(lambda: _last_dm_containing(world, TOKEN_HELP))

    assert "Some channels may already have" not in text
    assert _channel_posts(world) == {}
    [broadcast] = await world.services.deliveries.list_broadcasts(TEAM_ID)
    assert broadcast.status == BroadcastStatus.FAILED
    assert broadcast.deliveries == ()


async def test_expired_trigger_is_told_to_user(world: World) -> None:
    await _save_segment(world, "At risk")
    world.slack.fail_next["views.open"] = [(200, "expired_trigger_id")]

    await world.sim.command("send At risk")

    text = await eventually(lambda: _last_dm(world) or _last_ephemeral(world))
    assert text == TRIGGER_EXPIRED
    assert _send_views(world) == []
