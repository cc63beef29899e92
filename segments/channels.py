"""Map companies to their Slack channels, by exact id or name only, and explain every miss.

A company's channel comes from its Planhat channel field when that field has a value, and otherwise
from the channel name template (`customer-{slug}`). A name either matches a channel exactly or the
company is left unmapped with a reason a person can act on: posting to a near-miss channel would
put one customer's message in front of another customer.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from planhat.models import Company
from segments.slugs import slugify

logger = logging.getLogger(__name__)

BOT_MENTION = "@segment-bot"
LIST_TYPES = "public_channel,private_channel"
LIST_PAGE_SIZE = 200
TEMPLATE_PLACEHOLDERS = ("slug", "id", "external_id")
# Planhat's names for the values behind the placeholders other than {slug}.
_PLACEHOLDER_LABELS = {"id": "Planhat id", "external_id": "External ID"}
# Planhat stores the string "undefined" in fields that a JavaScript client cleared.
_EMPTY_FIELD_VALUES = frozenset({"undefined"})
# `<#C0123ABC|name>` or `<#C0123ABC>`: a channel link pasted from Slack into the CRM field.
_CHANNEL_LINK = re.compile(r"^<#([A-Z0-9]+)(?:\|[^>]*)?>$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")


class ChannelListError(Exception):
    """conversations.list returned pages that cannot be followed to the end."""


@dataclass(frozen=True)
class Channel:
    """A Slack channel as conversations.list returns it to the bot."""

    id: str
    name: str
    is_private: bool
    is_archived: bool
    is_member: bool
    is_ext_shared: bool


class ChannelDirectory:
    """The channels visible to the bot, looked up by id or by name.

    Names are compared lower-case with a leading `#` removed. `calls` is the number of
    conversations.list requests the listing took.
    """

    def __init__(self, channels: Iterable[Channel], *, calls: int = 0) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            self._channels.setdefault(channel.id, channel)
        self._by_name: dict[str, list[Channel]] = {}
        for channel in self._channels.values():
            self._by_name.setdefault(normalize_channel_name(channel.name), []).append(channel)
        self.calls = calls

    def __len__(self) -> int:
        return len(self._channels)

    def channels(self) -> tuple[Channel, ...]:
        return tuple(self._channels.values())

    def by_id(self, channel_id: str) -> Channel | None:
        return self._channels.get(channel_id)

    def by_name(self, name: str) -> Channel | None:
        """Return the one channel named `name`, or None when there is none or more than one."""
        found = self.all_named(name)
        return found[0] if len(found) == 1 else None

    def all_named(self, name: str) -> tuple[Channel, ...]:
        return tuple(self._by_name.get(normalize_channel_name(name), ()))


def normalize_channel_name(name: str) -> str:
    return name.strip().removeprefix("#").lower()


async def load_channel_directory(client: AsyncWebClient) -> ChannelDirectory:
    """List every public and private channel the bot can see, archived ones included.

    Follows `next_cursor` until it is empty, since Slack filters after cutting a page and so can
    return short or empty pages while more remain. Archived channels are kept so that resolution
    can report that a company's channel is archived instead of missing. Raises `SlackApiError` as the
    client does. Listing is idempotent, so the client may retry 429s itself. Raises
    `ChannelListError` when Slack repeats a cursor, which would otherwise loop forever.
    """
    channels: list[Channel] = []
    seen_cursors: set[str] = set()
    cursor = ""
    calls = 0
    while True:
        response = await client.conversations_list(
            types=LIST_TYPES,
            exclude_archived=False,
            limit=LIST_PAGE_SIZE,
            cursor=cursor or None,
        )
        calls += 1
        channels.extend(_channel_from_api(item) for item in response.get("channels") or [])
        metadata = response.get("response_metadata") or {}
        cursor = str(metadata.get("next_cursor") or "")
        if not cursor:
            break
        if cursor in seen_cursors:
            raise ChannelListError(
                f"conversations.list returned the cursor {cursor!r} twice after {calls} pages, so "
                "the channel list cannot be completed. Try again later."
            )
        seen_cursors.add(cursor)
    directory = ChannelDirectory(channels, calls=calls)
    logger.info("Listed %d Slack channels in %d conversations.list calls", len(directory), calls)
    return directory


def _channel_from_api(item: dict[str, Any]) -> Channel:
    return Channel(
        id=str(item["id"]),
        name=str(item.get("name") or ""),
        is_private=bool(item.get("is_private", False)),
        is_archived=bool(item.get("is_archived", False)),
        is_member=bool(item.get("is_member", False)),
        is_ext_shared=bool(item.get("is_ext_shared", False)),
    )


@dataclass(frozen=True)
class ChannelMapping:
    """The rule that finds a company's channel: a Planhat field first, then a channel name template.

    `field` is a raw Planhat path such as `custom.Slack Channel` (None or empty: template only).
    `template` may use `{slug}` (the company name as `slugify` returns it), `{id}` (the Planhat
    id) and `{external_id}` (the Planhat `externalId`). The constructor raises ValueError for any
    other placeholder, a format spec, or a template without placeholders, which would send every
    company to one channel.
    """

    field: str | None = None
    template: str = "customer-{slug}"

    def __post_init__(self) -> None:
        _validate_template(self.template)

    @property
    def field_label(self) -> str | None:
        """The field's name as Planhat shows it, without the `custom.` prefix."""
        if not self.field:
            return None
        return self.field.removeprefix("custom.")

    def planhat_fields(self) -> tuple[str, ...]:
        """Return the top-level Planhat fields a company fetch must include for this mapping."""
        fields: list[str] = []
        if self.field:
            fields.append(self.field.split(".", 1)[0])
        if "external_id" in _placeholders(self.template):
            fields.append("externalId")
        return tuple(fields)


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _validate_template(template: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"Invalid channel name template {template!r}: {exc}. Use e.g. 'customer-{{slug}}'.") from exc
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_PLACEHOLDERS:
            allowed = ", ".join("{" + item + "}" for item in TEMPLATE_PLACEHOLDERS)
            raise ValueError(
                f"Invalid placeholder {{{name}}} in channel name template {template!r}. Use {allowed}."
            )
        if spec or conversion:
            raise ValueError(
                f"Invalid placeholder in channel name template {template!r}: write {{{name}}} "
                "without a format spec or conversion."
            )
        names.append(name)
    if not names:
        raise ValueError(
            f"Channel name template {template!r} has no placeholder, so every company would get the "
            "same channel. Include {slug}, e.g. 'customer-{slug}'."
        )


