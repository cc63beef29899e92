"""The Workflow Builder step over HTTP: signed `function_executed` events, posts and step results."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from handlers.workflow import (
    CALLBACK_ID,
    DELIVERED_OUTPUT,
    FAILED_OUTPUT,
    MESSAGE_INPUT,
    SEGMENT_INPUT,
    USER_INPUT,
    not_allowed_text,
)
from loopback.slack_server import RecordedCall
from loopback.stack import SIGNING_SECRET
from planhat.errors import TOKEN_HELP
from segments.rules import rules_from_json, rules_to_json
from segments.text import parse_rules
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID

AT_RISK = "Health Score less than 4"
TINY = "ARR greater than 200000"
STEP_TOKEN = "xwfp-loopback-step-token"
SLOW_TIMEOUT = 20


def _rich_text(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


async def _save_segment(world: World, name: str, rules_text: str) -> int:
    catalog = await world.services.resolver.catalog()
    record = await world.services.segments.create(
        team_id=TEAM_ID,
        name=name,
        rules=rules_to_json(parse_rules(rules_text, catalog)),
        user_id=ADMIN_ID,
    )
    return record.id


def _function_executed(
    *, segment: str, message: Any, user_id: str = ADMIN_ID, execution_id: str | None = None
) -> dict[str, Any]:
    """Return an Events API envelope of `function_executed`, shaped as Slack sends it to Bolt."""
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "api_app_id": "A0SEGMENT",
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "event": {
            "type": "function_executed",
            "function": {
                "id": "Fn0SEGSTEP",
                "callback_id": CALLBACK_ID,
                "title": "Send to segment",
                "type": "app",
                "app_id": "A0SEGMENT",
            },
            "inputs": {SEGMENT_INPUT: segment, MESSAGE_INPUT: message, USER_INPUT: user_id},
            "function_execution_id": execution_id or f"Fx{uuid.uuid4().hex[:10].upper()}",
            "workflow_execution_id": "Wx0SEGMENT",
            "event_ts": f"{time.time():.6f}",
            "bot_access_token": STEP_TOKEN,
        },
    }


async def _post_event(world: World, envelope: dict[str, Any]) -> httpx.Response:
    """Post `envelope` as JSON, signed with the app's signing secret as Slack signs events."""
    body = json.dumps(envelope)
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature or "",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(world.sim.events_url, content=body.encode(), headers=headers)


def _step_results(world: World) -> list[RecordedCall]:
    """Return the successful completeSuccess and completeError calls, oldest first."""
    return [
        call
        for call in world.slack.calls
        if call.method in ("functions.completeSuccess", "functions.completeError")
        and call.error is None
    ]


def _channel_posts(world: World) -> dict[str, int]:
    """Count posts per channel, direct messages left out."""
    return {
        channel_id: len(messages)
        for channel_id, messages in world.slack.messages.items()
        if not channel_id.startswith("D") and messages
    }


async def _reachable_and_restricted(world: World, segment_id: int) -> tuple[set[str], set[str]]:
    segment = await world.services.segments.get(segment_id)
    assert segment is not None
    mapping, timezone = await world.services.mapping_for(TEAM_ID)
    audience = await world.services.resolver.resolve(
        rules_from_json(segment.rules), fresh=True, mapping=mapping, timezone=timezone
    )
    channel_ids = {target.channel_id for target in audience.targets}
    restricted = {
        channel_id
        for channel_id in channel_ids
        if (world.slack.channel(channel_id) or {}).get("restricted")
    }
    return channel_ids - restricted, restricted


async def test_step_posts_once_and_completes_with_counts(world: World) -> None:
    segment_id = await _save_segment(world, "At risk", AT_RISK)
    world.slack.extra_tokens.add(STEP_TOKEN)
    message = _rich_text("Office hours moved to Thursday")
    envelope = _function_executed(segment="at RISK", message=message)

    response = await _post_event(world, envelope)
    results = await eventually(lambda: _step_results(world), timeout=SLOW_TIMEOUT)

    reachable, restricted = await _reachable_and_restricted(world, segment_id)
    assert response.status_code == 200
    assert restricted
    assert _channel_posts(world) == {channel_id: 1 for channel_id in reachable}
    for channel_id in reachable:
        assert world.slack.posts_in(channel_id)[0]["blocks"] == [message]
    assert len(results) == 1
    assert results[0].method == "functions.completeSuccess"
    assert results[0].params["function_execution_id"] == envelope["event"]["function_execution_id"]
    assert json.loads(results[0].params["outputs"]) == {
        DELIVERED_OUTPUT: len(reachable),
        FAILED_OUTPUT: len(restricted),
    }
    # The step token was accepted on the first try, so no call was refused.
    assert [call for call in world.slack.calls if call.error == "invalid_auth"] == []


