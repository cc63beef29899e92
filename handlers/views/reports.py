"""Block Kit for acting on a sent broadcast: the edit and follow-up modals and the delete confirmation.

The buttons themselves are on the report DM (`segments.broadcasts.report_controls`) and on the
Home tab's latest broadcasts (`HOME_BROADCAST_MENU_ACTION`). Each modal keeps the broadcast id and
the action kind in `private_metadata`, and `read_action_metadata` reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handlers.views.send import MAX_MESSAGE_CHARS, mrkdwn_to_rich_text, rich_text_to_mrkdwn
from segments.broadcasts import (
    REPORT_CANCEL_ACTION,
    REPORT_DELETE_ACTION,
    REPORT_EDIT_ACTION,
    REPORT_FOLLOWUP_ACTION,
    REPORT_RESEND_ACTION,
)
from segments.followups import ActionKind
from segments.personalize import TemplateError, check_template_syntax, join_split_variables
from segments.slack_text import escape_mrkdwn

__all__ = [
    "ACTION_VIEW",
    "HOME_BROADCAST_MENU_ACTION",
    "REPORT_CANCEL_ACTION",
    "REPORT_DELETE_ACTION",
    "REPORT_EDIT_ACTION",
    "REPORT_FOLLOWUP_ACTION",
    "REPORT_RESEND_ACTION",
]

# One callback id for the three modals, because the kind is in `private_metadata`.
ACTION_VIEW = "broadcast_action"
TEXT_BLOCK = "broadcast_action_text"
TEXT_ACTION = "broadcast_action_text_input"
# The overflow menu of each broadcast on the Home tab. Option values are `<kind>:<broadcast id>`.
HOME_BROADCAST_MENU_ACTION = "home_broadcast_menu"

_TITLES = {
    ActionKind.EDIT: "Edit message",
    ActionKind.FOLLOWUP: "Post a follow-up",
    ActionKind.DELETE: "Delete message",
}
_SUBMITS = {
    ActionKind.EDIT: "Edit everywhere",
    ActionKind.FOLLOWUP: "Post",
    ActionKind.DELETE: "Delete",
}
_MENU_LABELS = {
    ActionKind.EDIT: "Edit message",
    ActionKind.FOLLOWUP: "Post a follow-up",
    ActionKind.DELETE: "Delete message",
}


@dataclass(frozen=True)
class ActionMetadata:
    broadcast_id: int
    kind: ActionKind


def read_action_metadata(private_metadata: str) -> ActionMetadata | None:
    """Return what an action modal is for, or None for metadata this module did not write."""
    try:
        data = json.loads(private_metadata or "{}")
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    broadcast_id = data.get("broadcast_id")
    kind = data.get("kind")
    if not isinstance(broadcast_id, int) or isinstance(broadcast_id, bool):
        return None
    if kind not in {member.value for member in ActionKind}:
        return None
    return ActionMetadata(broadcast_id=broadcast_id, kind=ActionKind(kind))


def text_modal(
    *,
    kind: ActionKind,
    broadcast_id: int,
    segment_name: str,
    channel_count: int,
    initial: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the edit or follow-up modal with a `rich_text_input`, pre-filled with `initial`."""
    element: dict[str, Any] = {"type": "rich_text_input", "action_id": TEXT_ACTION}
    if initial is not None:
        element["initial_value"] = dict(initial)
    name = escape_mrkdwn(segment_name)
    if kind == ActionKind.EDIT:
        intro = f"The new text replaces the message of *{name}* in {_channels(channel_count)}."
        label = "New message"
    else:
        intro = f"The reply goes into the thread of *{name}* in {_channels(channel_count)}."
        label = "Reply"
    blocks = [
        _section(intro + " Variables such as `{{company.name}}` are filled in per channel."),
        {"type": "input", "block_id": TEXT_BLOCK, "label": _plain(label), "element": element},
    ]
    return _modal(kind=kind, broadcast_id=broadcast_id, blocks=blocks)


def delete_modal(*, broadcast_id: int, segment_name: str, channel_count: int) -> dict[str, Any]:
    """Build the confirmation whose submission deletes the message everywhere."""
    text = (
        f"Delete the message of *{escape_mrkdwn(segment_name)}* in {_channels(channel_count)}? "
        "This cannot be undone."
    )
    return _modal(kind=ActionKind.DELETE, broadcast_id=broadcast_id, blocks=[_section(text)])


def message_view(text: str) -> dict[str, Any]:
    """Build a modal that only shows `text`, such as why an action cannot start."""
    return {
        "type": "modal",
        "callback_id": ACTION_VIEW,
        "title": _plain("Sent broadcast"),
        "close": _plain("Close"),
        "blocks": [_section(text)],
    }


def initial_message(
    message_text: str, message_blocks: Sequence[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Return the broadcast's message as a `rich_text` block to pre-fill the edit modal."""
    for block in message_blocks or ():
        if block.get("type") == "rich_text":
            return dict(block)
    return mrkdwn_to_rich_text(message_text)


@dataclass(frozen=True)
class ActionText:
    """A submitted edit or follow-up: the rich text block and its mrkdwn rendering."""

    block: dict[str, Any] | None
    text: str


def read_action_text(values: Mapping[str, Any]) -> ActionText:
    """Read the rich text of a submitted edit or follow-up modal."""
    raw = values.get(TEXT_BLOCK, {}).get(TEXT_ACTION, {}).get("rich_text_value")
    if not isinstance(raw, dict):
        return ActionText(block=None, text="")
    block = join_split_variables(raw)
    return ActionText(block=block, text=rich_text_to_mrkdwn(block))


def action_text_errors(submitted: ActionText) -> dict[str, str]:
    """Return inline errors by block id, or an empty dict when the text can be used."""
    if submitted.block is None or not submitted.text.strip():
        return {TEXT_BLOCK: "The text is empty. Write the text to post."}
    if len(submitted.text) > MAX_MESSAGE_CHARS:
        return {
            TEXT_BLOCK: f"The text is {len(submitted.text):,} characters long, but Slack shows at "
            f"most {MAX_MESSAGE_CHARS:,}. Shorten it."
        }
    try:
        check_template_syntax(submitted.text)
    except TemplateError as exc:
        return {TEXT_BLOCK: str(exc)}
    return {}


def broadcast_menu(broadcast_id: int) -> dict[str, Any]:
    """Return the Home tab's overflow menu with Edit, Follow up and Delete for one broadcast."""
    return {
        "type": "overflow",
        "action_id": HOME_BROADCAST_MENU_ACTION,
        "options": [
            {"text": _plain(_MENU_LABELS[kind]), "value": f"{kind.value}:{broadcast_id}"}
            for kind in (ActionKind.EDIT, ActionKind.FOLLOWUP, ActionKind.DELETE)
        ],
    }


def read_menu_choice(value: str) -> ActionMetadata | None:
    """Read an option value of `broadcast_menu`, or return None for any other value."""
    kind, _, raw_id = value.partition(":")
    if kind not in {member.value for member in ActionKind} or not raw_id.isdigit():
        return None
    return ActionMetadata(broadcast_id=int(raw_id), kind=ActionKind(kind))


def _modal(*, kind: ActionKind, broadcast_id: int, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ACTION_VIEW,
        "title": _plain(_TITLES[kind]),
        "submit": _plain(_SUBMITS[kind]),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"broadcast_id": broadcast_id, "kind": kind.value}),
        "blocks": blocks,
    }


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _channels(count: int) -> str:
    return f"{count:,} channel" if count == 1 else f"{count:,} channels"
