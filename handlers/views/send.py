"""Block Kit for "Send to segment": the send modal, its confirmation, and message text conversion.

The send modal picks a saved segment, takes a `rich_text_input` message, and sends now or at a
later date, time and time zone. The confirmation lists every channel that will get the message, or
that would get it today when it is scheduled. Rich text posts as `blocks`, and its mrkdwn rendering
is the `text` fallback. Ids below are shared with `handlers/send.py`, which matches on them.
"""

from __future__ import annotations

import copy
import html
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from segments.audience import Audience
from segments.channels import BOT_MENTION
from segments.personalize import TemplateError, check_template_syntax
from segments.ports import DeliveryTarget, SegmentRecord
from segments.scheduling import default_send_time, send_time, utc_clock, wall_time_exists
from segments.slack_text import escape_mrkdwn

# Callback ids of the shortcuts (the app manifest uses the same two) and of the two views.
GLOBAL_SHORTCUT_CALLBACK = "send_to_segment"
MESSAGE_SHORTCUT_CALLBACK = "send_message_to_segment"
SEND_CALLBACK = "send_to_segment_modal"
CONFIRM_CALLBACK = "send_to_segment_confirm"

SEGMENT_BLOCK = "send_segment"
SEGMENT_ACTION = "send_segment_select"
MESSAGE_BLOCK = "send_message"
MESSAGE_ACTION = "send_message_input"
TEST_BLOCK = "send_test"
TEST_ACTION = "send_test_first"
TEST_VALUE = "test_first"
WHEN_BLOCK = "send_when"
WHEN_ACTION = "send_when_choice"
SEND_NOW = "now"
SEND_LATER = "later"
DATE_BLOCK = "send_date"
DATE_ACTION = "send_date_pick"
TIME_BLOCK = "send_time"
TIME_ACTION = "send_time_pick"
ZONE_BLOCK = "send_zone"
ZONE_ACTION = "send_zone_select"

TITLE = "Send to segment"
# Slack limits: 100 options in a static select, 75 characters of option text, 100 blocks in a
# view and 3,000 characters in a section. Slack truncates message text beyond 40,000 characters.
MAX_STATIC_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_MESSAGE_CHARS = 40_000
# Unmapped reasons shown in the confirmation, largest groups first.
MAX_UNMAPPED_REASONS = 3
MAX_WARNINGS = 5

TEST_SENT = f"A test was sent to you in a direct message from {BOT_MENTION}."
EXPIRED = (
    "This confirmation has expired, so nothing was sent. Open Send to segment again to send the "
    "message."
)


# The send modal


def segment_option(segment: SegmentRecord) -> dict[str, Any]:
    name = segment.name
    if len(name) > MAX_OPTION_TEXT:
        name = name[: MAX_OPTION_TEXT - 1] + "…"
    return {"text": _plain(name), "value": str(segment.id)}


def segment_options(segments: Sequence[SegmentRecord], query: str) -> list[dict[str, Any]]:
    """Return options for segments whose name contains `query` (ignoring case), at most 100."""
    needle = query.strip().casefold()
    matching = [segment for segment in segments if needle in segment.name.casefold()]
    return [segment_option(segment) for segment in matching[:MAX_STATIC_OPTIONS]]