@dataclass(frozen=True)
class CompanyChannel:
    company: Company
    channel: Channel


class UnmappedKind(StrEnum):
    """Category of an unmapped company, for grouping. `UnmappedCompany.reason` gives the fix."""

    NO_CHANNEL = "no_channel"
    FIELD_CHANNEL_NOT_FOUND = "field_channel_not_found"
    ARCHIVED = "archived"
    PRIVATE_WITHOUT_BOT = "private_without_bot"
    AMBIGUOUS_NAME = "ambiguous_name"
    EMPTY_SLUG = "empty_slug"
    MISSING_TEMPLATE_VALUE = "missing_template_value"


_Miss = tuple[UnmappedKind, str]


@dataclass(frozen=True)
class UnmappedCompany:
    """A company (or one value of its channel field) that reaches no channel, and what to do about it."""

    company: Company
    reason: str
    kind: UnmappedKind


@dataclass(frozen=True)
class ResolvedTarget:
    """One channel to post to, and the companies that put it in the audience."""

    channel: Channel
    companies: tuple[Company, ...]


@dataclass(frozen=True)
class Resolution:
    """The outcome of mapping companies to channels.

    A company appears in `matched` once per channel it reaches. A company whose field lists
    several channels, some of which are missing, appears in both `matched` and `unmapped`.
    """

    matched: list[CompanyChannel]
    unmapped: list[UnmappedCompany]

    def targets(self) -> list[ResolvedTarget]:
        """Group matched companies by channel, ordered by channel name then id."""
        channels: dict[str, Channel] = {}
        companies: dict[str, list[Company]] = {}
        for row in self.matched:
            channels.setdefault(row.channel.id, row.channel)
            companies.setdefault(row.channel.id, []).append(row.company)
        ordered = sorted(channels.values(), key=lambda channel: (channel.name, channel.id))
        return [ResolvedTarget(channel=channel, companies=tuple(companies[channel.id])) for channel in ordered]


def resolve_channels(
    companies: Sequence[Company], directory: ChannelDirectory, mapping: ChannelMapping
) -> Resolution:
    """Match each company to channels in `directory`, exactly, and explain each company left out."""
    matched: list[CompanyChannel] = []
    unmapped: list[UnmappedCompany] = []
    seen_matches: set[tuple[str, str]] = set()
    seen_misses: set[tuple[str, str]] = set()
    for company in companies:
        channels, misses = _resolve_company(company, directory, mapping)
        for channel in channels:
            if (company.id, channel.id) not in seen_matches:
                seen_matches.add((company.id, channel.id))
                matched.append(CompanyChannel(company=company, channel=channel))
        for kind, reason in misses:
            if (company.id, reason) not in seen_misses:
                seen_misses.add((company.id, reason))
                unmapped.append(UnmappedCompany(company=company, reason=reason, kind=kind))
    return Resolution(matched=matched, unmapped=unmapped)


