"""SQLAlchemy table definitions for everything segment-bot stores.

The migrations in `db/migrations/versions/` create the same schema, and a test
compares the two so they never drift. Only portable column types are used, so any SQLAlchemy async URL (SQLite, PostgreSQL) works.
Statuses are stored as the plain strings of `segments.ports.BroadcastStatus` and `DeliveryStatus`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from segments.ports import BroadcastStatus, DeliveryStatus
from segments.followups import ActionStatus, TargetStatus

# Explicit constraint names keep the migration, the models and every database in agreement, and
# let later migrations drop or alter a constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Slack ids (team, user, channel) are short, but Enterprise Grid ids are longer than the usual 11
# characters, so the columns leave room.
SLACK_ID_LENGTH = 64
SEGMENT_NAME_MAX_LENGTH = 80
# `str.casefold` can turn one character into up to three (for example "ΐ"), so the key column is
# three times as wide as the longest name.
SEGMENT_NAME_KEY_LENGTH = 3 * SEGMENT_NAME_MAX_LENGTH
STATUS_LENGTH = 20


def utc_now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A `DateTime(timezone=True)` that stores UTC and always returns timezone-aware UTC values.

    SQLite has no timezone-aware type and returns naive values, so this type converts on the way
    in and marks the value as UTC on the way out. A naive datetime is rejected rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"Naive datetime {value.isoformat()} cannot be stored: pass a timezone-aware value."
            )
        utc_value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite's DATETIME text form has no offset, so store the UTC wall-clock time.
            return utc_value.replace(tzinfo=None)
        return utc_value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _status_check(name: str, values: type[BroadcastStatus | DeliveryStatus]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"status IN ({allowed})", name=name)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Workspace(Base):
    """A Slack workspace that installed segment-bot."""

    __tablename__ = "workspaces"

    team_id: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH), primary_key=True)
    # None when saving settings created the row before anyone saved the workspace name.
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class WorkspaceSettingsRow(Base):
    """Per-workspace configuration. A workspace without a row uses the store's defaults."""

    __tablename__ = "workspace_settings"

    team_id: Mapped[str] = mapped_column(
        String(SLACK_ID_LENGTH),
        ForeignKey("workspaces.team_id", ondelete="CASCADE"),
        primary_key=True,
    )
    # Raw Planhat field path that contains a company's channel, such as `custom.Slack Channel`.
    channel_field: Mapped[str | None] = mapped_column(String(255))
    channel_template: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    # Slack user ids allowed to manage segments and send broadcasts.
    managers: Mapped[list[Any]] = mapped_column()
    # Skip channels that received a broadcast in this many days. NULL turns the cap off.
    frequency_cap_days: Mapped[int | None] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class Segment(Base):
    """A saved, named set of filter rules over Planhat companies."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("team_id", "name_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    name: Mapped[str] = mapped_column(String(SEGMENT_NAME_MAX_LENGTH))
    # Case-folded, stripped name. Its unique constraint makes names unique ignoring case.
    name_key: Mapped[str] = mapped_column(String(SEGMENT_NAME_KEY_LENGTH))
    rules: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_by: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class Broadcast(Base):
    """One message sent to every channel a segment matched, with its text and sender."""

    __tablename__ = "broadcasts"
    __table_args__ = (
        _status_check("status", BroadcastStatus),
        Index(None, "team_id", "created_at"),
        # Lets PostgreSQL find the rows to set NULL without a table scan when a segment is deleted.
        Index(None, "segment_id"),
        # The scheduler's search for due `scheduled` broadcasts.
        Index(None, "status", "scheduled_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    # Set to NULL by the database when the segment is deleted, so the broadcast history stays.
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id", ondelete="SET NULL"))
    # Copies of the segment at send time, because the segment may be changed or deleted later.
    segment_name: Mapped[str] = mapped_column(String(SEGMENT_NAME_MAX_LENGTH))
    rules_text: Mapped[str] = mapped_column(Text)
    # The segment's rules as JSON at send time, so a broadcast left `resolving` by a crash can be
    # resolved again after the segment changed or was deleted. NULL for broadcasts stored before
    # migration 0002.
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    message_text: Mapped[str] = mapped_column(Text)
    # SQL NULL (not JSON `null`) when the message is plain text.
    message_blocks: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    sent_by: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    # Companies the segment matched but that have no channel, each with the reason.
    unmapped: Mapped[list[Any]] = mapped_column()
    # The sender's report direct message (conversation id and message ts), so a restarted process
    # edits the same message instead of posting a second one.
    report_channel: Mapped[str | None] = mapped_column(String(SLACK_ID_LENGTH))
    report_ts: Mapped[str | None] = mapped_column(String(32))
    # When a `scheduled` broadcast sends, and the IANA time zone the sender picked it in.
    scheduled_at: Mapped[datetime | None] = mapped_column()
    scheduled_timezone: Mapped[str | None] = mapped_column(String(64))
    # Channel ids the sender's confirmation showed, to report how the audience changed since.
    confirmed_channels: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column()

    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="broadcast",
        order_by="Delivery.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Delivery(Base):
    """One post of a broadcast to one channel, recorded before it is attempted."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "channel_id"),
        _status_check("status", DeliveryStatus),
        Index(None, "status"),
        # The frequency cap's search for recent posts to a channel.
        Index(None, "channel_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    channel_name: Mapped[str] = mapped_column(String(255))
    is_private: Mapped[bool] = mapped_column(Boolean)
    # The companies that qualified this channel, with the rule values they had at resolve time.
    companies: Mapped[list[Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    # Slack message timestamp of the post, the id needed to update or delete it later.
    ts: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the current round of attempts first moved the delivery to `sending`. A post whose
    # outcome is unknown is looked up in the channel's history from a little before this time.
    sending_started_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)

    broadcast: Mapped[Broadcast] = relationship(back_populates="deliveries")


class AuditLogEntry(Base):
    """An audited action (segment change, broadcast, settings change, denied request)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "team_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class BroadcastAction(Base):
    """An edit, delete or follow-up of a broadcast's posted messages, recorded before any call."""

    __tablename__ = "broadcast_actions"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{member.value}'" for member in ActionStatus)),
            name="status",
        ),
        Index(None, "broadcast_id"),
        # Lets a restarted process find the actions it left running.
        Index(None, "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    # `segments.followups.ActionKind`: edit, delete or followup.
    kind: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    # The new text (edit) or the reply (follow-up) as written, before personalization; empty for
    # a delete.
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    requested_by: Mapped[str] = mapped_column(String(SLACK_ID_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column()

    targets: Mapped[list[ActionTarget]] = relationship(
        back_populates="action",
        order_by="ActionTarget.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class ActionTarget(Base):
    """One posted message that an action edits, deletes or replies under."""

    __tablename__ = "action_targets"
    __table_args__ = (
        UniqueConstraint("action_id", "delivery_id"),
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{member.value}'" for member in TargetStatus)),
            name="status",
        ),
        Index(None, "delivery_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("broadcast_actions.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The follow-up reply's ts, once posted.
    reply_ts: Mapped[str | None] = mapped_column(String(32))
    # When the target first moved to `sending`; kept on retries like `Delivery.sending_started_at`.
    sending_started_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)

    action: Mapped[BroadcastAction] = relationship(back_populates="targets")
    delivery: Mapped[Delivery] = relationship()
