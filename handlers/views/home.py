"""Block Kit for the App Home tab and the modals it opens: preview, delete and workspace settings.

The Home tab lists saved segments with their buttons, the latest broadcasts with delivery counts,
and, for people who may manage segments, the workspace settings. Lists are capped so the view
stays within Slack's 100 blocks. `read_settings_form` reads the settings modal back by the same
block and action ids that `settings_modal` sets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from db.records import WorkspaceSettings
from handlers.views.commands import (
    MAX_LINE_CHARS,
    button,
    clip,
    context,
    header,
    more_line,
    pack_lines,
    saved_rules_text,
    section,
    slack_date,
)
from segments.ports import BroadcastRecord, DeliveryStatus, SegmentRecord
from segments.slack_text import escape_mrkdwn

# Buttons on the Home tab. The segment buttons carry the segment id as their value.
HOME_NEW_ACTION = "home_segment_new"
HOME_PREVIEW_ACTION = "home_segment_preview"
HOME_SEND_ACTION = "home_segment_send"
HOME_EDIT_ACTION = "home_segment_edit"
HOME_DELETE_ACTION = "home_segment_delete"
HOME_SETTINGS_ACTION = "home_settings_edit"
SEGMENT_ACTIONS_BLOCK_PREFIX = "home_segment_actions:"

# Modal callback ids.
PREVIEW_VIEW = "home_preview"
DELETE_VIEW = "home_delete_segment"
SETTINGS_VIEW = "workspace_settings"

# Block and action ids of the settings modal inputs.
CHANNEL_FIELD_BLOCK = "settings_channel_field"
CHANNEL_FIELD_ACTION = "channel_field"
TEMPLATE_BLOCK = "settings_channel_template"
TEMPLATE_ACTION = "channel_template"
TIMEZONE_BLOCK = "settings_timezone"
TIMEZONE_ACTION = "timezone"
MANAGERS_BLOCK = "settings_managers"
MANAGERS_ACTION = "managers"

# Slack allows 100 blocks in a Home tab or modal (slack_sdk 3.48 `View` checks the same). Each
# segment takes two blocks (text and buttons), so 30 segments, 10 broadcasts and the settings
# stay well below it.
MAX_VIEW_BLOCKS = 100
HOME_SEGMENTS = 30
HOME_BROADCASTS = 10

_STATUS_LABELS = {
    "resolving": "resolving the audience",
    "sending": "sending",
    "sent": "sent",
    "partially_sent": "partially sent",
    "failed": "failed",
}


@dataclass(frozen=True)
class SettingsForm:
    """The values typed into the settings modal, stripped, before validation."""

    channel_field: str
    channel_template: str
    timezone: str
    managers: tuple[str, ...]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _modal(
    *,
    title: str,
    blocks: list[dict[str, Any]],
    callback_id: str,
    submit: str | None = None,
    close: str = "Close",
    private_metadata: str = "",
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": callback_id,
        # Slack limits modal titles and button labels to 24 characters (slack_sdk 3.48 `View`).
        "title": _plain(clip(title, 24)),
        "close": _plain(close),
        "blocks": blocks,
        "private_metadata": private_metadata,
    }
    if submit is not None:
        view["submit"] = _plain(submit)
    return view


# Home tab --------------------------------------------------------------------------------------


def home_view(
    *,
    segments: Sequence[SegmentRecord],
    broadcasts: Sequence[BroadcastRecord],
    can_manage: bool,
    settings: WorkspaceSettings | None,
) -> dict[str, Any]:
    """Return the Home tab: segments, latest broadcasts, and the settings when `settings` is given.

    People who may not manage segments see only the Preview button. `settings` is None for them.
    """
    blocks: list[dict[str, Any]] = [header("Segments")]
    blocks.extend(_segment_blocks(segments, can_manage=can_manage))
    blocks.append({"type": "divider"})
    blocks.append(header("Latest broadcasts"))
    blocks.extend(_broadcast_blocks(broadcasts))
    if settings is not None:
        blocks.append({"type": "divider"})
        blocks.append(header("Workspace settings"))
        blocks.extend(_settings_blocks(settings))
    return {"type": "home", "blocks": blocks}


def _segment_blocks(segments: Sequence[SegmentRecord], *, can_manage: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if can_manage:
        blocks.append(
            {
                "type": "actions",
                "block_id": "home_new_segment",
                "elements": [
                    button("New segment", action_id=HOME_NEW_ACTION, value="new", style="primary")
                ],
            }
        )
    else:
        blocks.append(
            context(
                "You can preview segments. To create, edit, delete or send them, ask a workspace "
                "admin to add you to the segment managers."
            )
        )
    if not segments:
        blocks.append(
            section("No segments are saved yet. Create one with *New segment* or `/segment new`.")
        )
        return blocks

    for record in segments[:HOME_SEGMENTS]:
        name = clip(escape_mrkdwn(record.name), 120)
        rules = clip(escape_mrkdwn(saved_rules_text(record.rules)), MAX_LINE_CHARS)
        blocks.append(section(f"*{name}*\n{rules}"))
        value = str(record.id)
        elements = [button("Preview", action_id=HOME_PREVIEW_ACTION, value=value)]
        if can_manage:
            elements.extend(
                [
                    button("Send", action_id=HOME_SEND_ACTION, value=value, style="primary"),
                    button("Edit", action_id=HOME_EDIT_ACTION, value=value),
                    button("Delete", action_id=HOME_DELETE_ACTION, value=value, style="danger"),
                ]
            )
        blocks.append(
            {
                "type": "actions",
                "block_id": f"{SEGMENT_ACTIONS_BLOCK_PREFIX}{record.id}",
                "elements": elements,
            }
        )
    hidden = len(segments) - HOME_SEGMENTS
    if hidden > 0:
        blocks.append(
            context(f"{more_line(hidden, 'segments')} Type `/segment list` to see them all.")
        )
    return blocks


def delivery_counts(record: BroadcastRecord) -> tuple[int, int, int]:
    """Count the delivered, failed and pending deliveries. A delivery still `sending` is pending."""
    delivered = failed = pending = 0
    for delivery in record.deliveries:
        if delivery.status == DeliveryStatus.SENT:
            delivered += 1
        elif delivery.status == DeliveryStatus.FAILED:
            failed += 1
        else:
            pending += 1
    return delivered, failed, pending


def _broadcast_blocks(broadcasts: Sequence[BroadcastRecord]) -> list[dict[str, Any]]:
    if not broadcasts:
        return [
            context(
                "Nothing has been sent yet. Send to a segment with *Send* or `/segment send NAME`."
            )
        ]
    lines = []
    for record in broadcasts[:HOME_BROADCASTS]:
        delivered, failed, pending = delivery_counts(record)
        status = _STATUS_LABELS.get(str(record.status), str(record.status))
        lines.append(
            f"*{clip(escape_mrkdwn(record.segment_name), 120)}*, {slack_date(record.created_at)}: "
            f"{status}. {delivered:,} delivered, {failed:,} failed, {pending:,} pending."
        )
    return [section(text) for text in pack_lines(lines)]


def _settings_blocks(settings: WorkspaceSettings) -> list[dict[str, Any]]:
    field = (
        f"`{escape_mrkdwn(settings.channel_field)}`"
        if settings.channel_field
        else "none, so channels are found by the name template only"
    )
    managers = (
        ", ".join(f"<@{user_id}>" for user_id in settings.managers)
        if settings.managers
        else "none besides workspace admins and SEGMENT_ADMINS"
    )
    lines = [
        f"*Planhat channel field:* {field}",
        f"*Channel name template:* `{escape_mrkdwn(settings.channel_template)}`",
        f"*Time zone for dates in rules:* {escape_mrkdwn(settings.timezone)}",
        f"*Segment managers:* {managers}",
    ]
    if settings.updated_by and settings.updated_at:
        lines.append(
            f"_Last changed {slack_date(settings.updated_at)} by <@{settings.updated_by}>_"
        )
    return [
        section("\n".join(lines)),
        {
            "type": "actions",
            "block_id": "home_settings",
            "elements": [button("Edit settings", action_id=HOME_SETTINGS_ACTION, value="settings")],
        },
    ]


def error_home_view(text: str) -> dict[str, Any]:
    """Return a Home tab that shows only why it could not be built."""
    return {
        "type": "home",
        "blocks": [header("Segments"), section(f":warning: {escape_mrkdwn(text)}")],
    }


# Preview modal ---------------------------------------------------------------------------------


def preview_loading_modal(segment_name: str) -> dict[str, Any]:
    """Return the modal shown while the preview is computed, which takes a Planhat fetch."""
    return _modal(
        title="Segment preview",
        callback_id=PREVIEW_VIEW,
        blocks=[
            section(
                f"Computing the audience of *{escape_mrkdwn(segment_name)}* from live Planhat data…"
            )
        ],
    )


def preview_modal(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the modal with finished preview blocks (`handlers.views.commands.preview_blocks`)."""
    return _modal(
        title="Segment preview", callback_id=PREVIEW_VIEW, blocks=blocks[:MAX_VIEW_BLOCKS]
    )