def send_modal(
    *,
    segments: Sequence[SegmentRecord],
    selected: SegmentRecord | None = None,
    notice: str | None = None,
    initial_message: Mapping[str, Any] | None = None,
    message_notice: str | None = None,
    timezone: str = "UTC",
    now: datetime | None = None,
    schedule: ScheduleFields | None = None,
) -> dict[str, Any]:
    """Build the modal that picks a segment, takes the message and chooses when to send it.

    A static select lists up to 100 segments; with more, an external select loads matching names
    as the person types. `notice` is shown above the segment, for example an unknown name. The
    send-later fields start at the next full hour in `timezone`, the workspace's time zone, or at
    `schedule` when the modal is shown again with what the person chose.
    """
    if not segments:
        return {
            "type": "modal",
            "callback_id": SEND_CALLBACK,
            "title": _plain(TITLE),
            "close": _plain("Close"),
            "blocks": [
                _section(
                    "No segments are saved yet. Create one with `/segment new`, then send to it."
                )
            ],
        }

    blocks: list[dict[str, Any]] = []
    if notice:
        blocks.append(_context(notice))
    blocks.append(_segment_input(segments, selected))

    message_input: dict[str, Any] = {
        "type": "rich_text_input",
        "action_id": MESSAGE_ACTION,
        "placeholder": _plain("What should every channel in the segment read?"),
    }
    if initial_message is not None:
        message_input["initial_value"] = dict(initial_message)
    blocks.append(
        {
            "type": "input",
            "block_id": MESSAGE_BLOCK,
            "label": _plain("Message"),
            "element": message_input,
        }
    )
    if message_notice:
        blocks.append(_context(message_notice))
    blocks.append(
        {
            "type": "input",
            "block_id": TEST_BLOCK,
            "optional": True,
            "label": _plain("Test"),
            "element": {
                "type": "checkboxes",
                "action_id": TEST_ACTION,
                "options": [
                    {
                        "text": _plain("Send me a test first"),
                        "description": _plain("You get the message by DM before anyone else."),
                        "value": TEST_VALUE,
                    }
                ],
            },
        }
    )
    blocks.append(when_input(send_later=schedule is not None))
    if schedule is None:
        day, time_of_day = default_send_time(now=now or utc_clock(), timezone=timezone)
        schedule = ScheduleFields(
            day=day.isoformat(), time_of_day=f"{time_of_day:%H:%M}", timezone=timezone
        )
    blocks.extend(
        schedule_inputs(schedule, workspace_timezone=timezone, hint="Used only with Send later.")
    )
    return {
        "type": "modal",
        "callback_id": SEND_CALLBACK,
        "title": _plain(TITLE),
        "submit": _plain("Next"),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def _segment_input(
    segments: Sequence[SegmentRecord], selected: SegmentRecord | None
) -> dict[str, Any]:
    element: dict[str, Any]
    if len(segments) > MAX_STATIC_OPTIONS:
        element = {
            "type": "external_select",
            "action_id": SEGMENT_ACTION,
            "placeholder": _plain("Type part of a segment name"),
            "min_query_length": 0,
        }
    else:
        element = {
            "type": "static_select",
            "action_id": SEGMENT_ACTION,
            "placeholder": _plain("Choose a segment"),
            "options": [segment_option(segment) for segment in segments],
        }
    if selected is not None:
        element["initial_option"] = segment_option(selected)
    return {
        "type": "input",
        "block_id": SEGMENT_BLOCK,
        "label": _plain("Segment"),
        "element": element,
    }


@dataclass(frozen=True)
class SendForm:
    """The values of a submitted send modal."""

    segment_id: int | None
    message: dict[str, Any] | None
    test_first: bool
    # The date, time and zone to send at, or None to send now.
    schedule: ScheduleFields | None = None


def read_send_form(values: Mapping[str, Any]) -> SendForm:
    """Read `view.state.values` of the send modal."""
    segment_state = values.get(SEGMENT_BLOCK, {}).get(SEGMENT_ACTION, {})
    raw_id = str((segment_state.get("selected_option") or {}).get("value") or "")
    message = values.get(MESSAGE_BLOCK, {}).get(MESSAGE_ACTION, {}).get("rich_text_value")
    checked = values.get(TEST_BLOCK, {}).get(TEST_ACTION, {}).get("selected_options") or []
    when = values.get(WHEN_BLOCK, {}).get(WHEN_ACTION, {}).get("selected_option") or {}
    return SendForm(
        segment_id=int(raw_id) if raw_id.isdigit() else None,
        message=message if isinstance(message, dict) else None,
        test_first=any(option.get("value") == TEST_VALUE for option in checked),
        schedule=read_schedule_fields(values) if when.get("value") == SEND_LATER else None,
    )


def send_form_errors(
    form: SendForm, *, message_text: str, now: datetime | None = None
) -> dict[str, str]:
    """Return inline errors by block id, or an empty dict when the form can be sent.

    A send-later time is checked against `now`, the current time when it is None.
    """
    errors = {}
    if form.segment_id is None:
        errors[SEGMENT_BLOCK] = "Choose a segment to send to."
    problem = message_error(message_text)
    if problem is not None:
        errors[MESSAGE_BLOCK] = problem
    if form.schedule is not None:
        errors.update(schedule_errors(form.schedule, now=now or utc_clock()))
    return errors


def message_error(message_text: str) -> str | None:
    """Return why the message cannot be sent (empty, too long, broken variables), or None."""
    if not message_text.strip():
        return "The message is empty. Write the message to send."
    if len(message_text) > MAX_MESSAGE_CHARS:
        return (
            f"The message is {len(message_text):,} characters long, but Slack shows at most "
            f"{MAX_MESSAGE_CHARS:,}. Shorten it."
        )
    try:
        check_template_syntax(message_text)
    except TemplateError as exc:
        return str(exc)
    return None


# Send later


# Offered in every time zone select, besides the workspace's zone and a broadcast's stored zone.
# One or two zones per populated region, as IANA names, so a person finds theirs by city.
COMMON_TIMEZONES = (
    "UTC",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Vancouver",
    "America/Phoenix",
    "America/Denver",
    "America/Chicago",
    "America/Mexico_City",
    "America/New_York",
    "America/Toronto",
    "America/Bogota",
    "America/Halifax",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "Atlantic/Reykjavik",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Amsterdam",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Zurich",
    "Europe/Stockholm",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Helsinki",
    "Europe/Kyiv",
    "Europe/Istanbul",
    "Africa/Lagos",
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Africa/Nairobi",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Jakarta",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Manila",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Australia/Perth",
    "Australia/Brisbane",
    "Australia/Sydney",
    "Pacific/Auckland",
)


_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True)
class ScheduleFields:
    """The send-later date, time and zone as submitted, before validation. Missing ones are ""."""

    day: str
    time_of_day: str
    timezone: str