def _resolve_company(
    company: Company, directory: ChannelDirectory, mapping: ChannelMapping
) -> tuple[list[Channel], list[_Miss]]:
    references = _field_references(company.get(mapping.field)) if mapping.field else []
    if not references:
        return _resolve_by_template(company, directory, mapping)
    channels: list[Channel] = []
    misses: list[_Miss] = []
    for reference in references:
        found = _find_reference(reference, directory)
        miss = _field_miss(reference, found, mapping)
        if miss is not None:
            misses.append(miss)
        else:
            channels.append(found[0])
    return channels, misses


def _field_references(value: Any) -> list[str]:
    """Split a channel field value into channel references, dropping empty and "undefined" parts."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    references = []
    for item in items:
        if item is None:
            continue
        for part in str(item).split(","):
            part = part.strip()
            if part and part.lower() not in _EMPTY_FIELD_VALUES:
                references.append(part)
    return references


def _find_reference(reference: str, directory: ChannelDirectory) -> tuple[Channel, ...]:
    """Return the channels an id, `<#id|name>` link, `#name` or name refers to, exactly."""
    link = _CHANNEL_LINK.match(reference)
    if link:
        channel = directory.by_id(link.group(1))
        return (channel,) if channel else ()
    channel = directory.by_id(reference)
    if channel is not None:
        return (channel,)
    return directory.all_named(reference)


def _describe_reference(reference: str) -> str:
    link = _CHANNEL_LINK.match(reference)
    if link:
        return f"the channel id {link.group(1)}"
    if _CHANNEL_ID.match(reference):
        return f"the channel id {reference}"
    return f"#{normalize_channel_name(reference)}"


def _field_miss(reference: str, found: tuple[Channel, ...], mapping: ChannelMapping) -> _Miss | None:
    label = f'"{mapping.field_label}"'
    if not found:
        return (
            UnmappedKind.FIELD_CHANNEL_NOT_FOUND,
            f"Its {label} field names {_describe_reference(reference)}, but no such channel is visible "
            f"to {BOT_MENTION}. Fix the field, or invite {BOT_MENTION} if the channel is private.",
        )
    if len(found) > 1:
        return (
            UnmappedKind.AMBIGUOUS_NAME,
            f"Its {label} field names #{found[0].name}, but several channels have that name. "
            "Set the field to the channel id instead.",
        )
    return _channel_miss(found[0], fix=f"fix its {label} field")


def _channel_miss(channel: Channel, *, fix: str) -> _Miss | None:
    """Return why a found channel cannot be posted to, or None when it can."""
    if channel.is_archived:
        return UnmappedKind.ARCHIVED, f"#{channel.name} is archived. Unarchive it or {fix}."
    if channel.is_private and not channel.is_member:
        return (
            UnmappedKind.PRIVATE_WITHOUT_BOT,
            f"#{channel.name} is private and {BOT_MENTION} is not in it. Invite {BOT_MENTION} to #{channel.name}.",
        )
    return None


def _resolve_by_template(
    company: Company, directory: ChannelDirectory, mapping: ChannelMapping
) -> tuple[list[Channel], list[_Miss]]:
    set_field = f' or set its "{mapping.field_label}" field in Planhat' if mapping.field_label else ""
    values = {
        "slug": slugify(company.name),
        "id": slugify(company.id),
        "external_id": slugify(str(company.get("externalId") or "")),
    }
    for placeholder in _placeholders(mapping.template):
        if values[placeholder]:
            continue
        if placeholder == "slug":
            return [], [
                (
                    UnmappedKind.EMPTY_SLUG,
                    f'The name "{company.name}" has no letters or digits to build a channel name from. '
                    f"Rename the company{set_field}.",
                )
            ]
        label = _PLACEHOLDER_LABELS[placeholder]
        return [], [
            (
                UnmappedKind.MISSING_TEMPLATE_VALUE,
                f"The company has no usable {label} for the channel name template {mapping.template!r}. "
                f"Set its {label} in Planhat{set_field}.",
            )
        ]

    name = normalize_channel_name(mapping.template.format(**values))
    found = directory.all_named(name)
    if not found:
        return [], [
            (
                UnmappedKind.NO_CHANNEL,
                f"No channel named #{name} is visible to {BOT_MENTION}. Create it{set_field}. "
                f"If #{name} is private, invite {BOT_MENTION} to it.",
            )
        ]
    if len(found) > 1:
        hint = (
            f'Set the company\'s "{mapping.field_label}" field to the right channel id.'
            if mapping.field_label
            else "Rename the extra channels."
        )
        return [], [(UnmappedKind.AMBIGUOUS_NAME, f"Several channels are named #{name}. {hint}")]
    fix = f'set its "{mapping.field_label}" field to another channel' if mapping.field_label else "rename the company"
    miss = _channel_miss(found[0], fix=fix)
    if miss is not None:
        return [], [miss]
    return [found[0]], []