def preview_error_modal(text: str) -> dict[str, Any]:
    """Return the preview modal showing why the preview failed."""
    return _modal(
        title="Segment preview",
        callback_id=PREVIEW_VIEW,
        blocks=[section(f":warning: {escape_mrkdwn(text)}")],
    )


# Delete modal ----------------------------------------------------------------------------------


def delete_modal(record: SegmentRecord) -> dict[str, Any]:
    """Return the confirmation modal, whose submission deletes the segment in `private_metadata`."""
    name = clip(escape_mrkdwn(record.name), 120)
    rules = clip(escape_mrkdwn(saved_rules_text(record.rules)), MAX_LINE_CHARS)
    return _modal(
        title="Delete segment",
        callback_id=DELETE_VIEW,
        submit="Delete",
        close="Cancel",
        private_metadata=json.dumps({"segment_id": record.id}),
        blocks=[
            section(
                f"Delete the segment *{name}*? Its rules are: {rules}\n"
                "This cannot be undone. Broadcasts already sent to it stay in the history."
            )
        ],
    )


def deleted_segment_id(private_metadata: str) -> int | None:
    """Return the segment id that `delete_modal` stored, or None for other metadata."""
    try:
        data = json.loads(private_metadata or "{}")
    except json.JSONDecodeError:
        return None
    segment_id = data.get("segment_id") if isinstance(data, dict) else None
    return segment_id if isinstance(segment_id, int) and not isinstance(segment_id, bool) else None


