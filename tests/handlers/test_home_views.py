"""Block Kit builders of the App Home tab and its modals, and the settings form checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from db.records import WorkspaceSettings
from handlers.home import settings_form_errors
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
    MAX_VIEW_BLOCKS,
    TEMPLATE_ACTION,
    TEMPLATE_BLOCK,
    TIMEZONE_ACTION,
    TIMEZONE_BLOCK,
    SettingsForm,
    delete_modal,
    deleted_segment_id,
    delivery_summary,
    home_view,
    read_settings_form,
    settings_modal,
)
from segments.ports import (
    BroadcastRecord,
    BroadcastStatus,
    DeliveryRecord,
    DeliveryStatus,
    SegmentRecord,
)
from segments.rules import Condition, Operator, rules_to_json

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
SETTINGS = WorkspaceSettings(
    team_id="T0SEGMENT",
    channel_field="custom.Slack Channel",
    channel_template="customer-{slug}",
    timezone="Europe/Berlin",
    managers=("U0ALICE", "U0BOB"),
)


def _segment(segment_id: int, name: str) -> SegmentRecord:
    return SegmentRecord(
        id=segment_id,
        team_id="T0SEGMENT",
        name=name,
        rules=rules_to_json(Condition("health_score", Operator.LESS_THAN, (4,))),
        created_by="U0ADMIN",
        created_at=NOW,
        updated_by="U0ADMIN",
        updated_at=NOW,
    )


def _broadcast(
    broadcast_id: int, statuses: list[DeliveryStatus], *, name: str = "At risk"
) -> BroadcastRecord:
    deliveries = tuple(
        DeliveryRecord(
            id=index,
            broadcast_id=broadcast_id,
            channel_id=f"C{index:08d}",
            channel_name=f"customer-{index}",
            status=status,
            attempts=1,
            ts=None,
            error=None,
            reason=None,
        )
        for index, status in enumerate(statuses)
    )
    return BroadcastRecord(
        id=broadcast_id,
        team_id="T0SEGMENT",
        segment_name=name,
        status=BroadcastStatus.PARTIALLY_SENT,
        created_at=NOW,
        deliveries=deliveries,
    )


def _texts(blocks: list[dict[str, Any]]) -> str:
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            text = element.get("text")
            texts.append(text["text"] if isinstance(text, dict) else str(text))
    return "\n".join(texts)


def _action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [
        element["action_id"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def _state_values(view: dict[str, Any]) -> dict[str, Any]:
    """Return the `view.state.values` Slack would send for a modal submitted unchanged."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        element = block["element"]
        if element["type"] == "multi_users_select":
            state = {"type": element["type"], "selected_users": element.get("initial_users", [])}
        else:
            state = {"type": element["type"], "value": element.get("initial_value")}
        values[block["block_id"]] = {element["action_id"]: state}
    return values


def test_home_shows_segment_buttons_for_managers() -> None:
    view = home_view(
        segments=[_segment(5, "At risk")], broadcasts=[], can_manage=True, settings=SETTINGS
    )

    segment_actions = next(
        block for block in view["blocks"] if block.get("block_id") == "home_segment_actions:5"
    )
    assert [element["action_id"] for element in segment_actions["elements"]] == [
        HOME_PREVIEW_ACTION,
        HOME_SEND_ACTION,
        HOME_EDIT_ACTION,
        HOME_DELETE_ACTION,
    ]
    assert {element["value"] for element in segment_actions["elements"]} == {"5"}
    assert "*At risk*\nHealth Score less than 4" in _texts(view["blocks"])


def test_home_shows_only_preview_to_members() -> None:
    view = home_view(
        segments=[_segment(5, "At risk")], broadcasts=[], can_manage=False, settings=None
    )

    action_ids = _action_ids(view["blocks"])
    assert action_ids == [HOME_PREVIEW_ACTION]
    assert "Workspace settings" not in _texts(view["blocks"])


def test_home_shows_settings_to_managers() -> None:
    view = home_view(segments=[], broadcasts=[], can_manage=True, settings=SETTINGS)

    text = _texts(view["blocks"])
    assert HOME_SETTINGS_ACTION in _action_ids(view["blocks"])
    assert "`custom.Slack Channel`" in text
    assert "`customer-{slug}`" in text
    assert "Europe/Berlin" in text
    assert "<@U0ALICE>, <@U0BOB>" in text


