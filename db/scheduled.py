"""SQL storage of scheduled broadcasts: rows in `broadcasts` with status `scheduled`.

A scheduled broadcast keeps its message, sender, segment id, send time (`scheduled_at`, UTC) and
the channel ids its confirmation showed. Every change is a conditional UPDATE on
`status = 'scheduled'`, so an edit or cancel that races the scheduler either lands before the
claim or finds the row gone, and `claim` moves a row to `resolving` for exactly one caller. From
`resolving` on, the row is an ordinary broadcast (`db.stores.SqlDeliveryLog`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Broadcast, utc_now
from db.records import AuditAction
from db.stores import _add_audit, _updated_row_count
from segments.ports import BroadcastStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledBroadcast:
    """A broadcast waiting for its send time."""

    id: int
    team_id: str
    segment_id: int | None
    segment_name: str
    message_text: str
    message_blocks: Sequence[Mapping[str, Any]] | None
    sent_by: str
    scheduled_at: datetime
    # IANA name of the time zone the sender picked, to show the time back to them in it.
    timezone: str
    # Channel ids that the confirmation showed as the audience when it was scheduled.
    confirmed_channel_ids: frozenset[str]
    created_at: datetime


@dataclass(frozen=True)
class NewScheduledBroadcast:
    team_id: str
    segment_id: int
    segment_name: str
    message_text: str
    message_blocks: Sequence[Mapping[str, Any]] | None
    sent_by: str
    scheduled_at: datetime
    timezone: str
    confirmed_channel_ids: frozenset[str]


def _scheduled_record(row: Broadcast) -> ScheduledBroadcast:
    # Rows reach here only through queries on status `scheduled`, which always have a time.
    assert row.scheduled_at is not None
    return ScheduledBroadcast(
        id=row.id,
        team_id=row.team_id,
        segment_id=row.segment_id,
        segment_name=row.segment_name,
        message_text=row.message_text,
        message_blocks=row.message_blocks,
        sent_by=row.sent_by,
        scheduled_at=row.scheduled_at,
        timezone=row.scheduled_timezone or "UTC",
        confirmed_channel_ids=frozenset(row.confirmed_channels or ()),
        created_at=row.created_at,
    )


def _scheduled() -> Any:
    return Broadcast.status == BroadcastStatus.SCHEDULED


class SqlScheduledBroadcasts:
    """Scheduled broadcasts on SQL. Each method commits before it returns."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def schedule(self, broadcast: NewScheduledBroadcast) -> ScheduledBroadcast:
        """Insert a `scheduled` broadcast and audit it. The caller checks the time is in the future."""
        now = utc_now()
        row = Broadcast(
            team_id=broadcast.team_id,
            segment_id=broadcast.segment_id,
            segment_name=broadcast.segment_name,
            rules=None,
            rules_text="",
            message_text=broadcast.message_text,
            message_blocks=_blocks_json(broadcast.message_blocks),
            sent_by=broadcast.sent_by,
            status=BroadcastStatus.SCHEDULED,
            unmapped=[],
            scheduled_at=broadcast.scheduled_at,
            scheduled_timezone=broadcast.timezone,
            confirmed_channels=sorted(broadcast.confirmed_channel_ids),
            created_at=now,
            deliveries=[],
        )
        async with self._session_factory() as session, session.begin():
            session.add(row)
            await session.flush()
            _add_audit(
                session,
                team_id=row.team_id,
                user_id=row.sent_by,
                action=AuditAction.BROADCAST_SCHEDULED,
                target=f"broadcast:{row.id}",
                details={
                    "segment_id": row.segment_id,
                    "segment_name": row.segment_name,
                    "scheduled_at": broadcast.scheduled_at.isoformat(),
                    "channels": len(broadcast.confirmed_channel_ids),
                },
            )
            record = _scheduled_record(row)
        logger.info(
            "Broadcast %d scheduled in team %s by %s for segment %r at %s",
            record.id,
            record.team_id,
            record.sent_by,
            record.segment_name,
            record.scheduled_at.isoformat(),
        )
        return record

    async def get(self, broadcast_id: int) -> ScheduledBroadcast | None:
        """Return the broadcast while it is still `scheduled`, else None."""
        async with self._session_factory() as session, session.begin():
            row = await session.scalar(
                select(Broadcast).where(Broadcast.id == broadcast_id, _scheduled())
            )
            return None if row is None else _scheduled_record(row)

    async def list(self, *, team_id: str) -> Sequence[ScheduledBroadcast]:
        """Return the workspace's scheduled broadcasts, soonest first."""
        statement = (
            select(Broadcast)
            .where(Broadcast.team_id == team_id, _scheduled())
            .order_by(Broadcast.scheduled_at, Broadcast.id)
        )
        async with self._session_factory() as session, session.begin():
            rows = (await session.scalars(statement)).all()
            return tuple(_scheduled_record(row) for row in rows)

    async def list_due(self, *, now: datetime, limit: int = 50) -> Sequence[ScheduledBroadcast]:
        """Return up to `limit` scheduled broadcasts in every workspace whose time is `now` or earlier."""
        statement = (
            select(Broadcast)
            .where(_scheduled(), Broadcast.scheduled_at <= now)
            .order_by(Broadcast.scheduled_at, Broadcast.id)
            .limit(limit)
        )
        async with self._session_factory() as session, session.begin():
            rows = (await session.scalars(statement)).all()
            return tuple(_scheduled_record(row) for row in rows)

    async def list_orphaned(self) -> Sequence[ScheduledBroadcast]:
        """Return scheduled broadcasts whose segment was deleted (the database set its id to NULL)."""
        statement = select(Broadcast).where(_scheduled(), Broadcast.segment_id.is_(None))
        async with self._session_factory() as session, session.begin():
            rows = (await session.scalars(statement)).all()
            return tuple(_scheduled_record(row) for row in rows)

    async def next_due_at(self) -> datetime | None:
        """Return the earliest send time of any scheduled broadcast, or None when there is none."""
        async with self._session_factory() as session, session.begin():
            earliest: datetime | None = await session.scalar(
                select(func.min(Broadcast.scheduled_at)).where(_scheduled())
            )
        if earliest is not None and earliest.tzinfo is None:
            # An aggregate skips the column's type on SQLite, so the stored UTC value comes back naive.
            earliest = earliest.replace(tzinfo=utc_now().tzinfo)
        return earliest

    async def reschedule(
        self,
        broadcast_id: int,
        *,
        scheduled_at: datetime,
        timezone: str,
        message_text: str,
        message_blocks: Sequence[Mapping[str, Any]] | None,
        user_id: str,
    ) -> ScheduledBroadcast | None:
        """Change the time and message of a scheduled broadcast and audit it.

        Return None when it is no longer `scheduled` (it started sending or was cancelled).
        """
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, _scheduled())
                .values(
                    scheduled_at=scheduled_at,
                    scheduled_timezone=timezone,
                    message_text=message_text,
                    message_blocks=_blocks_json(message_blocks),
                ),
            )
            if updated == 0:
                return None
            row = await session.get(Broadcast, broadcast_id, populate_existing=True)
            assert row is not None  # Updated in this transaction.
            _add_audit(
                session,
                team_id=row.team_id,
                user_id=user_id,
                action=AuditAction.BROADCAST_RESCHEDULED,
                target=f"broadcast:{broadcast_id}",
                details={"scheduled_at": scheduled_at.isoformat()},
            )
            record = _scheduled_record(row)
        logger.info(
            "Scheduled broadcast %d changed by %s: sends at %s",
            broadcast_id,
            user_id,
            scheduled_at.isoformat(),
        )
        return record

    async def cancel(self, broadcast_id: int, *, user_id: str, reason: str) -> ScheduledBroadcast | None:
        """Move a scheduled broadcast to `cancelled` and audit it with `reason`.

        Return the broadcast as it was, or None when it is no longer `scheduled`.
        """
        async with self._session_factory() as session, session.begin():
            row = await session.scalar(
                select(Broadcast).where(Broadcast.id == broadcast_id, _scheduled())
            )
            if row is None:
                return None
            record = _scheduled_record(row)
            updated = await _updated_row_count(
                session,
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, _scheduled())
                .values(status=BroadcastStatus.CANCELLED, finished_at=utc_now()),
            )
            if updated == 0:
                return None
            _add_audit(
                session,
                team_id=record.team_id,
                user_id=user_id,
                action=AuditAction.BROADCAST_CANCELLED,
                target=f"broadcast:{broadcast_id}",
                details={"scheduled_at": record.scheduled_at.isoformat(), "reason": reason},
            )
        logger.info("Scheduled broadcast %d cancelled by %s: %s", broadcast_id, user_id, reason)
        return record

    async def claim(
        self, broadcast_id: int, *, segment_name: str, rules: Mapping[str, Any]
    ) -> bool:
        """Move a scheduled broadcast to `resolving` with the segment's current rules.

        The conditional UPDATE lets exactly one caller win, however many schedulers race for the
        row. The rules are stored so that `segments.resume` can resolve the broadcast again if the
        process stops before its audience is stored. Return whether this caller won.
        """
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, _scheduled())
                .values(
                    status=BroadcastStatus.RESOLVING,
                    segment_name=segment_name,
                    rules=dict(rules),
                ),
            )
        if updated:
            logger.info("Scheduled broadcast %d claimed for sending", broadcast_id)
        return updated == 1


def _blocks_json(blocks: Sequence[Mapping[str, Any]] | None) -> list[Any] | None:
    return None if blocks is None else [dict(block) for block in blocks]
