"""Block Kit for the `/segment` command: help, the segment list, previews and delete confirmation.

Every function here is pure: it takes domain values and returns message blocks or text. Text that
comes from Planhat or from people (company names, segment names, rule values) goes through
`escape_mrkdwn`, so a company named `<!channel> Acme` pings nobody. The helpers that pack lines
into sections and format Slack dates are shared with the App Home builders.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from planhat.models import CustomFieldDefinition
from segments.audience import Audience, UnmappedCompany
from segments.ports import DeliveryTarget, SegmentRecord
from segments.properties import CUSTOM_PREFIX, PropertyCatalog
from segments.rules import RuleError, rule_properties, rules_from_json
from segments.slack_text import escape_mrkdwn
from segments.text import format_rules

COMMAND = "/segment"

# Action ids of the delete confirmation buttons. Each button's value is the segment id.
DELETE_CONFIRM_ACTION = "segment_delete_confirm"
DELETE_CANCEL_ACTION = "segment_delete_cancel"
DELETE_ACTIONS_BLOCK = "segment_delete_actions"

# Slack's limits: 50 blocks per message (Block Kit documentation), and 3000 characters of section
# text and 150 of header text (slack_sdk 3.48 `SectionBlock` and `HeaderBlock` check the same).
MAX_MESSAGE_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
# NOTE: Slack also rejects a message whose blocks hold about 13,000 characters in all with
# `msg_blocks_too_long`. The limit is undocumented (reported on the bolt-js issue tracker), so the
# lists of one message stop at this many characters, which is an estimate with some margin.
MAX_LIST_CHARS = 10_000
# One line of a list is clipped to this many characters, so that every line fits in a section
# with room to spare and one long company name cannot crowd out the rest.
MAX_LINE_CHARS = 600

# How much of an audience a preview lists before it adds "and N more", in lines and characters.
PREVIEW_CHANNELS = 30
PREVIEW_UNMAPPED = 10
PREVIEW_WARNINGS = 5
PREVIEW_COMPANIES_PER_CHANNEL = 3
PREVIEW_CHANNEL_CHARS = 6_000
PREVIEW_UNMAPPED_CHARS = 2_500
PREVIEW_WARNING_CHARS = 1_000
PREVIEW_RULES_CHARS = 500
# Saved segments listed by `/segment list` before it adds "and N more".
LIST_SEGMENTS = 100


@dataclass(frozen=True)
class Subcommand:
    name: str
    arguments: str
    summary: str


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("help", "", "Show this help."),
    Subcommand("new", "[RULES]", "Open the segment builder, filled in with RULES when given."),
    Subcommand("list", "", "List the saved segments with their rules."),
    Subcommand(
        "preview",
        "NAME or RULES",
        "Show the channels a saved segment, or rule text, reaches right now.",
    ),
    Subcommand("edit", "NAME", "Change the name or rules of a saved segment."),
    Subcommand("delete", "NAME", "Delete a saved segment, after you confirm."),
    Subcommand("send", "[NAME]", "Write a message and post it to every channel of a segment."),
)
SUBCOMMAND_NAMES = tuple(subcommand.name for subcommand in SUBCOMMANDS)

RULES_EXAMPLE = "Health Score less than 4 AND ARR greater than 50000"


# Shared helpers ---------------------------------------------------------------------------------


def slack_date(moment: datetime) -> str:
    """Format `moment` with Slack date formatting, shown in each reader's own time zone.

    The fallback after `|` is the UTC time, for clients that cannot format dates. A naive
    datetime is taken as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def clip(text: str, limit: int) -> str:
    """Shorten `text` to at most `limit` characters, ending with an ellipsis when it was cut.

    An HTML entity that the cut splits (`&am`) is dropped as well, so escaped text stays valid.
    """
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    ampersand = cut.rfind("&")
    if ampersand != -1 and ";" not in cut[ampersand:]:
        cut = cut[:ampersand]
    return cut + "…"


def pack_lines(lines: Iterable[str], *, limit: int = MAX_SECTION_CHARS) -> list[str]:
    """Join lines with newlines into as few texts of at most `limit` characters as possible.

    A line longer than `limit` is clipped to it.
    """
    texts: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            texts.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        texts.append(current)
    return texts


def section(text: str, *, block_id: str | None = None) -> dict[str, Any]:
    """Return a mrkdwn section block, clipping `text` to Slack's 3000 characters."""
    block: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_CHARS)},
    }
    if block_id is not None:
        block["block_id"] = block_id
    return block


def header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_CHARS), "emoji": True},
    }


def context(text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION_CHARS)}],
    }