def when_input(*, send_later: bool) -> dict[str, Any]:
    """Return the "Send now / Send later" radio buttons, with `send_later` chosen or not."""
    now_option = {"text": _plain("Send now"), "value": SEND_NOW}
    later_option = {
        "text": _plain("Send later"),
        "description": _plain("Membership is checked again when it sends."),
        "value": SEND_LATER,
    }
    return {
        "type": "input",
        "block_id": WHEN_BLOCK,
        "label": _plain("When"),
        "element": {
            "type": "radio_buttons",
            "action_id": WHEN_ACTION,
            "options": [now_option, later_option],
            "initial_option": later_option if send_later else now_option,
        },
    }


def timezone_options(*first: str) -> list[dict[str, Any]]:
    """Return time zone options: the zones in `first`, then `COMMON_TIMEZONES`, at most 100."""
    names = list(dict.fromkeys(name for name in (*first, *COMMON_TIMEZONES) if name))
    return [{"text": _plain(name[:MAX_OPTION_TEXT]), "value": name} for name in names][
        :MAX_STATIC_OPTIONS
    ]


def schedule_inputs(
    fields: ScheduleFields, *, workspace_timezone: str, hint: str | None = None
) -> list[dict[str, Any]]:
    """Return the date, time and time zone inputs, filled in with `fields`.

    They are optional in Slack's eyes, so "Send now" submits without them, and `schedule_errors`
    reports what is missing when the person sends later. `hint` goes under the date.
    """
    zone_options = timezone_options(fields.timezone, workspace_timezone)
    date_element: dict[str, Any] = {"type": "datepicker", "action_id": DATE_ACTION}
    if fields.day:
        date_element["initial_date"] = fields.day
    time_element: dict[str, Any] = {"type": "timepicker", "action_id": TIME_ACTION}
    if fields.time_of_day:
        time_element["initial_time"] = fields.time_of_day
    zone_element: dict[str, Any] = {
        "type": "static_select",
        "action_id": ZONE_ACTION,
        "options": zone_options,
    }
    chosen = next((option for option in zone_options if option["value"] == fields.timezone), None)
    if chosen is not None:
        zone_element["initial_option"] = chosen
    date_block: dict[str, Any] = {
        "type": "input",
        "block_id": DATE_BLOCK,
        "optional": True,
        "label": _plain("Date"),
        "element": date_element,
    }
    if hint:
        date_block["hint"] = _plain(hint)
    return [
        date_block,
        {
            "type": "input",
            "block_id": TIME_BLOCK,
            "optional": True,
            "label": _plain("Time"),
            "element": time_element,
        },
        {
            "type": "input",
            "block_id": ZONE_BLOCK,
            "optional": True,
            "label": _plain("Time zone"),
            "element": zone_element,
        },
    ]


def read_schedule_fields(values: Mapping[str, Any]) -> ScheduleFields:
    """Read the date, time and time zone inputs from `view.state.values`."""
    day = values.get(DATE_BLOCK, {}).get(DATE_ACTION, {}).get("selected_date")
    time_of_day = values.get(TIME_BLOCK, {}).get(TIME_ACTION, {}).get("selected_time")
    zone = values.get(ZONE_BLOCK, {}).get(ZONE_ACTION, {}).get("selected_option") or {}
    return ScheduleFields(
        day=str(day or ""), time_of_day=str(time_of_day or ""), timezone=str(zone.get("value") or "")
    )


