"""Seams between the segment engine and its adapters (CRM source, storage).

The engine depends on these Protocols only; `planhat/` and `db/` implement them, and tests use
hand-written fakes. Statuses are shared here so storage and sending use one vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from planhat.models import CompanySnapshot, CustomFieldDefinition


class CompanySource(Protocol):
    """A CRM that returns every company, or raises: never a partial list."""

    async def fetch_companies(self, *, fields: Sequence[str], fresh: bool = False) -> CompanySnapshot:
        """Return all companies with at least `fields` (raw field paths such as `h`, `custom`).

        `fresh=True` bypasses any cache: sends use it so membership is always live. Raises the
        source's typed error when any page fails.
        """
        ...

    async def fetch_custom_fields(self) -> Sequence[CustomFieldDefinition]:
        """Return the custom field definitions of the company model."""
        ...


class BroadcastStatus(StrEnum):
    SCHEDULED = "scheduled"
    RESOLVING = "resolving"
    SENDING = "sending"
    SENT = "sent"
    PARTIALLY_SENT = "partially_sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # Not posted on purpose, for example because of the workspace's frequency cap.
    SKIPPED = "skipped"
    # The post's outcome is unknown and could not be checked, so it is reported, never reposted.
    UNCONFIRMED = "unconfirmed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class QualifyingCompany:
    """A company that put a channel in the audience, with the rule values it had at resolve time."""

    company_id: str
    company_name: str
    values: Mapping[str, str] = field(default_factory=dict)
    # Message personalization variables (`company.name`, `renewal_date`, ...) as they were when the
    # audience was resolved, so a resumed or resent delivery renders the same text.
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryTarget:
    """One channel a broadcast will post to, and the companies that qualified it."""

    channel_id: str
    channel_name: str
    is_private: bool
    companies: Sequence[QualifyingCompany]


@dataclass(frozen=True)
class NewBroadcast:
    """Everything needed to record a broadcast before its first post."""

    team_id: str
    segment_id: int | None
    segment_name: str
    rules_text: str
    message_text: str
    message_blocks: Sequence[Mapping[str, Any]] | None
    sent_by: str
    targets: Sequence[DeliveryTarget]
    unmapped: Sequence[Mapping[str, str]] = ()


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    broadcast_id: int
    channel_id: str
    channel_name: str
    status: DeliveryStatus
    attempts: int
    ts: str | None
    error: str | None
    reason: str | None
    companies: Sequence[QualifyingCompany] = ()
    is_private: bool = False
    # When the current round of attempts started; a post with an unknown outcome is looked up in
    # the channel's history from a little before this time. None until the first attempt.
    sending_started_at: datetime | None = None


@dataclass(frozen=True)
class BroadcastRecord:
    id: int
    team_id: str
    segment_name: str
    status: BroadcastStatus
    created_at: datetime
    deliveries: Sequence[DeliveryRecord]


class DeliveryLog(Protocol):
    """Storage for broadcasts and their per-channel deliveries.

    Every method commits before it returns, so a crash never loses a state change that the
    sender already acted on.
    """

    async def create_broadcast(self, broadcast: NewBroadcast) -> BroadcastRecord:
        """Insert the broadcast (status `sending`) and one `pending` delivery per target."""
        ...

    async def mark_sending(self, delivery_id: int) -> int:
        """Set the delivery to `sending`, add one attempt and return the attempt count."""
        ...

    async def mark_sent(self, delivery_id: int, *, ts: str) -> None:
        """Set the delivery to `sent` with the Slack message timestamp."""
        ...

    async def mark_failed(self, delivery_id: int, *, error: str, reason: str) -> None:
        """Set the delivery to `failed` with Slack's error code and a sentence a person can act on."""
        ...

    async def finish_broadcast(self, broadcast_id: int) -> BroadcastRecord:
        """Derive the final broadcast status from its deliveries, store it and return the record."""
        ...

    async def get_broadcast(self, broadcast_id: int) -> BroadcastRecord | None:
        ...


@dataclass(frozen=True)
class SegmentRecord:
    id: int
    team_id: str
    name: str
    rules: Mapping[str, Any]
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


class DuplicateSegmentName(Exception):
    """A segment with this name (ignoring case) already exists in the workspace."""

    def __init__(self, name: str) -> None:
        super().__init__(f'A segment named "{name}" already exists. Choose another name.')
        self.name = name


class SegmentStore(Protocol):
    """Saved segments, unique by name per workspace ignoring case. Every write is audited."""

    async def create(
        self, *, team_id: str, name: str, rules: Mapping[str, Any], user_id: str
    ) -> SegmentRecord:
        """Insert a segment; raise DuplicateSegmentName when the name is taken."""
        ...

    async def update(
        self, segment_id: int, *, name: str, rules: Mapping[str, Any], user_id: str
    ) -> SegmentRecord:
        """Rename or change rules; raise DuplicateSegmentName when the new name is taken."""
        ...

    async def get_by_name(self, *, team_id: str, name: str) -> SegmentRecord | None:
        ...

    async def list(self, *, team_id: str) -> Sequence[SegmentRecord]:
        """Return the workspace's segments ordered by name."""
        ...

    async def delete(self, segment_id: int, *, user_id: str) -> bool:
        """Delete; return False when no such segment exists."""
        ...