def button(text: str, *, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        element["style"] = style
    return element


def more_line(hidden: int, noun: str) -> str:
    return f"…and {hidden:,} more {noun}."


def capped_lines(lines: Sequence[str], *, max_lines: int, max_chars: int, noun: str) -> list[str]:
    """Keep the first lines that fit in `max_lines` and `max_chars`, then add "and N more".

    Each line is clipped to `MAX_LINE_CHARS`, and at least one line is kept.
    """
    kept: list[str] = []
    used = 0
    for line in lines[:max_lines]:
        line = clip(line, MAX_LINE_CHARS)
        if kept and used + len(line) > max_chars:
            break
        kept.append(line)
        used += len(line) + 1
    hidden = len(lines) - len(kept)
    if hidden > 0:
        kept.append(more_line(hidden, noun))
    return kept


def saved_rules_text(rules: Mapping[str, Any]) -> str:
    """Return the text form of a saved segment's rules without asking Planhat for custom fields.

    Custom fields are known here only by the keys the rules use (`custom.Seats Purchased`), so
    they are formatted as custom fields of that name. Stored rules that no longer load are
    described instead of raising.
    """
    try:
        tree = rules_from_json(rules)
    except RuleError as exc:
        return f"(The saved rules cannot be read: {exc})"
    definitions = [
        CustomFieldDefinition(
            id=key, name=key.removeprefix(CUSTOM_PREFIX), type="text", parent="company"
        )
        for key in rule_properties(tree)
        if key.startswith(CUSTOM_PREFIX)
    ]
    catalog = PropertyCatalog.builtin().with_custom_fields(definitions)
    return format_rules(tree, catalog)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    word = singular if count == 1 else (plural or f"{singular}s")
    return f"{count:,} {word}"


# Help ------------------------------------------------------------------------------------------


def help_text() -> str:
    """Return the help as mrkdwn: every subcommand with its arguments and what it does."""
    lines = [f"*{COMMAND}* finds customer channels by Planhat data and posts to all of them."]
    for subcommand in SUBCOMMANDS:
        usage = f"{COMMAND} {subcommand.name} {subcommand.arguments}".rstrip()
        lines.append(f"• `{usage}`: {subcommand.summary}")
    lines.append(f"Rules look like `{RULES_EXAMPLE}`. Segment names match ignoring case.")
    return "\n".join(lines)


def help_blocks(*, notice: str | None = None) -> list[dict[str, Any]]:
    """Return the help message, after `notice` (such as an unknown subcommand) when given."""
    blocks = []
    if notice is not None:
        blocks.append(section(notice))
    blocks.append(section(help_text()))
    return blocks


def closest_subcommand(word: str) -> str | None:
    """Return the subcommand closest to a mistyped `word`, or None when none is close."""
    matches = difflib.get_close_matches(word.casefold(), SUBCOMMAND_NAMES, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_subcommand_text(word: str) -> str:
    """Return the notice for an unknown subcommand, suggesting the closest one."""
    shown = clip(escape_mrkdwn(word), 40)
    suggestion = closest_subcommand(word)
    if suggestion is not None:
        return f'Unknown subcommand "{shown}". Did you mean "{suggestion}"?'
    return f'Unknown subcommand "{shown}". The subcommands are listed below.'


def missing_argument_text(subcommand: str) -> str:
    """Return the message for a subcommand typed without the name or rules it needs."""
    usage = next(item for item in SUBCOMMANDS if item.name == subcommand)
    example = f"{COMMAND} {subcommand} {usage.arguments}"
    return f"`{COMMAND} {subcommand}` needs {usage.arguments}: type `{example}`."


# List ------------------------------------------------------------------------------------------


def segment_list_blocks(segments: Sequence[SegmentRecord]) -> list[dict[str, Any]]:
    """Return the saved segments with their rule text, in the order given (the store sorts by name).

    No audience counts are shown, because counting would fetch every company from Planhat.
    """
    if not segments:
        return [
            section(
                "No segments are saved yet. Create one with `/segment new`, for example "
                f"`/segment new {RULES_EXAMPLE}`."
            )
        ]
    entries = []
    for record in segments:
        name = clip(escape_mrkdwn(record.name), 120)
        rules = clip(escape_mrkdwn(saved_rules_text(record.rules)), 300)
        # The trailing newline leaves a blank line between entries.
        updated = f"_Updated {slack_date(record.updated_at)} by <@{record.updated_by}>_\n"
        entries.append(f"*{name}*\n{rules}\n{updated}")
    entries = capped_lines(
        entries, max_lines=LIST_SEGMENTS, max_chars=MAX_LIST_CHARS, noun="segments"
    )

    blocks = [header(f"Saved segments ({len(segments):,})")]
    blocks.extend(section(text) for text in pack_lines(entries))
    blocks.append(
        context(
            "`/segment preview NAME` shows the channels a segment reaches now. "
            "`/segment send NAME` posts to them."
        )
    )
    return blocks


def segment_list_text(segments: Sequence[SegmentRecord]) -> str:
    """Return the notification text for the list message."""
    if not segments:
        return "No segments are saved yet."
    return f"{_plural(len(segments), 'saved segment')}."


# Preview ---------------------------------------------------------------------------------------


def preview_blocks(*, audience: Audience, segment_name: str | None) -> list[dict[str, Any]]:
    """Return the preview of an audience: rules, counts, channels, unmapped companies, warnings.

    `segment_name` is None for rule text that is not saved. Lists are capped (30 channels,
    10 unmapped companies, 5 warnings, and a character budget for each) so that the message
    stays within Slack's limits.
    """
    title = f"Preview: {segment_name}" if segment_name else "Preview of rules"
    blocks = [header(title)]
    blocks.append(
        section(f"*Rules:* {clip(escape_mrkdwn(audience.rules_text), PREVIEW_RULES_CHARS)}")
    )
    blocks.append(section(_summary(audience)))

    if audience.targets:
        lines = [f"*{_plural(len(audience.targets), 'channel')}:*"]
        lines += capped_lines(
            [_target_line(target) for target in audience.targets],
            max_lines=PREVIEW_CHANNELS,
            max_chars=PREVIEW_CHANNEL_CHARS,
            noun="channels",
        )
        blocks.extend(section(text) for text in pack_lines(lines))

    if audience.unmapped:
        lines = [f"*{_plural(len(audience.unmapped), 'company', 'companies')} without a channel:*"]
        lines += capped_lines(
            [_unmapped_line(company) for company in audience.unmapped],
            max_lines=PREVIEW_UNMAPPED,
            max_chars=PREVIEW_UNMAPPED_CHARS,
            noun="companies",
        )
        blocks.extend(section(text) for text in pack_lines(lines))

    if audience.warnings:
        lines = capped_lines(
            [f":warning: {escape_mrkdwn(warning)}" for warning in audience.warnings],
            max_lines=PREVIEW_WARNINGS,
            max_chars=PREVIEW_WARNING_CHARS,
            noun="warnings",
        )
        blocks.extend(section(text) for text in pack_lines(lines))

    blocks.append(context(f"Planhat data fetched {slack_date(audience.fetched_at)}."))
    return blocks


def preview_text(*, audience: Audience, segment_name: str | None) -> str:
    """Return the notification text of a preview, which clients show where blocks cannot be."""
    subject = f'"{segment_name}"' if segment_name else "These rules"
    verb = "reaches" if segment_name else "reach"
    companies = audience.matching_company_count
    return (
        f"{subject} {verb} {_plural(len(audience.targets), 'channel')} "
        f"({_plural(companies, 'company', 'companies')} matched)."
    )


def _summary(audience: Audience) -> str:
    if not audience.matched and not audience.unmapped:
        total = audience.company_count
        return f"No company matches these rules right now, out of {total:,} in Planhat."
    text = (
        f"*{_plural(len(audience.targets), 'channel')}* would get the message: "
        f"{_plural(audience.matching_company_count, 'company', 'companies')} of "
        f"{audience.company_count:,} match"
    )
    if audience.companies_without_channel:
        text += f", and {audience.companies_without_channel:,} of them have no channel"
    return text + "."


def _unmapped_line(company: UnmappedCompany) -> str:
    return f"• {clip(escape_mrkdwn(company.company_name), 120)}: {escape_mrkdwn(company.reason)}"


def _target_line(target: DeliveryTarget) -> str:
    companies = []
    for company in target.companies[:PREVIEW_COMPANIES_PER_CHANNEL]:
        values = ", ".join(f"{label} {value}" for label, value in company.values.items())
        described = clip(escape_mrkdwn(company.company_name), 120)
        if values:
            described += f" ({clip(escape_mrkdwn(values), 200)})"
        companies.append(described)
    hidden = len(target.companies) - PREVIEW_COMPANIES_PER_CHANNEL
    if hidden > 0:
        companies.append(f"and {hidden:,} more")
    return f"• <#{target.channel_id}> {'; '.join(companies)}"


# Delete ----------------------------------------------------------------------------------------


def delete_confirmation_blocks(record: SegmentRecord) -> list[dict[str, Any]]:
    """Return the ephemeral question with Delete and Cancel buttons that carry the segment id."""
    name = clip(escape_mrkdwn(record.name), 120)
    rules = clip(escape_mrkdwn(saved_rules_text(record.rules)), MAX_SECTION_CHARS - 400)
    return [
        section(
            f"Delete the segment *{name}*? Its rules are: {rules}\n"
            "This cannot be undone. Broadcasts already sent to it stay in the history."
        ),
        {
            "type": "actions",
            "block_id": DELETE_ACTIONS_BLOCK,
            "elements": [
                button(
                    "Delete", action_id=DELETE_CONFIRM_ACTION, value=str(record.id), style="danger"
                ),
                button("Cancel", action_id=DELETE_CANCEL_ACTION, value=str(record.id)),
            ],
        },
    ]


def delete_confirmation_text(record: SegmentRecord) -> str:
    return f'Delete the segment "{record.name}"?'


def deleted_text(name: str) -> str:
    return f"Deleted the segment *{escape_mrkdwn(name)}*."


def already_deleted_text() -> str:
    return "That segment was already deleted. Type `/segment list` to see the saved segments."


def delete_cancelled_text(name: str) -> str:
    return f"Kept the segment *{escape_mrkdwn(name)}*: nothing was deleted."