def schedule_errors(fields: ScheduleFields, *, now: datetime) -> dict[str, str]:
    """Return inline errors by block id for a send-later time, or an empty dict when it is valid."""
    errors: dict[str, str] = {}
    day = _parse(date.fromisoformat, fields.day)
    time_of_day = _parse(time.fromisoformat, fields.time_of_day)
    if day is None:
        errors[DATE_BLOCK] = "Pick the date to send on."
    if time_of_day is None:
        errors[TIME_BLOCK] = "Pick the time to send at."
    zone: ZoneInfo | None = None
    try:
        zone = ZoneInfo(fields.timezone) if fields.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is None:
        errors[ZONE_BLOCK] = (
            f'Time zone "{fields.timezone}" was not found. Pick one from the list.'
            if fields.timezone
            else "Pick the time zone of the date and time."
        )
    if errors or day is None or time_of_day is None or zone is None:
        return errors
    if not wall_time_exists(day=day, time_of_day=time_of_day, zone=zone):
        errors[TIME_BLOCK] = (
            f"{time_of_day:%H:%M} does not exist on {day:%a %d %b %Y} in {fields.timezone}, because "
            "the clocks move forward that night. Pick another time."
        )
        return errors
    if send_time(day=day, time_of_day=time_of_day, timezone=fields.timezone) <= now:
        # A past day is the date's fault. Today at an hour already gone is the time's fault.
        block = DATE_BLOCK if day < now.astimezone(zone).date() else TIME_BLOCK
        errors[block] = "That time has already passed. Pick a date and time in the future."
    return errors


def scheduled_instant(fields: ScheduleFields) -> datetime:
    """Return the UTC instant of fields that `schedule_errors` accepted. Raises ValueError otherwise."""
    return send_time(
        day=date.fromisoformat(fields.day),
        time_of_day=time.fromisoformat(fields.time_of_day),
        timezone=fields.timezone,
    )


def _parse(parser: Callable[[str], _Parsed], text: str) -> _Parsed | None:
    if not text:
        return None
    try:
        return parser(text)
    except ValueError:
        return None


# The views after the send modal


def checking_view(segment_name: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": CONFIRM_CALLBACK,
        "title": _plain(TITLE),
        "close": _plain("Cancel"),
        "blocks": [
            _section(f"Checking who in *{escape_mrkdwn(segment_name)}* will receive the message…")
        ],
    }


def message_view(text: str) -> dict[str, Any]:
    """Build a modal that only shows `text`, such as why the audience could not be resolved."""
    return {
        "type": "modal",
        "callback_id": CONFIRM_CALLBACK,
        "title": _plain(TITLE),
        "close": _plain("Close"),
        "blocks": [_section(text)],
    }


def confirmation_view(
    *,
    segment_name: str,
    audience: Audience,
    message: Mapping[str, Any],
    test_note: str | None,
    metadata: str,
    preview_note: str | None = None,
    send_at: str | None = None,
    capped: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """List exactly which channels will get the message, and what is left out.

    `message` is the block one channel will see, and `preview_note` names the channel and
    company a personalized message was rendered for. Without channels the view says there is
    nobody to send to and has no submit button. With `send_at`, the send time as people read it,
    the view confirms a scheduled send instead, and shows the channels as today's estimate.
    `capped` maps the channels the workspace's frequency cap skips to the reason for each.
    """
    name = escape_mrkdwn(segment_name)
    capped = capped or {}
    channel_count = len(audience.targets) - len(capped)
    companies = len({row.company_id for row in audience.matched})
    tail: list[dict[str, Any]] = []
    unmapped = _unmapped_section(audience)
    if unmapped is not None:
        tail.append(unmapped)
    if audience.warnings:
        tail.append(_warnings_context(audience.warnings))
    if test_note:
        tail.append(_context(test_note))
    if capped:
        tail.insert(0, _capped_section(audience, capped))

    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": CONFIRM_CALLBACK,
        "title": _plain(TITLE),
        "private_metadata": metadata,
    }
    if send_at is not None:
        return _scheduled_confirmation(
            view,
            name=name,
            send_at=send_at,
            channel_ids=[target.channel_id for target in audience.targets],
            companies=companies,
            tail=tail,
            message=message,
            preview_note=preview_note,
        )
    if channel_count == 0:
        reason = (
            "every channel received a broadcast within the workspace's frequency cap"
            if capped
            else "no company in the segment has a Slack channel right now"
        )
        head = _section(f"Nobody to send to in *{name}*: {reason}, so there is nothing to post.")
        view["close"] = _plain("Close")
        view["blocks"] = [head, *tail]
        return view

    head = _section(
        f"*{name}* will go to *{_count(channel_count, 'channel')}* "
        f"({_count(companies, 'company', 'companies')}):"
    )
    preview = [{"type": "divider"}, _section("*Message*")]
    if preview_note:
        preview.append(_context(preview_note))
    preview.append(dict(message))
    room = MAX_VIEW_BLOCKS - 1 - len(tail) - len(preview)
    channel_ids = [target.channel_id for target in audience.targets if target.channel_id not in capped]
    view["submit"] = _plain(f"Send to {_count(channel_count, 'channel')}")
    view["close"] = _plain("Back")
    view["blocks"] = [head, *_mention_sections(channel_ids, max_blocks=room), *tail, *preview]
    return view


