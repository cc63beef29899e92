"""App Home over HTTP: publishing on app_home_opened, its buttons, and the settings modal."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from handlers.views.home import (
    CHANNEL_FIELD_ACTION,
    CHANNEL_FIELD_BLOCK,
    DELETE_VIEW,
    HOME_DELETE_ACTION,
    HOME_EDIT_ACTION,
    HOME_PREVIEW_ACTION,
    HOME_SEND_ACTION,
    HOME_SETTINGS_ACTION,
    MANAGERS_ACTION,
    MANAGERS_BLOCK,
    SETTINGS_VIEW,
    TEMPLATE_ACTION,
    TEMPLATE_BLOCK,
    TIMEZONE_ACTION,
    TIMEZONE_BLOCK,
)
from segments.permissions import NOT_ALLOWED
from segments.ports import DeliveryTarget, NewBroadcast, QualifyingCompany
from segments.rules import Condition, Operator, rules_to_json
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID

AT_RISK_RULES = rules_to_json(Condition("health_score", Operator.LESS_THAN, (4,)))


def _texts(node: Any) -> list[str]:
    """Collect every `text` string in a view, blocks and buttons included."""
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


async def _open_home(world: World, user_id: str = ADMIN_ID, *, tab: str = "home") -> None:
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
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        },
    }
    response = await world.sim.post(json.dumps(body))
    assert response.status == 200


async def _home_of(world: World, user_id: str = ADMIN_ID) -> dict[str, Any]:
    await _open_home(world, user_id)
    return await eventually(lambda: world.slack.home_views.get(user_id))


def _home_click(action_id: str, *, value: str, user_id: str = ADMIN_ID) -> dict[str, Any]:
    return {
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


def _submission(
    view: dict[str, Any], values: dict[str, Any], *, user_id: str = ADMIN_ID
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "view": {
            "id": view["id"],
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view.get("private_metadata", ""),
            "hash": view["hash"],
            "app_installed_team_id": TEAM_ID,
            "state": {"values": values},
        },
    }


def _settings_values(
    *, field: str, template: str, timezone: str, managers: list[str]
) -> dict[str, Any]:
    return {
        CHANNEL_FIELD_BLOCK: {CHANNEL_FIELD_ACTION: {"type": "plain_text_input", "value": field}},
        TEMPLATE_BLOCK: {TEMPLATE_ACTION: {"type": "plain_text_input", "value": template}},
        TIMEZONE_BLOCK: {TIMEZONE_ACTION: {"type": "plain_text_input", "value": timezone}},
        MANAGERS_BLOCK: {
            MANAGERS_ACTION: {"type": "multi_users_select", "selected_users": managers}
        },
    }


async def _save_segment(world: World, name: str) -> int:
    record = await world.services.segments.create(
        team_id=TEAM_ID, name=name, rules=AT_RISK_RULES, user_id=ADMIN_ID
    )
    return record.id


async def _record_broadcast(world: World) -> None:
    """Store a broadcast to three channels: one sent, one failed and one still pending."""
    targets = [
        DeliveryTarget(
            channel_id=f"C0TARGET{index}",
            channel_name=f"customer-{index}",
            is_private=False,
            companies=[QualifyingCompany(company_id=f"co{index}", company_name=f"Company {index}")],
        )
        for index in range(3)
    ]
    record = await world.services.deliveries.create_broadcast(
        NewBroadcast(
            team_id=TEAM_ID,
            segment_id=None,
            segment_name="Renewal reminder",
            rules_text="Health Score less than 4",
            message_text="Hello",
            message_blocks=None,
            sent_by=ADMIN_ID,
            targets=targets,
        )
    )
    first, second, _ = record.deliveries
    await world.services.deliveries.mark_sending(first.id)
    await world.services.deliveries.mark_sent(first.id, ts="1700000000.000100")
    await world.services.deliveries.mark_failed(
        second.id, error="is_archived", reason="The channel is archived."
    )


async def _opened_view(world: World, callback_id: str) -> dict[str, Any]:
    """Return the latest stored modal with `callback_id`, once the app has opened one."""

    def find() -> dict[str, Any] | None:
        matching = [
            view for view in world.slack.views.values() if view.get("callback_id") == callback_id
        ]
        return matching[-1] if matching else None

    return await eventually(find)


async def test_home_shows_segments_and_broadcasts(world: World) -> None:
    await _save_segment(world, "At risk")
    await _record_broadcast(world)

    view = await _home_of(world)

    text = "\n".join(_texts(view))
    assert "*At risk*\nHealth Score less than 4" in text
    assert "*Renewal reminder*" in text
    assert "1 delivered, 1 failed, 1 pending." in text
    assert "Workspace settings" in text


async def test_home_hides_settings_from_members(world: World) -> None:
    await _save_segment(world, "At risk")

    view = await _home_of(world, MEMBER_ID)

    text = "\n".join(_texts(view))
    assert "*At risk*" in text
    assert "Workspace settings" not in text
    assert "Delete" not in text


async def test_messages_tab_publishes_nothing(world: World) -> None:
    await _open_home(world, tab="messages")
    await _home_of(world, MEMBER_ID)

    assert ADMIN_ID not in world.slack.home_views


async def test_settings_modal_saves_and_republishes(world: World) -> None:
    await _home_of(world)
    await world.sim.interact(_home_click(HOME_SETTINGS_ACTION, value="settings"))
    modal = await _opened_view(world, SETTINGS_VIEW)
    publishes_before = len(world.slack.calls_to("views.publish"))
    values = _settings_values(
        field="", template="cs-{slug}", timezone="Europe/Berlin", managers=[MEMBER_ID]
    )

    response = await world.sim.interact(_submission(modal, values))

    assert response.status == 200
    assert response.body == ""
    await eventually(lambda: len(world.slack.calls_to("views.publish")) > publishes_before)
    saved = await world.services.settings_for(TEAM_ID)
    assert saved.channel_field is None
    assert saved.channel_template == "cs-{slug}"
    assert saved.timezone == "Europe/Berlin"
    assert list(saved.managers) == [MEMBER_ID]
    assert "settings.updated" in [
        entry.action for entry in await world.services.audit.list(TEAM_ID)
    ]
    assert "Europe/Berlin" in "\n".join(_texts(world.slack.home_views[ADMIN_ID]))


async def test_settings_modal_rejects_bad_timezone_inline(world: World) -> None:
    await world.sim.interact(_home_click(HOME_SETTINGS_ACTION, value="settings"))
    modal = await _opened_view(world, SETTINGS_VIEW)
    values = _settings_values(
        field="custom.Slack Channel",
        template="customer-{slug}",
        timezone="Mars/Olympus",
        managers=[],
    )

    response = await world.sim.interact(_submission(modal, values))

    body = response.json()
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == [TIMEZONE_BLOCK]
    assert "Mars/Olympus" in body["errors"][TIMEZONE_BLOCK]
    assert (await world.services.settings_for(TEAM_ID)).timezone == "UTC"


async def test_settings_button_rejects_member(world: World) -> None:
    await world.sim.interact(_home_click(HOME_SETTINGS_ACTION, value="settings", user_id=MEMBER_ID))

    messages = await eventually(lambda: world.slack.dm_messages(MEMBER_ID))
    assert messages[0]["text"] == NOT_ALLOWED
    assert world.slack.calls_to("views.open") == []
    denied = [
        entry
        for entry in await world.services.audit.list(TEAM_ID)
        if entry.action == "permission.denied"
    ]
    assert denied[0].details == {"attempted": "settings.update"}


async def test_preview_button_fills_modal(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")

    await world.sim.interact(
        _home_click(HOME_PREVIEW_ACTION, value=str(segment_id), user_id=MEMBER_ID)
    )

    await eventually(lambda: world.slack.calls_to("views.update"), timeout=15)
    update = world.slack.calls_to("views.update")[0]
    assert update.error is None
    text = "\n".join(
        _texts(
            json.loads(update.params["view"])
            if isinstance(update.params["view"], str)
            else update.params["view"]
        )
    )
    assert "Preview: At risk" in text
    assert "<#C" in text


async def test_delete_button_confirms_then_deletes(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    await world.sim.interact(_home_click(HOME_DELETE_ACTION, value=str(segment_id)))
    modal = await _opened_view(world, DELETE_VIEW)

    response = await world.sim.interact(_submission(modal, {}))

    assert response.status == 200
    await eventually(lambda: world.slack.home_views.get(ADMIN_ID))
    assert await world.services.segments.get(segment_id) is None
    assert "At risk" not in "\n".join(_texts(world.slack.home_views[ADMIN_ID]))


async def test_edit_button_opens_builder(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")

    await world.sim.interact(_home_click(HOME_EDIT_ACTION, value=str(segment_id)))

    opened = await eventually(lambda: world.slack.calls_to("views.open"))
    assert opened[0].error is None
    assert "At risk" in str(opened[0].params["view"])


async def test_send_button_opens_send_modal(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")

    await world.sim.interact(_home_click(HOME_SEND_ACTION, value=str(segment_id)))

    opened = await eventually(lambda: world.slack.calls_to("views.open"))
    assert opened[0].error is None
    assert "At risk" in str(opened[0].params["view"])


async def test_button_of_deleted_segment(world: World) -> None:
    segment_id = await _save_segment(world, "At risk")
    await world.services.segments.delete(segment_id, user_id=ADMIN_ID)

    await world.sim.interact(_home_click(HOME_EDIT_ACTION, value=str(segment_id)))

    messages = await eventually(lambda: world.slack.dm_messages(ADMIN_ID))
    assert "deleted" in messages[0]["text"]
    await eventually(lambda: world.slack.home_views.get(ADMIN_ID))
    assert world.slack.calls_to("views.open") == []
