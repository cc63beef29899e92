"""Values the settings and audit stores return, and the audit action names.

Like the records in `segments.ports`, these are frozen copies of stored rows, never ORM objects,
so a caller can keep them after the session closes without triggering lazy loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from segments.ports import BroadcastRecord

DEFAULT_CHANNEL_TEMPLATE = "customer-{slug}"
DEFAULT_TIMEZONE = "UTC"


class AuditAction(StrEnum):
    SEGMENT_CREATED = "segment.created"
    SEGMENT_UPDATED = "segment.updated"
    SEGMENT_DELETED = "segment.deleted"
    BROADCAST_CREATED = "broadcast.created"
    BROADCAST_CANCELLED = "broadcast.cancelled"
    BROADCAST_SCHEDULED = "broadcast.scheduled"
    BROADCAST_RESCHEDULED = "broadcast.rescheduled"
    BROADCAST_RESENT = "broadcast.resent"
    SETTINGS_UPDATED = "settings.updated"
    PERMISSION_DENIED = "permission.denied"


@dataclass(frozen=True)
class WorkspaceSettings:
    """A workspace's configuration. `updated_by` and `updated_at` are None while defaults apply."""

    team_id: str
    # Raw Planhat field path holding a company's channel (`custom.Slack Channel`), or None to use
    # only the channel name template.
    channel_field: str | None
    channel_template: str = DEFAULT_CHANNEL_TEMPLATE
    # IANA time zone name used to read relative dates in rules, such as "today".
    timezone: str = DEFAULT_TIMEZONE
    # Slack user ids allowed to manage segments and send broadcasts.
    managers: Sequence[str] = ()
    # Channels that received a broadcast in this many days are skipped. None turns the cap off.
    frequency_cap_days: int | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One audited action: who did it, to what, and when."""

    id: int
    team_id: str
    user_id: str
    action: str
    target: str | None
    details: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class StoredBroadcast:
    """A broadcast with everything needed to continue it after a restart or to resend it."""

    record: BroadcastRecord
    segment_id: int | None
    # The segment's rules JSON at send time, or None for broadcasts stored before it was kept.
    rules: Mapping[str, Any] | None
    rules_text: str
    message_text: str
    message_blocks: Sequence[Mapping[str, Any]] | None
    sent_by: str
    unmapped: Sequence[Mapping[str, Any]]
    # The sender's report DM: conversation id and message ts, None until it is posted.
    report_channel: str | None
    report_ts: str | None