def test_home_shows_broadcast_counts() -> None:
    statuses = (
        [DeliveryStatus.SENT] * 3
        + [DeliveryStatus.FAILED]
        + [DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    )
    view = home_view(
        segments=[], broadcasts=[_broadcast(1, statuses)], can_manage=False, settings=None
    )

    text = _texts(view["blocks"])
    assert "*At risk*" in text
    assert "partially sent. 3 delivered, 1 failed, 2 pending." in text


def test_delivery_summary_treats_sending_as_pending() -> None:
    record = _broadcast(1, [DeliveryStatus.SENDING, DeliveryStatus.SENT])

    assert delivery_summary(record) == "1 delivered, 0 failed, 1 pending"


def test_delivery_summary_names_finished_states() -> None:
    statuses = [
        DeliveryStatus.SENT,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.CANCELLED,
        DeliveryStatus.UNCONFIRMED,
    ]

    summary = delivery_summary(_broadcast(1, statuses))

    assert summary == "1 delivered, 0 failed, 1 unconfirmed, 2 skipped, 1 cancelled"
    assert "pending" not in summary


def test_home_escapes_names() -> None:
    view = home_view(
        segments=[_segment(1, "<!channel> seg")],
        broadcasts=[_broadcast(1, [DeliveryStatus.SENT], name="<!here> blast")],
        can_manage=True,
        settings=SETTINGS,
    )

    text = _texts(view["blocks"])
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "&lt;!channel&gt; seg" in text


def test_home_stays_within_block_limit() -> None:
    segments = [_segment(index, f"Segment {index}") for index in range(200)]
    broadcasts = [
        _broadcast(index, [DeliveryStatus.SENT] * 5, name="b" * 200) for index in range(50)
    ]

    view = home_view(segments=segments, broadcasts=broadcasts, can_manage=True, settings=SETTINGS)

    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert "and 170 more segments" in _texts(view["blocks"])
    block_ids = [block["block_id"] for block in view["blocks"] if "block_id" in block]
    assert len(block_ids) == len(set(block_ids))


def test_settings_modal_reads_back_unchanged() -> None:
    view = settings_modal(SETTINGS)

    form = read_settings_form(_state_values(view))

    assert form == SettingsForm(
        channel_field="custom.Slack Channel",
        channel_template="customer-{slug}",
        timezone="Europe/Berlin",
        managers=("U0ALICE", "U0BOB"),
    )
    assert len(view["title"]["text"]) <= 24


def test_settings_form_missing_inputs_empty() -> None:
    values = {
        CHANNEL_FIELD_BLOCK: {CHANNEL_FIELD_ACTION: {"type": "plain_text_input", "value": None}},
        TEMPLATE_BLOCK: {TEMPLATE_ACTION: {"type": "plain_text_input", "value": "  team-{slug} "}},
        TIMEZONE_BLOCK: {TIMEZONE_ACTION: {"type": "plain_text_input", "value": "UTC"}},
        MANAGERS_BLOCK: {MANAGERS_ACTION: {"type": "multi_users_select", "selected_users": []}},
    }

    form = read_settings_form(values)

    assert form == SettingsForm(
        channel_field="", channel_template="team-{slug}", timezone="UTC", managers=()
    )


def _form(**changes: str) -> SettingsForm:
    values = {
        "channel_field": "custom.Slack Channel",
        "channel_template": "customer-{slug}",
        "timezone": "UTC",
    }
    values.update(changes)
    return SettingsForm(managers=(), **values)


@pytest.mark.parametrize("field", ["", "custom.Slack Channel", "slackChannel", "custom.a.b"])
def test_settings_form_accepts_valid_field(field: str) -> None:
    assert settings_form_errors(_form(channel_field=field)) == {}


@pytest.mark.parametrize("field", ["slack channel", "custom.", "custom. x", "1abc", "a.b"])
def test_settings_form_rejects_invalid_field(field: str) -> None:
    errors = settings_form_errors(_form(channel_field=field))

    assert list(errors) == [CHANNEL_FIELD_BLOCK]


def test_settings_form_rejects_unknown_timezone() -> None:
    errors = settings_form_errors(_form(timezone="Mars/Olympus"))

    assert errors == {
        TIMEZONE_BLOCK: 'Time zone "Mars/Olympus" was not found. Use an IANA name such as "Europe/Berlin".'
    }


def test_settings_form_rejects_empty_timezone() -> None:
    assert list(settings_form_errors(_form(timezone=""))) == [TIMEZONE_BLOCK]


def test_settings_form_requires_slug_in_template() -> None:
    errors = settings_form_errors(_form(channel_template="customer-{id}"))

    assert "{slug}" in errors[TEMPLATE_BLOCK]


def test_settings_form_rejects_unknown_placeholder() -> None:
    errors = settings_form_errors(_form(channel_template="{slug}-{region}"))

    assert list(errors) == [TEMPLATE_BLOCK]


def test_delete_modal_stores_segment_id() -> None:
    view = delete_modal(_segment(42, "At risk"))

    assert view["callback_id"] == DELETE_VIEW
    assert deleted_segment_id(view["private_metadata"]) == 42


@pytest.mark.parametrize(
    "metadata", ["", "not json", '{"segment_id": "42"}', '{"segment_id": true}', "[]"]
)
def test_deleted_segment_id_rejects_other_metadata(metadata: str) -> None:
    assert deleted_segment_id(metadata) is None
