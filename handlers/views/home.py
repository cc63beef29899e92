"""Block Kit for the App Home tab and its modals: preview, delete, settings, scheduled broadcasts.

The Home tab lists saved segments with their buttons, broadcasts scheduled to send later, the
latest broadcasts with delivery counts, and, for people who may manage segments, the workspace
settings. Lists are capped so the view
stays within Slack's 100 blocks. `read_settings_form` reads the settings modal back by the same
block and action ids that `settings_modal` sets.
"""

from __future__ import annotations

from collections import Counter

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from db.records import WorkspaceSettings
from db.scheduled import ScheduledBroadcast
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
from handlers.views.reports import broadcast_menu
from handlers.views.send import (
    MESSAGE_ACTION,
    MESSAGE_BLOCK,
    ScheduleFields,
    message_error,
    mrkdwn_to_rich_text,
    read_schedule_fields,
    schedule_errors,
    schedule_inputs,
)
from segments.ports import BroadcastRecord, DeliveryStatus, SegmentRecord
from segments.scheduling import format_send_time
from segments.slack_text import escape_mrkdwn

# Buttons on the Home tab. The segment buttons carry the segment id as their value.
HOME_NEW_ACTION = "home_segment_new"
HOME_PREVIEW_ACTION = "home_segment_preview"
HOME_SEND_ACTION = "home_segment_send"
HOME_EDIT_ACTION = "home_segment_edit"
HOME_DELETE_ACTION = "home_segment_delete"
HOME_SETTINGS_ACTION = "home_settings_edit"
SEGMENT_ACTIONS_BLOCK_PREFIX = "home_segment_actions:"
BROADCAST_BLOCK_PREFIX = "home_broadcast:"

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
FREQUENCY_CAP_BLOCK = "settings_frequency_cap"
FREQUENCY_CAP_ACTION = "frequency_cap_days"

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
    # Days as typed; empty turns the frequency cap off.
    frequency_cap: str = ""


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
    scheduled: Sequence[ScheduledBroadcast] = (),
) -> dict[str, Any]:
    """Return the Home tab: segments, latest broadcasts, and the settings when `settings` is given.

    People who may not manage segments see only the Preview button. `settings` is None for them.
    The `scheduled` broadcasts are listed after the segments, in the blocks the rest leaves free.
    """
    blocks: list[dict[str, Any]] = [header("Segments")]
    blocks.extend(_segment_blocks(segments, can_manage=can_manage))
    scheduled_position = len(blocks)
    blocks.append({"type": "divider"})
    blocks.append(header("Latest broadcasts"))
    blocks.extend(_broadcast_blocks(broadcasts, can_manage=can_manage))
    if settings is not None:
        blocks.append({"type": "divider"})
        blocks.append(header("Workspace settings"))
        blocks.extend(_settings_blocks(settings))
    blocks[scheduled_position:scheduled_position] = scheduled_blocks(
        scheduled, can_manage=can_manage, max_blocks=MAX_VIEW_BLOCKS - len(blocks)
    )
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


def delivery_summary(record: BroadcastRecord) -> str:
    """Return the delivery counts as text: delivered and failed always, other states when present.

    A delivery still `sending` counts as pending; skipped, cancelled and unconfirmed ones are
    named, so a finished broadcast never shows channels as pending forever.
    """
    counts = Counter(delivery.status for delivery in record.deliveries)
    parts = [f"{counts[DeliveryStatus.SENT]:,} delivered", f"{counts[DeliveryStatus.FAILED]:,} failed"]
    others = (
        ("unconfirmed", counts[DeliveryStatus.UNCONFIRMED]),
        ("skipped", counts[DeliveryStatus.SKIPPED]),
        ("cancelled", counts[DeliveryStatus.CANCELLED]),
        ("pending", counts[DeliveryStatus.PENDING] + counts[DeliveryStatus.SENDING]),
    )
    parts.extend(f"{count:,} {label}" for label, count in others if count)
    return ", ".join(parts)


