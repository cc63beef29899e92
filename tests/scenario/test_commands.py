"""`/segment` over HTTP: signed commands and button clicks against loopback Slack and Planhat."""

from __future__ import annotations

import re
import uuid
from typing import Any

from handlers.views.commands import DELETE_CANCEL_ACTION, DELETE_CONFIRM_ACTION, PREVIEW_CHANNELS
from planhat.errors import TOKEN_HELP
from segments.permissions import NOT_ALLOWED
from segments.rules import Condition, Operator, rules_to_json
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID

AT_RISK_RULES = rules_to_json(Condition("health_score", Operator.LESS_THAN, (4,)))


def _texts(node: Any) -> list[str]:
    """Collect every `text` string in a message payload, blocks included."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_texts(item))
    return found


def _joined(payload: dict[str, Any]) -> str:
    return "\n".join(_texts(payload))


async def _command_response(world: World, text: str, *, user_id: str = ADMIN_ID) -> dict[str, Any]:
    """Run a command and return the first payload it posts to its response_url."""
    response_url = world.sim.response_url()
    ack = await world.sim.command(text, user_id=user_id, response_url=response_url)
    assert ack.status == 200
    responses = await eventually(lambda: world.slack.responses_to(response_url), timeout=15)
    return responses[0]


async def _save_segment(world: World, name: str, rules: dict[str, Any] = AT_RISK_RULES) -> int:
    record = await world.services.segments.create(
        team_id=TEAM_ID, name=name, rules=rules, user_id=ADMIN_ID
    )
    return record.id


def _button_click(
    blocks: list[dict[str, Any]], action_id: str, *, user_id: str, response_url: str
) -> dict[str, Any]:
    """Build the block_actions payload of a click on `action_id` in an ephemeral message."""
    block, element = next(
        (block, element)
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == action_id
    )
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "container": {
            "type": "message",
            "message_ts": "1700000000.000100",
            "channel_id": "C0CSTEAM00",
            "is_ephemeral": True,
        },
        "channel": {"id": "C0CSTEAM00", "name": "cs-team"},
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block["block_id"],
                "value": element["value"],
                "action_ts": "1700000001.000200",
            }
        ],
    }


async def test_help_answers_in_ack(world: World) -> None:
    response = await world.sim.command("help")

    assert response.status == 200
    text = response.json()["text"]
    for name in ("new", "list", "preview", "edit", "delete", "send"):
        assert f"/segment {name}" in text


async def test_empty_command_shows_help(world: World) -> None:
    response = await world.sim.command("")

    assert "/segment preview" in response.json()["text"]


async def test_unknown_subcommand_suggests_closest(world: World) -> None:
    response = await world.sim.command("prevew At risk")

    body = response.json()
    assert body["text"] == 'Unknown subcommand "prevew". Did you mean "preview"?'
    assert "/segment list" in _joined(body)


async def test_list_when_empty_explains_new(world: World) -> None:
    payload = await _command_response(world, "list")

    assert "/segment new" in _joined(payload)


async def test_list_sorts_without_planhat(world: World) -> None:
    await _save_segment(
        world, "Renewals", rules_to_json(Condition("arr", Operator.GREATER_THAN, (50000,)))
    )
    await _save_segment(world, "at risk")

    payload = await _command_response(world, "list")

    text = _joined(payload)
    assert "*at risk*\nHealth Score less than 4" in text
    assert "*Renewals*\nARR greater than 50000" in text
    assert text.index("at risk") < text.index("Renewals")
    assert world.planhat.requests == []


async def test_preview_by_name_ignores_case(world: World) -> None:
    await _save_segment(world, "At risk")
    expected = await world.services.resolver.resolve(
        Condition("health_score", Operator.LESS_THAN, (4,)),
        mapping=(await world.services.mapping_for(TEAM_ID))[0],
    )

    payload = await _command_response(world, "preview at RISK")

    text = _joined(payload)
    assert "Preview: At risk" in text
    mentions = re.findall(r"<#C[A-Z0-9]+>", text)
    assert len(mentions) == min(PREVIEW_CHANNELS, len(expected.targets))
    assert len(expected.targets) > 0
    assert f"*{len(expected.targets)} channels* would get the message" in text
    assert "<!date^" in text


async def test_preview_by_rules_shows_range_warning(world: World) -> None:
    payload = await _command_response(world, "preview Health Score less than 40")

    text = _joined(payload)
    assert "Preview of rules" in text
    assert "<#C" in text
    assert (
        'Health Score is 0-10 in Planhat, so "less than 40" matches every company that has a Health Score.'
        in text
    )


async def test_preview_acks_with_progress_note(world: World) -> None:
    response = await world.sim.command("preview Health Score less than 4")

    assert response.body == "Working on the preview…"


async def test_preview_of_unknown_name(world: World) -> None:
    await _save_segment(world, "Renewals")

    payload = await _command_response(world, "preview Renewalz")

    text = payload["text"]
    assert 'No segment is named "Renewalz". Did you mean "Renewals"?' in text
    assert "Read as rules, it is not valid either:" in text
    assert "blocks" not in payload


async def test_preview_without_argument(world: World) -> None:
    payload = await _command_response(world, "preview")

    assert "/segment preview NAME or RULES" in payload["text"]


async def test_planhat_token_rejected_reaches_user(world: World) -> None:
    world.planhat.token = "some-other-token"

    payload = await _command_response(world, "preview Health Score less than 4")

    assert TOKEN_HELP in payload["text"]
    assert "blocks" not in payload


async def test_planhat_page_failure_reaches_user(world: World) -> None:
    await _save_segment(world, "At risk")
    world.planhat.fail_on_page = 1
    # 403 is not retried, so the failure arrives at once.
    world.planhat.fail_status = 403

    payload = await _command_response(world, "preview At risk")

    assert "Planhat" in payload["text"]
    assert "Something went wrong on our side" not in payload["text"]
    assert "blocks" not in payload


async def test_delete_after_confirm_removes_segment(world: World) -> None:
    await _save_segment(world, "At risk")
    question = await _command_response(world, "delete at risk")
    click_url = world.sim.response_url()

    response = await world.sim.interact(
        _button_click(
            question["blocks"], DELETE_CONFIRM_ACTION, user_id=ADMIN_ID, response_url=click_url
        )
    )

    assert response.status == 200
    replies = await eventually(lambda: world.slack.responses_to(click_url))
    assert replies[0]["replace_original"] is True
    assert replies[0]["text"] == "Deleted the segment *At risk*."
    assert await world.services.segments.get_by_name(team_id=TEAM_ID, name="At risk") is None
    actions = [entry.action for entry in await world.services.audit.list(TEAM_ID)]
    assert "segment.deleted" in actions


async def test_delete_cancel_keeps_segment(world: World) -> None:
    await _save_segment(world, "At risk")
    question = await _command_response(world, "delete At risk")
    click_url = world.sim.response_url()

    await world.sim.interact(
        _button_click(
            question["blocks"], DELETE_CANCEL_ACTION, user_id=ADMIN_ID, response_url=click_url
        )
    )

    replies = await eventually(lambda: world.slack.responses_to(click_url))
    assert replies[0]["replace_original"] is True
    assert "Kept the segment *At risk*" in replies[0]["text"]
    assert await world.services.segments.get_by_name(team_id=TEAM_ID, name="At risk") is not None


async def test_member_delete_rejected_and_audited(world: World) -> None:
    await _save_segment(world, "At risk")

    payload = await _command_response(world, "delete At risk", user_id=MEMBER_ID)

    assert payload["text"] == NOT_ALLOWED
    assert await world.services.segments.get_by_name(team_id=TEAM_ID, name="At risk") is not None
    entries = await world.services.audit.list(TEAM_ID)
    denied = [entry for entry in entries if entry.action == "permission.denied"]
    assert len(denied) == 1
    assert denied[0].user_id == MEMBER_ID
    assert denied[0].details == {"attempted": "segment.delete"}


async def test_member_delete_click_rejected(world: World) -> None:
    await _save_segment(world, "At risk")
    question = await _command_response(world, "delete At risk")
    click_url = world.sim.response_url()

    await world.sim.interact(
        _button_click(
            question["blocks"], DELETE_CONFIRM_ACTION, user_id=MEMBER_ID, response_url=click_url
        )
    )

    replies = await eventually(lambda: world.slack.responses_to(click_url))
    assert replies[0]["text"] == NOT_ALLOWED
    assert await world.services.segments.get_by_name(team_id=TEAM_ID, name="At risk") is not None


async def test_delete_of_unknown_name_suggests(world: World) -> None:
    await _save_segment(world, "At risk")

    payload = await _command_response(world, "delete At rsk")

    assert (
        payload["text"]
        == 'No segment is named "At rsk". Did you mean "At risk"? Type `/segment list` to see them all.'
    )


async def test_new_opens_modal_with_trigger(world: World) -> None:
    response = await world.sim.command("new Health Score less than 4")

    assert response.status == 200
    opened = await eventually(lambda: world.slack.calls_to("views.open"))
    assert opened[0].params["trigger_id"].startswith("trigger-")


async def test_member_new_rejected(world: World) -> None:
    payload = await _command_response(world, "new", user_id=MEMBER_ID)

    assert payload["text"] == NOT_ALLOWED
    assert world.slack.calls_to("views.open") == []


async def test_edit_of_quoted_name_opens_modal(world: World) -> None:
    await _save_segment(world, "At risk")

    await world.sim.command('edit "at risk"')

    opened = await eventually(lambda: world.slack.calls_to("views.open"))
    assert opened[0].error is None


async def test_edit_of_unknown_name_suggests(world: World) -> None:
    await _save_segment(world, "At risk")

    payload = await _command_response(world, "edit Atrisk")

    assert 'Did you mean "At risk"?' in payload["text"]
    assert world.slack.calls_to("views.open") == []


async def test_send_opens_send_modal(world: World) -> None:
    await _save_segment(world, "At risk")

    await world.sim.command("send at risk")

    opened = await eventually(lambda: world.slack.calls_to("views.open"))
    assert opened[0].error is None
    assert "At risk" in str(opened[0].params["view"])


async def test_member_send_rejected(world: World) -> None:
    await _save_segment(world, "At risk")

    payload = await _command_response(world, "send At risk", user_id=MEMBER_ID)

    assert payload["text"] == NOT_ALLOWED
    assert world.slack.calls_to("views.open") == []