# The frequency-capped channels the confirmation names one by one; the rest are counted.
MAX_CAPPED_LISTED = 10


def _capped_section(audience: Audience, capped: Mapping[str, str]) -> dict[str, Any]:
    names = {target.channel_id: target.channel_name for target in audience.targets}
    lines = [f"*{_count(len(capped), 'channel')} will be skipped* by the workspace's frequency cap:"]
    for channel_id, reason in list(capped.items())[:MAX_CAPPED_LISTED]:
        lines.append(f"• #{escape_mrkdwn(names.get(channel_id, channel_id))}: {escape_mrkdwn(reason)}")
    if len(capped) > MAX_CAPPED_LISTED:
        lines.append(f"• and {len(capped) - MAX_CAPPED_LISTED:,} more")
    return _section(_clip("\n".join(lines)))


# Slack limits modal button labels to 24 characters.
SCHEDULE_SUBMIT = "Schedule"
ESTIMATE_NOTE = (
    "This is today's audience, an estimate. Membership is resolved again when it sends, so "
    "companies that join or leave the segment by then are added or dropped, and the report "
    "lists them."
)


def _scheduled_confirmation(
    view: dict[str, Any],
    *,
    name: str,
    send_at: str,
    channel_ids: Sequence[str],
    companies: int,
    tail: list[dict[str, Any]],
    message: Mapping[str, Any],
    preview_note: str | None,
) -> dict[str, Any]:
    """Fill `view` as the confirmation of a scheduled send, which is allowed with no channel today."""
    if channel_ids:
        audience_line = (
            f"Today it would go to *{_count(len(channel_ids), 'channel')}* "
            f"({_count(companies, 'company', 'companies')}):"
        )
    else:
        audience_line = "Today no company in the segment has a Slack channel."
    head = _section(f"Scheduled for *{send_at}* to *{name}*.\n{audience_line}")
    estimate = _context(ESTIMATE_NOTE)
    preview = [{"type": "divider"}, _section("*Message*")]
    if preview_note:
        preview.append(_context(preview_note))
    preview.append(dict(message))
    room = MAX_VIEW_BLOCKS - 2 - len(tail) - len(preview)
    view["submit"] = _plain(SCHEDULE_SUBMIT)
    view["close"] = _plain("Back")
    view["blocks"] = [
        head,
        *_mention_sections(channel_ids, max_blocks=room),
        estimate,
        *tail,
        *preview,
    ]
    return view


def scheduled_dm_text(*, segment_name: str, send_at: str) -> str:
    """Return the DM that confirms a scheduled send to its sender."""
    return (
        f"Scheduled: your message to *{escape_mrkdwn(segment_name)}* goes out {send_at}. "
        "Membership is resolved again then. Edit or cancel it under Scheduled in segment-bot's "
        "App Home."
    )


def _mention_sections(channel_ids: Sequence[str], *, max_blocks: int) -> list[dict[str, Any]]:
    """Split channel mentions over sections of at most 3,000 characters and `max_blocks` blocks."""
    sections: list[str] = []
    current = ""
    for index, channel_id in enumerate(channel_ids):
        mention = f"<#{channel_id}>"
        joined = f"{current}, {mention}" if current else mention
        if len(joined) <= MAX_SECTION_TEXT:
            current = joined
            continue
        sections.append(current)
        current = mention
        if len(sections) == max_blocks - 1:
            # Keep the last block for the rest, named by count.
            hidden = len(channel_ids) - index
            current = f"…and {_count(hidden, 'more channel')}."
            break
    if current:
        sections.append(current)
    return [_section(text) for text in sections]


def _unmapped_section(audience: Audience) -> dict[str, Any] | None:
    if not audience.unmapped:
        return None
    companies = len({row.company_id for row in audience.unmapped})
    have = _count(companies, "matching company has", "matching companies have")
    lines = [f"*{have} no channel* and will not get the message:"]
    by_kind = Counter(row.kind for row in audience.unmapped)
    example = {row.kind: row for row in reversed(audience.unmapped)}
    for kind, count in by_kind.most_common(MAX_UNMAPPED_REASONS):
        name = escape_mrkdwn(example[kind].company_name)
        lines.append(f"• {count:,}, for example {name}: {escape_mrkdwn(example[kind].reason)}")
    other = len(by_kind) - MAX_UNMAPPED_REASONS
    if other > 0:
        lines.append(f"• and {_count(other, 'other reason')}. Preview the segment to see them all.")
    return _section(_clip("\n".join(lines)))