def _broadcast_blocks(
    broadcasts: Sequence[BroadcastRecord], *, can_manage: bool = False
) -> list[dict[str, Any]]:
    """Return one line per broadcast. For managers, each has a menu to edit, delete or follow up."""
    if not broadcasts:
        return [
            context(
                "Nothing has been sent yet. Send to a segment with *Send* or `/segment send NAME`."
            )
        ]
    lines = []
    for record in broadcasts[:HOME_BROADCASTS]:
        status = _STATUS_LABELS.get(str(record.status), str(record.status))
        lines.append(
            f"*{clip(escape_mrkdwn(record.segment_name), 120)}*, {slack_date(record.created_at)}: "
            f"{status}. {delivery_summary(record)}."
        )
    if not can_manage:
        return [section(text) for text in pack_lines(lines)]
    # One section per broadcast, because the menu is a section's accessory.
    blocks = []
    for record, line in zip(broadcasts[:HOME_BROADCASTS], lines, strict=True):
        block = section(line, block_id=f"{BROADCAST_BLOCK_PREFIX}{record.id}")
        if any(delivery.status == DeliveryStatus.SENT and delivery.ts for delivery in record.deliveries):
            block["accessory"] = broadcast_menu(record.id)
        blocks.append(block)
    return blocks


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
        _frequency_cap_block(settings.frequency_cap_days),
    ]
    return _modal(
        title="Workspace settings",
        callback_id=SETTINGS_VIEW,
        submit="Save",
        close="Cancel",
        blocks=blocks,
    )


def _frequency_cap_block(cap_days: int | None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "number_input",
        "action_id": FREQUENCY_CAP_ACTION,
        "is_decimal_allowed": False,
        "min_value": "1",
    }
    if cap_days is not None:
        element["initial_value"] = str(cap_days)
    return {
        "type": "input",
        "block_id": FREQUENCY_CAP_BLOCK,
        "optional": True,
        "label": _plain("Frequency cap (days)"),
        "hint": _plain(
            "Skip channels that received a broadcast in the last N days. Leave it empty to turn "
            "the cap off."
        ),
        "element": element,
    }


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
        frequency_cap=text(FREQUENCY_CAP_BLOCK, FREQUENCY_CAP_ACTION),
    )


# Scheduled broadcasts: the Home section and its edit and cancel modals -----------------------

# Buttons of a scheduled broadcast, whose value is the broadcast id.
SCHEDULED_EDIT_ACTION = "home_scheduled_edit"
SCHEDULED_CANCEL_ACTION = "home_scheduled_cancel"
SCHEDULED_BLOCK_PREFIX = "home_scheduled:"
SCHEDULED_EDIT_VIEW = "home_scheduled_edit"
SCHEDULED_CANCEL_VIEW = "home_scheduled_cancel"
# At most this many scheduled broadcasts are listed, fewer when the rest of Home leaves less room.
HOME_SCHEDULED = 10
MAX_EXCERPT_CHARS = 150


def scheduled_blocks(
    scheduled: Sequence[ScheduledBroadcast], *, can_manage: bool, max_blocks: int
) -> list[dict[str, Any]]:
    """Return the "Scheduled" section in at most `max_blocks` blocks, or nothing when none is scheduled.

    Managers get Edit and Cancel buttons under each broadcast. Broadcasts beyond the room are
    counted in an "and N more" line.
    """
    # The divider, the header and the "and N more" line.
    fixed = 3
    per_broadcast = 2 if can_manage else 1
    shown = min(len(scheduled), HOME_SCHEDULED, (max_blocks - fixed) // per_broadcast)
    if not scheduled or shown <= 0:
        return []

    blocks: list[dict[str, Any]] = [{"type": "divider"}, header("Scheduled")]
    for item in scheduled[:shown]:
        blocks.append(section(scheduled_line(item)))
        if can_manage:
            value = str(item.id)
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"{SCHEDULED_BLOCK_PREFIX}{item.id}",
                    "elements": [
                        button("Edit", action_id=SCHEDULED_EDIT_ACTION, value=value),
                        button(
                            "Cancel", action_id=SCHEDULED_CANCEL_ACTION, value=value, style="danger"
                        ),
                    ],
                }
            )
    hidden = len(scheduled) - shown
    if hidden > 0:
        blocks.append(context(more_line(hidden, "scheduled broadcasts")))
    return blocks