# Settings modal --------------------------------------------------------------------------------


def settings_modal(settings: WorkspaceSettings) -> dict[str, Any]:
    """Return the modal that edits the workspace settings, filled in with the current values."""
    field_input: dict[str, Any] = {"type": "plain_text_input", "action_id": CHANNEL_FIELD_ACTION}
    if settings.channel_field:
        field_input["initial_value"] = settings.channel_field
    managers_input: dict[str, Any] = {"type": "multi_users_select", "action_id": MANAGERS_ACTION}
    if settings.managers:
        managers_input["initial_users"] = list(settings.managers)
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": CHANNEL_FIELD_BLOCK,
            "optional": True,
            "label": _plain("Planhat channel field"),
            "hint": _plain(
                "The company field that holds the Slack channel, such as custom.Slack Channel. "
                "Leave it empty to find channels by the name template only."
            ),
            "element": field_input,
        },
        {
            "type": "input",
            "block_id": TEMPLATE_BLOCK,
            "label": _plain("Channel name template"),
            "hint": _plain(
                "How a company's channel is named. "
                "{slug} is the company name in lower case with dashes."
            ),
            "element": {
                "type": "plain_text_input",
                "action_id": TEMPLATE_ACTION,
                "initial_value": settings.channel_template,
            },
        },
        {
            "type": "input",
            "block_id": TIMEZONE_BLOCK,
            "label": _plain("Time zone"),
            "hint": _plain(
                "An IANA name such as Europe/Berlin. "
                'Rules such as "within 30 days" count days in it.'
            ),
            "element": {
                "type": "plain_text_input",
                "action_id": TIMEZONE_ACTION,
                "initial_value": settings.timezone,
            },
        },
        {
            "type": "input",
            "block_id": MANAGERS_BLOCK,
            "optional": True,
            "label": _plain("Segment managers"),
            "hint": _plain(
                "People who may create, edit, delete and send segments, besides workspace admins."
            ),
            "element": managers_input,
        },
    ]
    return _modal(
        title="Workspace settings",
        callback_id=SETTINGS_VIEW,
        submit="Save",
        close="Cancel",
        blocks=blocks,
    )


def read_settings_form(values: Mapping[str, Any]) -> SettingsForm:
    """Read the settings modal's `view.state.values`. Missing inputs read as empty."""

    def text(block_id: str, action_id: str) -> str:
        state = values.get(block_id, {}).get(action_id, {})
        return str(state.get("value") or "").strip()

    managers_state = values.get(MANAGERS_BLOCK, {}).get(MANAGERS_ACTION, {})
    managers = tuple(str(user_id) for user_id in managers_state.get("selected_users") or ())
    return SettingsForm(
        channel_field=text(CHANNEL_FIELD_BLOCK, CHANNEL_FIELD_ACTION),
        channel_template=text(TEMPLATE_BLOCK, TEMPLATE_ACTION),
        timezone=text(TIMEZONE_BLOCK, TIMEZONE_ACTION),
        managers=managers,
    )