async def test_step_records_sender_and_reports_by_dm(world: World) -> None:
    await _save_segment(world, "Tiny", TINY)
    world.slack.extra_tokens.add(STEP_TOKEN)

    await _post_event(world, _function_executed(segment="Tiny", message=_rich_text("Hello")))
    await eventually(lambda: _step_results(world), timeout=SLOW_TIMEOUT)

    entries = await world.services.audit.list(TEAM_ID)
    created = [entry for entry in entries if entry.action == "broadcast.created"]
    assert len(created) == 1
    assert created[0].user_id == ADMIN_ID
    report = str(world.slack.dm_messages(ADMIN_ID)[-1]["text"])
    assert "*Tiny*: delivered to" in report
    assert "Since you confirmed" not in report


async def test_plain_text_message_is_posted_as_text(world: World) -> None:
    await _save_segment(world, "Tiny", TINY)
    world.slack.extra_tokens.add(STEP_TOKEN)

    await _post_event(world, _function_executed(segment="Tiny", message="Renewal call on *Friday*"))
    await eventually(lambda: _step_results(world), timeout=SLOW_TIMEOUT)

    posts = [world.slack.posts_in(channel_id)[0] for channel_id in _channel_posts(world)]
    assert posts
    for post in posts:
        assert post["text"] == "Renewal call on *Friday*"
        assert "blocks" not in post


async def test_unknown_segment_fails_with_suggestion(world: World) -> None:
    await _save_segment(world, "At risk", AT_RISK)
    world.slack.extra_tokens.add(STEP_TOKEN)

    response = await _post_event(world, _function_executed(segment="At rsk", message=_rich_text("Hi")))
    results = await eventually(lambda: _step_results(world))

    assert response.status_code == 200
    assert [call.method for call in results] == ["functions.completeError"]
    assert 'No segment is named "At rsk". Did you mean "At risk"?' in results[0].params["error"]
    assert _channel_posts(world) == {}
    assert await world.services.deliveries.list_broadcasts(TEAM_ID) == ()


async def test_planhat_failure_fails_step_with_one_sentence(world: World) -> None:
    await _save_segment(world, "At risk", AT_RISK)
    world.slack.extra_tokens.add(STEP_TOKEN)
    world.planhat.fail_on_page = 1
    world.planhat.fail_status = 401

    await _post_event(world, _function_executed(segment="At risk", message=_rich_text("Hi")))
    results = await eventually(lambda: _step_results(world), timeout=SLOW_TIMEOUT)

    assert [call.method for call in results] == ["functions.completeError"]
    error = results[0].params["error"]
    assert TOKEN_HELP in error
    assert "Some channels may already have" not in error
    assert "\n" not in error
    assert _channel_posts(world) == {}
    assert await world.services.deliveries.list_broadcasts(TEAM_ID) == ()


async def test_member_without_permission_fails_step(world: World) -> None:
    await _save_segment(world, "At risk", AT_RISK)
    world.slack.extra_tokens.add(STEP_TOKEN)

    await _post_event(
        world, _function_executed(segment="At risk", message=_rich_text("Hi"), user_id=MEMBER_ID)
    )
    results = await eventually(lambda: _step_results(world))

    assert [call.method for call in results] == ["functions.completeError"]
    assert results[0].params["error"] == not_allowed_text(MEMBER_ID)
    assert _channel_posts(world) == {}
    entries = await world.services.audit.list(TEAM_ID)
    assert any(
        entry.action == "permission.denied" and entry.user_id == MEMBER_ID for entry in entries
    )


async def test_repeated_event_sends_once(world: World) -> None:
    await _save_segment(world, "Tiny", TINY)
    world.slack.extra_tokens.add(STEP_TOKEN)
    envelope = _function_executed(segment="Tiny", message=_rich_text("Hello"))

    await _post_event(world, envelope)
    await _post_event(world, envelope)
    await eventually(lambda: _step_results(world), timeout=SLOW_TIMEOUT)
    await world.services.tasks.drain(timeout=SLOW_TIMEOUT)

    posts = _channel_posts(world)
    assert posts
    assert set(posts.values()) == {1}
    assert len(_step_results(world)) == 1
    assert len(await world.services.deliveries.list_broadcasts(TEAM_ID)) == 1


async def test_rejected_step_token_completes_with_bot_token(world: World) -> None:
    await _save_segment(world, "Tiny", TINY)

    await _post_event(world, _function_executed(segment="Tiny", message=_rich_text("Hello")))
    results = await eventually(lambda: _step_results(world), timeout=SLOW_TIMEOUT)

    attempts = world.slack.calls_to("functions.completeSuccess")
    assert [call.error for call in attempts] == ["invalid_auth", None]
    assert [call.method for call in results] == ["functions.completeSuccess"]
    assert json.loads(results[0].params["outputs"])[DELIVERED_OUTPUT] == len(_channel_posts(world))