def scheduled_line(item: ScheduledBroadcast) -> str:
    """Describe a scheduled broadcast: segment, send time in its stored zone, sender, excerpt."""
    name = clip(escape_mrkdwn(item.segment_name), 120)
    when = format_send_time(item.scheduled_at, timezone=item.timezone)
    return f"*{name}*, {escape_mrkdwn(when)}, scheduled by <@{item.sent_by}>\n>{message_excerpt(item)}"


def message_excerpt(item: ScheduledBroadcast) -> str:
    """Return the start of the message on one line, escaped so that no markup in it takes effect.

    The stored text is mrkdwn, so its entities are decoded first and the excerpt shows mentions and
    links as typed, such as `<@U123>`, without notifying anyone.
    """
    flat = " ".join(html.unescape(item.message_text).split())
    return clip(escape_mrkdwn(flat), MAX_EXCERPT_CHARS)


def scheduled_edit_modal(item: ScheduledBroadcast, *, workspace_timezone: str) -> dict[str, Any]:
    """Return the modal that changes a scheduled broadcast's date, time, zone and message."""
    local = item.scheduled_at.astimezone(_zone(item.timezone))
    fields = ScheduleFields(
        day=local.date().isoformat(), time_of_day=f"{local:%H:%M}", timezone=item.timezone
    )
    message = _editable_message(item)
    blocks: list[dict[str, Any]] = [
        section(f"Broadcast to *{clip(escape_mrkdwn(item.segment_name), 120)}*"),
        *schedule_inputs(fields, workspace_timezone=workspace_timezone),
        {
            "type": "input",
            "block_id": MESSAGE_BLOCK,
            "label": _plain("Message"),
            "element": {
                "type": "rich_text_input",
                "action_id": MESSAGE_ACTION,
                "initial_value": message,
            },
        },
    ]
    return _modal(
        title="Edit scheduled",
        callback_id=SCHEDULED_EDIT_VIEW,
        submit="Save",
        close="Cancel",
        private_metadata=json.dumps({"broadcast_id": item.id}),
        blocks=blocks,
    )


@dataclass(frozen=True)
class ScheduledEditForm:
    """The values of a submitted edit modal, before validation."""

    schedule: ScheduleFields
    message: dict[str, Any] | None


def read_scheduled_edit_form(values: Mapping[str, Any]) -> ScheduledEditForm:
    """Read the edit modal's `view.state.values`."""
    message = values.get(MESSAGE_BLOCK, {}).get(MESSAGE_ACTION, {}).get("rich_text_value")
    return ScheduledEditForm(
        schedule=read_schedule_fields(values),
        message=message if isinstance(message, dict) else None,
    )


def scheduled_edit_errors(
    form: ScheduledEditForm, *, message_text: str, now: datetime
) -> dict[str, str]:
    """Return inline errors by block id for the edit modal, or an empty dict when it can be saved."""
    errors = schedule_errors(form.schedule, now=now)
    problem = message_error(message_text)
    if problem is not None:
        errors[MESSAGE_BLOCK] = problem
    return errors


def scheduled_cancel_modal(item: ScheduledBroadcast) -> dict[str, Any]:
    """Return the modal whose submission cancels the scheduled broadcast in `private_metadata`."""
    return _modal(
        title="Cancel broadcast",
        callback_id=SCHEDULED_CANCEL_VIEW,
        submit="Cancel broadcast",
        close="Keep it",
        private_metadata=json.dumps({"broadcast_id": item.id}),
        blocks=[
            section(f"Cancel this scheduled broadcast? Nothing will be posted.\n{scheduled_line(item)}")
        ],
    )


def scheduled_broadcast_id(private_metadata: str) -> int | None:
    """Return the broadcast id that the edit or cancel modal stored, or None for other metadata."""
    try:
        data = json.loads(private_metadata or "{}")
    except json.JSONDecodeError:
        return None
    value = data.get("broadcast_id") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _editable_message(item: ScheduledBroadcast) -> dict[str, Any]:
    """Return the stored `rich_text` block to edit, or one converted from the text when there is none."""
    for block in item.message_blocks or ():
        if block.get("type") == "rich_text":
            return dict(block)
    return mrkdwn_to_rich_text(item.message_text)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