def _warnings_context(warnings: Sequence[str]) -> dict[str, Any]:
    listed = [f":warning: {escape_mrkdwn(warning)}" for warning in warnings[:MAX_WARNINGS]]
    hidden = len(warnings) - len(listed)
    if hidden > 0:
        listed.append(f"and {_count(hidden, 'more warning')}")
    return {"type": "context", "elements": [_mrkdwn(_clip(text)) for text in listed]}


def build_test_dm(
    *,
    message: Mapping[str, Any],
    message_text: str,
    segment_name: str,
    channel_count: int,
    preview_note: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Return the text and blocks of the test DM: the message, then a note that it is a test.

    `preview_note` names the channel and company a personalized message was rendered for.
    """
    note = f"Test of your message to *{escape_mrkdwn(segment_name)}*. Nobody else got it. "
    if preview_note:
        note += f"{preview_note} "
    note += f"Confirm in the {TITLE} window to post it to {_count(channel_count, 'channel')}."
    return message_text, [dict(message), _context(note)]


def preview_note(
    *, target: DeliveryTarget, company_name: str, targets: Sequence[DeliveryTarget]
) -> str:
    """Say which channel and company a personalized preview shows, and how shared ones render."""
    company = escape_mrkdwn(company_name) if company_name.strip() else "a company without a name"
    note = f"As <#{target.channel_id}> will see it, with the values of {company}."
    shared = sum(len(item.companies) > 1 for item in targets)
    if shared:
        have = _count(shared, "channel has", "channels have")
        note += (
            f" {have} more than one company, so each of those gets the values of its first "
            "company by name."
        )
    return note


def describe_failed_test(reason: str) -> str:
    return f"The test could not be sent: {reason}"


# Rich text and mrkdwn


def rich_text_to_mrkdwn(block: Mapping[str, Any]) -> str:
    """Render a `rich_text` block as mrkdwn, for the `text` fallback of a post and for its length.

    Styles, links, mentions, emoji, lists, quotes and preformatted text are kept. Text is escaped,
    so `<!channel>` typed as text shows literally. Mention elements stay mentions.
    """
    parts: list[str] = []
    for element in block.get("elements") or []:
        rendered = _render_block_element(element)
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.append(rendered)
    return "".join(parts).rstrip("\n")


def _render_block_element(element: Mapping[str, Any]) -> str:
    kind = element.get("type")
    inline = element.get("elements") or []
    if kind == "rich_text_section":
        return _render_inline(inline)
    if kind == "rich_text_quote":
        return "\n".join(f"> {line}" for line in _render_inline(inline).split("\n"))
    if kind == "rich_text_preformatted":
        return "```" + "".join(_raw_text(item) for item in inline) + "```"
    if kind == "rich_text_list":
        indent = "    " * int(element.get("indent") or 0)
        offset = int(element.get("offset") or 0)
        lines = []
        for number, item in enumerate(inline, start=offset + 1):
            marker = f"{number}." if element.get("style") == "ordered" else "•"
            lines.append(f"{indent}{marker} {_render_inline(item.get('elements') or [])}")
        return "\n".join(lines)
    return ""


def _render_inline(elements: Sequence[Mapping[str, Any]]) -> str:
    """Render inline elements, opening and closing style markers only where the style changes.

    Markers nest in one order (bold, italic, strike, code), so `*bold _both_ bold*` comes back as
    it was typed. Slack reads a marker only when it touches a word and never across a line break,
    so spaces are kept outside markers and every marker is closed before a newline.
    """
    output = ""
    open_styles: list[str] = []
    for piece in _split_lines(elements):
        body = _render_inline_element(piece)
        if not body.strip():
            if "\n" in body:
                output = _close_markers(output, open_styles)
                open_styles = []
            output += body
            continue
        wanted = _styles_of(piece)
        common = 0
        while common < min(len(open_styles), len(wanted)) and open_styles[common] == wanted[common]:
            common += 1
        output = _close_markers(output, open_styles[common:])
        opening = wanted[common:]
        if opening:
            lead = body[: len(body) - len(body.lstrip())]
            output += lead + "".join(_STYLE_MARKERS[name] for name in opening)
            body = body[len(lead) :]
        open_styles = wanted
        output += body
    return _close_markers(output, open_styles)


# Style names in nesting order, outermost first, with their mrkdwn markers.
_STYLE_MARKERS = {"bold": "*", "italic": "_", "strike": "~", "code": "`"}
# Inline element types that carry a `style` in Slack's rich text.
_STYLED_TYPES = frozenset({"text", "link", "user", "channel", "usergroup", "broadcast"})


def _styles_of(element: Mapping[str, Any]) -> list[str]:
    if element.get("type") not in _STYLED_TYPES:
        return []
    style = element.get("style") or {}
    return [name for name in _STYLE_MARKERS if style.get(name)]


def _close_markers(output: str, styles: Sequence[str]) -> str:
    if not styles:
        return output
    core = output.rstrip()
    closing = "".join(_STYLE_MARKERS[name] for name in reversed(styles))
    return core + closing + output[len(core) :]


def _split_lines(elements: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Split text elements at newlines, so that the newline becomes an element of its own."""
    pieces: list[Mapping[str, Any]] = []
    for element in elements:
        text = element.get("text")
        if element.get("type") != "text" or not isinstance(text, str) or "\n" not in text:
            pieces.append(element)
            continue
        for index, line in enumerate(text.split("\n")):
            if index:
                pieces.append({"type": "text", "text": "\n"})
            if line:
                pieces.append({**element, "text": line})
    return pieces


def _render_inline_element(element: Mapping[str, Any]) -> str:
    """Render one inline element without its style."""
    kind = element.get("type")
    if kind == "text":
        return escape_mrkdwn(str(element.get("text", "")))
    if kind == "link":
        url = escape_mrkdwn(str(element.get("url", "")))
        label = str(element.get("text") or "")
        return f"<{url}|{escape_mrkdwn(label)}>" if label else f"<{url}>"
    if kind == "user":
        return f"<@{element.get('user_id', '')}>"
    if kind == "channel":
        return f"<#{element.get('channel_id', '')}>"
    if kind == "usergroup":
        return f"<!subteam^{element.get('usergroup_id', '')}>"
    if kind == "broadcast":
        return f"<!{element.get('range', '')}>"
    if kind == "emoji":
        return f":{element.get('name', '')}:"
    if kind == "date":
        fallback = escape_mrkdwn(str(element.get("fallback") or element.get("timestamp", "")))
        return f"<!date^{element.get('timestamp', '')}^{element.get('format', '')}|{fallback}>"
    return escape_mrkdwn(str(element.get("text") or element.get("value") or ""))


def _raw_text(element: Mapping[str, Any]) -> str:
    if element.get("type") == "link":
        return escape_mrkdwn(str(element.get("text") or element.get("url", "")))
    return escape_mrkdwn(str(element.get("text", "")))


_FENCE = re.compile(r"```(.*?)```", re.DOTALL)
_QUOTE_PREFIX = re.compile(r"^(?:&gt;|>) ?")
# A `{{...}}` variable comes first and is kept as text, so `_` or `*` in a custom field name never
# turns into a style and the variable survives the round trip to rich text and back.
_INLINE = re.compile(
    r"(?P<variable>\{\{[^{}\n]*\}\})"
    r"|<(?P<angle>[^<>\n]+)>"
    r"|`(?P<code>[^`\n]+)`"
    r"|(?<![\w*])\*(?P<bold>[^*\n]+)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>[^_\n]+)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>[^~\n]+)~(?![\w~])"
    r"|(?<![\w:]):(?P<emoji>[a-z0-9_+'-]+):(?![\w:])"
)
_BROADCAST_RANGES = frozenset({"here", "channel", "everyone"})


def mrkdwn_to_rich_text(text: str) -> dict[str, Any]:
    """Convert message mrkdwn (as Slack stores `text`) to a `rich_text` block.

    Covers what people type: bold, italic, strike, code, fenced code, quotes, links, user, channel,
    group and broadcast mentions, dates and emoji codes. Other markup stays as text.
    """
    elements: list[dict[str, Any]] = []
    position = 0
    for fence in _FENCE.finditer(text):
        elements.extend(_line_elements(text[position : fence.start()]))
        code = html.unescape(fence.group(1))
        elements.append(
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": code}]}
        )
        position = fence.end()
    elements.extend(_line_elements(text[position:]))
    return {"type": "rich_text", "elements": elements}


def _line_elements(text: str) -> list[dict[str, Any]]:
    """Group lines into sections and quotes. A newline between two groups is implied, not stored."""
    text = text.strip("\n")
    if not text:
        return []
    groups: list[tuple[bool, list[str]]] = []
    for line in text.split("\n"):
        quoted = bool(_QUOTE_PREFIX.match(line))
        content = _QUOTE_PREFIX.sub("", line, count=1) if quoted else line
        if groups and groups[-1][0] == quoted:
            groups[-1][1].append(content)
        else:
            groups.append((quoted, [content]))
    kinds = {True: "rich_text_quote", False: "rich_text_section"}
    return [
        {"type": kinds[quoted], "elements": _inline("\n".join(lines), {})}
        for quoted, lines in groups
    ]


def _inline(text: str, style: Mapping[str, bool]) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            elements.append(_text(html.unescape(text[position : match.start()]), style))
        if match["variable"] is not None:
            elements.append(_text(html.unescape(match["variable"]), style))
        elif match["angle"] is not None:
            elements.append(_angle(match["angle"], style))
        elif match["code"] is not None:
            elements.append(_text(html.unescape(match["code"]), {**style, "code": True}))
        elif match["bold"] is not None:
            elements.extend(_inline(match["bold"], {**style, "bold": True}))
        elif match["italic"] is not None:
            elements.extend(_inline(match["italic"], {**style, "italic": True}))
        elif match["strike"] is not None:
            elements.extend(_inline(match["strike"], {**style, "strike": True}))
        else:
            elements.append({"type": "emoji", "name": match["emoji"]})
        position = match.end()
    if position < len(text):
        elements.append(_text(html.unescape(text[position:]), style))
    return _merge_texts(elements)


def _angle(content: str, style: Mapping[str, bool]) -> dict[str, Any]:
    """Convert the inside of `<…>`: a mention, a broadcast, a date or a link."""
    target, _, label = content.partition("|")
    if target.startswith("@"):
        return _with_style({"type": "user", "user_id": target[1:]}, style)
    if target.startswith("#"):
        return _with_style({"type": "channel", "channel_id": target[1:]}, style)
    if target.startswith("!subteam^"):
        return _with_style(
            {"type": "usergroup", "usergroup_id": target.removeprefix("!subteam^")}, style
        )
    if target.startswith("!") and target[1:] in _BROADCAST_RANGES:
        return _with_style({"type": "broadcast", "range": target[1:]}, style)
    if target.startswith("!date^"):
        fields = target.split("^")
        if len(fields) >= 3 and fields[1].isdigit():
            date: dict[str, Any] = {
                "type": "date",
                "timestamp": int(fields[1]),
                "format": fields[2],
            }
            if label:
                date["fallback"] = html.unescape(label)
            return date
    if target.startswith("!"):
        return _text(html.unescape(label or target), style)
    link: dict[str, Any] = {"type": "link", "url": html.unescape(target)}
    if label:
        link["text"] = html.unescape(label)
    return _with_style(link, style)


def _text(text: str, style: Mapping[str, bool]) -> dict[str, Any]:
    return _with_style({"type": "text", "text": text}, style)


def _with_style(element: dict[str, Any], style: Mapping[str, bool]) -> dict[str, Any]:
    if style:
        element["style"] = dict(style)
    return element


def _merge_texts(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for element in elements:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and element["type"] == "text"
            and previous["type"] == "text"
            and element.get("style") == previous.get("style")
        ):
            previous["text"] += element["text"]
        else:
            merged.append(element)
    return merged


def message_to_rich_text(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """Convert a Slack message (from a message shortcut) to a `rich_text` block, or None if empty.

    Its `rich_text` blocks are used as they are, and the text of section, header and context blocks
    is converted. A message without such blocks is converted from its `text`.
    """
    elements: list[dict[str, Any]] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "rich_text":
            elements.extend(copy.deepcopy(block.get("elements") or []))
        elif kind in ("section", "header"):
            texts = [block.get("text"), *(block.get("fields") or [])]
            elements.extend(_text_object_elements(texts))
        elif kind == "context":
            elements.extend(_text_object_elements(block.get("elements") or []))
    if not elements and message.get("text"):
        elements = mrkdwn_to_rich_text(str(message["text"]))["elements"]
    if not elements:
        return None
    return {"type": "rich_text", "elements": elements}


def _text_object_elements(objects: Sequence[Any]) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    for item in objects:
        if not isinstance(item, Mapping) or not item.get("text"):
            continue
        if item.get("type") == "mrkdwn":
            elements.extend(mrkdwn_to_rich_text(str(item["text"]))["elements"])
        else:
            elements.append(
                {"type": "rich_text_section", "elements": [_text(str(item["text"]), {})]}
            )
    return elements


def message_extras_notice(message: Mapping[str, Any]) -> str | None:
    """Say that files and attachments of a shortcut's message are not copied, when it has any."""
    if message.get("files") or message.get("attachments"):
        return "Files and attachments of the original message are not copied into the new one."
    return None


# Small builders


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_clip(text))}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(_clip(text))]}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SECTION_TEXT else text[: MAX_SECTION_TEXT - 1] + "…"


def _count(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"
