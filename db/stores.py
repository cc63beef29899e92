"""SQL implementations of the storage seams: segments, broadcast deliveries, settings and audit log.

Each public method is one unit of work: it opens a session, runs inside `session.begin()` and has
committed when it returns, so a change is durable before the caller acts on it. Every write
a person makes is audited in the same transaction as the change itself. Methods return frozen
records (`segments.ports`, `db.records`), never ORM objects.

Delivery state machine (`DELIVERY_TRANSITIONS`), enforced with conditional UPDATEs so two
writers cannot both win:

    pending             --mark_sending------> sending  (again on a retry, adding one attempt)
    sending/unconfirmed --mark_sent---------> sent     (unconfirmed: found later in history)
    pending/sending     --mark_failed-------> failed   (pending: never attempted)
    sending             --mark_unconfirmed--> unconfirmed
    pending             --mark_skipped------> skipped
    pending             --cancel_broadcast--> cancelled
    failed              --reopen_failed-----> pending  (resend)

A delivery is created `skipped` instead of `pending` when the workspace's frequency cap applies
to its channel (`db.frequency_cap`).

Repeating a mark that the delivery already has is a no-op that logs a WARNING and keeps the
first values. Any other move raises `InvalidStateTransition`. A broadcast goes from `resolving`
to `sending` (`add_audience`), then to `sent`, `partially_sent` or `failed` (`finish_broadcast`).
A `scheduled` broadcast (`db.scheduled`) moves to `resolving` when the scheduler claims it, or to
`cancelled`. Either running status can move to `cancelled`, and `reopen_failed` takes a finished broadcast
back to `sending`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import CursorResult, Update, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from db.frequency_cap import capped_channels
from db.actions import ActionNotFound, SqlActionLog  # noqa: F401 - re-exported for callers
from db.models import (
    SEGMENT_NAME_MAX_LENGTH,
    AuditLogEntry,
    Broadcast,
    Delivery,
    Segment,
    Workspace,
    WorkspaceSettingsRow,
    utc_now,
)
from db.records import (
    DEFAULT_CHANNEL_TEMPLATE,
    DEFAULT_TIMEZONE,
    AuditAction,
    AuditEntry,
    StoredBroadcast,
    WorkspaceSettings,
)
from segments.ports import (
    BroadcastRecord,
    BroadcastStatus,
    DeliveryRecord,
    DeliveryStatus,
    DeliveryTarget,
    DuplicateSegmentName,
    NewBroadcast,
    QualifyingCompany,
    SegmentRecord,
)

logger = logging.getLogger(__name__)

# Each delivery status, and the statuses a delivery may enter it from.
DELIVERY_TRANSITIONS: Mapping[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.FAILED}),
    DeliveryStatus.SENDING: frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENDING}),
    DeliveryStatus.SENT: frozenset({DeliveryStatus.SENDING, DeliveryStatus.UNCONFIRMED}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENDING}),
    DeliveryStatus.UNCONFIRMED: frozenset({DeliveryStatus.SENDING}),
    DeliveryStatus.SKIPPED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.CANCELLED: frozenset({DeliveryStatus.PENDING}),
}
# Statuses that end a delivery's part in a run, so its broadcast can finish. `failed` and
# `unconfirmed` can still move on later, through a resend or a history lookup.
FINAL_DELIVERY_STATUSES = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.UNCONFIRMED,
        DeliveryStatus.CANCELLED,
    }
)
_FINISHED_BROADCAST_STATUSES = frozenset(
    {
        BroadcastStatus.SENT,
        BroadcastStatus.PARTIALLY_SENT,
        BroadcastStatus.FAILED,
        BroadcastStatus.CANCELLED,
    }
)
_RUNNING_BROADCAST_STATUSES = (BroadcastStatus.RESOLVING, BroadcastStatus.SENDING)
_RESENDABLE_BROADCAST_STATUSES = (
    BroadcastStatus.SENT,
    BroadcastStatus.PARTIALLY_SENT,
    BroadcastStatus.FAILED,
    BroadcastStatus.CANCELLED,
)


class SegmentNotFound(LookupError):
    def __init__(self, segment_id: int) -> None:
        super().__init__(f"Segment {segment_id} was not found; it may have been deleted.")
        self.segment_id = segment_id


class BroadcastNotFound(LookupError):
    def __init__(self, broadcast_id: int) -> None:
        super().__init__(f"Broadcast {broadcast_id} was not found.")
        self.broadcast_id = broadcast_id


class DeliveryNotFound(LookupError):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"Delivery {delivery_id} was not found.")
        self.delivery_id = delivery_id


class InvalidStateTransition(Exception):
    """A delivery or broadcast cannot move to the requested status from the one it has."""


def validate_segment_name(name: str) -> str:
    """Strip `name` and return it. Raise ValueError when it is empty or over 80 characters."""
    stripped = name.strip()
    if not stripped:
        raise ValueError("The segment name is empty. Enter a name of 1 to 80 characters.")
    if len(stripped) > SEGMENT_NAME_MAX_LENGTH:
        raise ValueError(
            f"The segment name is {len(stripped)} characters long, but at most "
            f"{SEGMENT_NAME_MAX_LENGTH} are allowed. Choose a shorter name."
        )
    return stripped


def segment_name_key(name: str) -> str:
    """Return the key that makes `Renewals` and ` renewals ` the same segment name."""
    return name.strip().casefold()


def broadcast_status_for(statuses: Iterable[DeliveryStatus]) -> BroadcastStatus:
    """Derive a finished broadcast's status from its final delivery statuses.

    `sent` when every delivery is sent or skipped on purpose (and at least one is sent),
    `failed` when none is sent, `partially_sent` otherwise. A broadcast without deliveries is
    `failed` because nothing was sent, although `SqlDeliveryLog.create_broadcast` never creates
    one.
    """
    sent = 0
    done = 0
    total = 0
    for status in statuses:
        total += 1
        if status == DeliveryStatus.SENT:
            sent += 1
        if status in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED):
            done += 1
    if sent > 0 and done == total:
        return BroadcastStatus.SENT
    if sent == 0:
        return BroadcastStatus.FAILED
    return BroadcastStatus.PARTIALLY_SENT


def _add_audit(
    session: AsyncSession,
    *,
    team_id: str,
    user_id: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any],
) -> AuditLogEntry:
    entry = AuditLogEntry(
        team_id=team_id,
        user_id=user_id,
        action=action,
        target=target,
        details=dict(details),
        created_at=utc_now(),
    )
    session.add(entry)
    return entry


def _segment_record(segment: Segment) -> SegmentRecord:
    return SegmentRecord(
        id=segment.id,
        team_id=segment.team_id,
        name=segment.name,
        rules=segment.rules,
        created_by=segment.created_by,
        created_at=segment.created_at,
        updated_by=segment.updated_by,
        updated_at=segment.updated_at,
    )


def _delivery_record(delivery: Delivery) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery.id,
        broadcast_id=delivery.broadcast_id,
        channel_id=delivery.channel_id,
        channel_name=delivery.channel_name,
        status=DeliveryStatus(delivery.status),
        attempts=delivery.attempts,
        ts=delivery.ts,
        error=delivery.error,
        reason=delivery.reason,
        companies=_companies_from_json(delivery.companies),
        is_private=delivery.is_private,
        sending_started_at=delivery.sending_started_at,
    )


def _broadcast_record(broadcast: Broadcast) -> BroadcastRecord:
    return BroadcastRecord(
        id=broadcast.id,
        team_id=broadcast.team_id,
        segment_name=broadcast.segment_name,
        status=BroadcastStatus(broadcast.status),
        created_at=broadcast.created_at,
        deliveries=tuple(_delivery_record(delivery) for delivery in broadcast.deliveries),
    )


def _stored_broadcast(broadcast: Broadcast) -> StoredBroadcast:
    return StoredBroadcast(
        record=_broadcast_record(broadcast),
        segment_id=broadcast.segment_id,
        rules=broadcast.rules,
        rules_text=broadcast.rules_text,
        message_text=broadcast.message_text,
        message_blocks=broadcast.message_blocks,
        sent_by=broadcast.sent_by,
        unmapped=tuple(broadcast.unmapped),
        report_channel=broadcast.report_channel,
        report_ts=broadcast.report_ts,
    )


def _audit_entry(entry: AuditLogEntry) -> AuditEntry:
    return AuditEntry(
        id=entry.id,
        team_id=entry.team_id,
        user_id=entry.user_id,
        action=entry.action,
        target=entry.target,
        details=entry.details,
        created_at=entry.created_at,
    )


async def _updated_row_count(session: AsyncSession, statement: Update) -> int:
    result = await session.execute(statement)
    # An UPDATE returns a CursorResult, whose rowcount is the number of rows the WHERE matched.
    return cast(CursorResult[Any], result).rowcount


def _validate_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}.")


async def _segment_id_by_key(session: AsyncSession, *, team_id: str, name_key: str) -> int | None:
    statement = select(Segment.id).where(Segment.team_id == team_id, Segment.name_key == name_key)
    return await session.scalar(statement)


class SqlSegmentStore:
    """`segments.ports.SegmentStore` on SQL: names are unique per workspace ignoring case."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def create(
        self, *, team_id: str, name: str, rules: Mapping[str, Any], user_id: str
    ) -> SegmentRecord:
        """Insert a segment and audit it.

        Raises ValueError for an empty or over-long name and DuplicateSegmentName when the name
        is taken in the workspace, also when another writer took it a moment earlier.
        """
        clean_name = validate_segment_name(name)
        name_key = segment_name_key(clean_name)
        try:
            async with self._session_factory() as session, session.begin():
                await self._ensure_name_free(
                    session, team_id=team_id, name=clean_name, segment_id=None
                )
                now = utc_now()
                segment = Segment(
                    team_id=team_id,
                    name=clean_name,
                    name_key=name_key,
                    rules=dict(rules),
                    created_by=user_id,
                    created_at=now,
                    updated_by=user_id,
                    updated_at=now,
                )
                session.add(segment)
                await session.flush()
                _add_audit(
                    session,
                    team_id=team_id,
                    user_id=user_id,
                    action=AuditAction.SEGMENT_CREATED,
                    target=f"segment:{segment.id}",
                    details={"name": clean_name, "rules": segment.rules},
                )
                record = _segment_record(segment)
        except IntegrityError as exc:
            await self._raise_if_name_taken(exc, team_id=team_id, name=clean_name)
            raise

        logger.info(
            "Segment %s %r created in team %s by %s", record.id, record.name, team_id, user_id
        )
        return record

    async def update(
        self, segment_id: int, *, name: str, rules: Mapping[str, Any], user_id: str
    ) -> SegmentRecord:
        """Rename a segment or replace its rules, and audit the old and new values.

        Changing only the case of the name is allowed. Raises SegmentNotFound, ValueError for an
        invalid name, and DuplicateSegmentName when another segment has the name.
        """
        clean_name = validate_segment_name(name)
        name_key = segment_name_key(clean_name)
        team_id: str | None = None
        try:
            async with self._session_factory() as session, session.begin():
                segment = await session.get(Segment, segment_id)
                if segment is None:
                    raise SegmentNotFound(segment_id)
                team_id = segment.team_id
                await self._ensure_name_free(
                    session, team_id=team_id, name=clean_name, segment_id=segment_id
                )

                details = {
                    "name": clean_name,
                    "previous_name": segment.name,
                    "rules": dict(rules),
                    "previous_rules": segment.rules,
                }
                segment.name = clean_name
                segment.name_key = name_key
                segment.rules = dict(rules)
                segment.updated_by = user_id
                segment.updated_at = utc_now()
                await session.flush()
                _add_audit(
                    session,
                    team_id=team_id,
                    user_id=user_id,
                    action=AuditAction.SEGMENT_UPDATED,
                    target=f"segment:{segment_id}",
                    details=details,
                )
                record = _segment_record(segment)
        except IntegrityError as exc:
            if team_id is not None:
                await self._raise_if_name_taken(exc, team_id=team_id, name=clean_name)
            raise

        logger.info("Segment %s updated in team %s by %s", segment_id, team_id, user_id)
        return record

    async def get(self, segment_id: int) -> SegmentRecord | None:
        async with self._session_factory() as session, session.begin():
            segment = await session.get(Segment, segment_id)
            return None if segment is None else _segment_record(segment)

    async def get_by_name(self, *, team_id: str, name: str) -> SegmentRecord | None:
        """Return the workspace's segment with `name`, ignoring case and surrounding whitespace."""
        statement = select(Segment).where(
            Segment.team_id == team_id, Segment.name_key == segment_name_key(name)
        )
        async with self._session_factory() as session, session.begin():
            segment = await session.scalar(statement)
            return None if segment is None else _segment_record(segment)

    async def list(self, *, team_id: str) -> Sequence[SegmentRecord]:
        """Return the workspace's segments ordered by name, ignoring case."""
        statement = (
            select(Segment).where(Segment.team_id == team_id).order_by(Segment.name_key, Segment.id)
        )
        async with self._session_factory() as session, session.begin():
            segments = (await session.scalars(statement)).all()
            return tuple(_segment_record(segment) for segment in segments)

    async def delete(self, segment_id: int, *, user_id: str) -> bool:
        """Delete a segment and audit it; its broadcasts stay, with `segment_id` set to NULL."""
        async with self._session_factory() as session, session.begin():
            segment = await session.get(Segment, segment_id)
            if segment is None:
                return False
            team_id = segment.team_id
            _add_audit(
                session,
                team_id=team_id,
                user_id=user_id,
                action=AuditAction.SEGMENT_DELETED,
                target=f"segment:{segment_id}",
                details={"name": segment.name, "rules": segment.rules},
            )
            await session.delete(segment)

        logger.info("Segment %s deleted in team %s by %s", segment_id, team_id, user_id)
        return True

    async def _ensure_name_free(
        self, session: AsyncSession, *, team_id: str, name: str, segment_id: int | None
    ) -> None:
        """Raise DuplicateSegmentName when a segment other than `segment_id` has `name`."""
        taken_by = await _segment_id_by_key(
            session, team_id=team_id, name_key=segment_name_key(name)
        )
        if taken_by is not None and taken_by != segment_id:
            raise DuplicateSegmentName(name)

    async def _raise_if_name_taken(self, error: IntegrityError, *, team_id: str, name: str) -> None:
        # The unique constraint caught a writer that took the name after our check. Any other
        # integrity error is not about the name, and the caller re-raises it unchanged.
        async with self._session_factory() as session, session.begin():
            taken_by = await _segment_id_by_key(
                session, team_id=team_id, name_key=segment_name_key(name)
            )
        if taken_by is not None:
            raise DuplicateSegmentName(name) from error


def _companies_json(target: DeliveryTarget) -> list[dict[str, Any]]:
    return [
        {
            "company_id": company.company_id,
            "company_name": company.company_name,
            "values": dict(company.values),
            "variables": dict(company.variables),
        }
        for company in target.companies
    ]


def _companies_from_json(rows: Sequence[Mapping[str, Any]]) -> tuple[QualifyingCompany, ...]:
    # Rows stored before personalization have no `variables` key.
    return tuple(
        QualifyingCompany(
            company_id=str(row["company_id"]),
            company_name=str(row["company_name"]),
            values=dict(row.get("values") or {}),
            variables=dict(row.get("variables") or {}),
        )
        for row in rows
    )


def _validate_targets(targets: Sequence[DeliveryTarget]) -> None:
    if not targets:
        raise ValueError(
            "A broadcast needs at least one target channel, but none was given: the segment "
            "matched no company with a channel, so there is nothing to send."
        )
    seen: set[str] = set()
    for target in targets:
        if target.channel_id in seen:
            raise ValueError(
                f"Channel {target.channel_id} ({target.channel_name}) is listed twice in the "
                "broadcast targets. Merge its companies into one target."
            )
        seen.add(target.channel_id)


async def _new_deliveries(
    session: AsyncSession, *, team_id: str, targets: Sequence[DeliveryTarget], now: datetime
) -> list[Delivery]:
    """Build one `pending` delivery per target, or `skipped` where the frequency cap applies.

    Every path that stores an audience (immediate, scheduled and workflow sends) comes through
    here, so the workspace's frequency cap applies to all of them alike.
    """
    skipped = await capped_channels(
        session, team_id=team_id, channel_ids=[target.channel_id for target in targets], now=now
    )
    return [
        Delivery(
            channel_id=target.channel_id,
            channel_name=target.channel_name,
            is_private=target.is_private,
            companies=_companies_json(target),
            status=DeliveryStatus.SKIPPED if target.channel_id in skipped else DeliveryStatus.PENDING,
            reason=skipped.get(target.channel_id),
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        for target in targets
    ]


class SqlDeliveryLog:
    """`segments.ports.DeliveryLog` on SQL, with the extra steps that make broadcasts durable.

    Each method commits before it returns. Delivery status changes go through
    `DELIVERY_TRANSITIONS` only; see the module docstring for the state machine.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def create_broadcast(
        self, broadcast: NewBroadcast, *, rules: Mapping[str, Any] | None = None
    ) -> BroadcastRecord:
        """Insert the broadcast (`sending`) with one `pending` delivery per target, and audit it.

        `rules` is the segment's rules JSON, kept so the broadcast can be resolved again. Raises
        ValueError, and stores nothing, when there are no targets or a channel is listed twice.
        A broadcast to zero channels is rejected rather than recorded as failed.
        """
        _validate_targets(broadcast.targets)
        now = utc_now()
        row = self._broadcast_row(broadcast, rules=rules, status=BroadcastStatus.SENDING, now=now)
        async with self._session_factory() as session, session.begin():
            row.deliveries = await _new_deliveries(
                session, team_id=broadcast.team_id, targets=broadcast.targets, now=now
            )
            session.add(row)
            await session.flush()
            self._audit_created(session, row, channels=len(broadcast.targets))
            record = _broadcast_record(row)

        logger.info(
            "Broadcast %s created in team %s by %s for segment %r: %d channels, %d unmapped",
            record.id,
            broadcast.team_id,
            broadcast.sent_by,
            broadcast.segment_name,
            len(broadcast.targets),
            len(broadcast.unmapped),
        )
        return record

    async def start_resolving(
        self, broadcast: NewBroadcast, *, rules: Mapping[str, Any]
    ) -> BroadcastRecord:
        """Insert a `resolving` broadcast without deliveries, before its audience is resolved.

        `broadcast.targets` and `unmapped` are ignored; `add_audience` stores them. A broadcast
        left `resolving` by a crash is resolved again from `rules` on the next start.
        """
        row = self._broadcast_row(
            broadcast, rules=rules, status=BroadcastStatus.RESOLVING, now=utc_now()
        )
        async with self._session_factory() as session, session.begin():
            session.add(row)
            await session.flush()
            record = _broadcast_record(row)
        logger.info(
            "Broadcast %s is resolving segment %r in team %s for %s",
            record.id,
            broadcast.segment_name,
            broadcast.team_id,
            broadcast.sent_by,
        )
        return record

    async def add_audience(
        self,
        broadcast_id: int,
        *,
        rules_text: str,
        targets: Sequence[DeliveryTarget],
        unmapped: Sequence[Mapping[str, str]],
    ) -> BroadcastRecord:
        """Store a `resolving` broadcast's audience as `pending` deliveries and move it to `sending`.

        Raises BroadcastNotFound, ValueError for zero or repeated targets, and
        InvalidStateTransition when the broadcast is no longer `resolving` (it was cancelled, or
        another process stored its audience first).
        """
        _validate_targets(targets)
        now = utc_now()
        async with self._session_factory() as session, session.begin():
            row = await self._load_broadcast(session, broadcast_id)
            if row is None:
                raise BroadcastNotFound(broadcast_id)
            if row.status != BroadcastStatus.RESOLVING or row.deliveries:
                raise InvalidStateTransition(
                    f"Broadcast {broadcast_id} is {row.status}, so its audience cannot be "
                    "stored again: only a resolving broadcast takes an audience."
                )
            row.rules_text = rules_text
            row.unmapped = [dict(company) for company in unmapped]
            row.status = BroadcastStatus.SENDING
            row.deliveries.extend(
                await _new_deliveries(session, team_id=row.team_id, targets=targets, now=now)
            )
            await session.flush()
            self._audit_created(session, row, channels=len(targets))
            record = _broadcast_record(row)
        logger.info(
            "Broadcast %s resolved to %d channels, %d unmapped", broadcast_id, len(targets), len(unmapped)
        )
        return record

    async def fail_resolving(self, broadcast_id: int) -> BroadcastRecord:
        """Finish a `resolving` broadcast as `failed` because its audience could not be resolved.

        A broadcast that is no longer `resolving` is returned unchanged.
        """
        async with self._session_factory() as session, session.begin():
            await session.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.RESOLVING)
                .values(status=BroadcastStatus.FAILED, finished_at=utc_now())
            )
            row = await self._load_broadcast(session, broadcast_id)
            if row is None:
                raise BroadcastNotFound(broadcast_id)
            return _broadcast_record(row)

    async def mark_sending(self, delivery_id: int) -> int:
        """Set the delivery to `sending`, add one attempt and return the attempt count.

        Allowed from `pending` and from `sending` (a retry). Raises DeliveryNotFound, or
        InvalidStateTransition from any other status.
        """
        attempts = await self.claim_for_sending(delivery_id)
        if attempts is None:
            async with self._session_factory() as session, session.begin():
                current = await self._current_status(session, delivery_id)
            raise InvalidStateTransition(
                f"Delivery {delivery_id} is already {current}, so it cannot become sending: only "
                "a pending or sending delivery can."
            )
        return attempts

    async def claim_for_sending(self, delivery_id: int) -> int | None:
        """Like `mark_sending`, but return None when the delivery is no longer to be sent.

        None means another writer moved it first, for example a cancel. `sending_started_at` is
        set when the delivery leaves `pending` and kept on retries. Raises DeliveryNotFound.
        """
        now = utc_now()
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.status.in_(DELIVERY_TRANSITIONS[DeliveryStatus.SENDING]),
                )
                .values(
                    status=DeliveryStatus.SENDING,
                    attempts=Delivery.attempts + 1,
                    sending_started_at=case(
                        (Delivery.status == DeliveryStatus.PENDING, now),
                        else_=Delivery.sending_started_at,
                    ),
                    updated_at=now,
                ),
            )
            if updated == 0:
                await self._current_status(session, delivery_id)
                return None
            attempts = await session.scalar(
                select(Delivery.attempts).where(Delivery.id == delivery_id)
            )

        assert attempts is not None  # The row was updated in this transaction.
        logger.debug("Delivery %s is sending, attempt %d", delivery_id, attempts)
        return attempts

    async def mark_sent(self, delivery_id: int, *, ts: str) -> None:
        """Set a `sending` or `unconfirmed` delivery to `sent` with the Slack message timestamp.

        `unconfirmed` to `sent` is for a post found later in the channel's history. A delivery
        that is already `sent` keeps its first ts, and the call logs a WARNING. Raises
        DeliveryNotFound, or InvalidStateTransition from any other status (call mark_sending
        before posting, so the attempt is recorded first).
        """
        moved = await self._move(
            delivery_id,
            to=DeliveryStatus.SENT,
            values={"ts": ts, "error": None, "reason": None},
            detail=f"with ts {ts}",
        )
        if moved:
            logger.debug("Delivery %s sent with ts %s", delivery_id, ts)

    async def mark_failed(self, delivery_id: int, *, error: str, reason: str) -> None:
        """Set a `pending` or `sending` delivery to `failed` with Slack's error code and a reason.

        `pending` is allowed so a delivery that is never attempted (the token was rejected on an
        earlier post) can fail. A delivery that is already `failed` keeps its first error, and the
        call logs a WARNING. Raises DeliveryNotFound or InvalidStateTransition.
        """
        moved = await self._move(
            delivery_id,
            to=DeliveryStatus.FAILED,
            values={"error": error, "reason": reason},
            detail=f"with error {error}",
        )
        if moved:
            logger.debug("Delivery %s failed: %s", delivery_id, error)

    async def mark_unconfirmed(self, delivery_id: int, *, error: str, reason: str) -> None:
        """Set a `sending` delivery to `unconfirmed`: the post may exist and could not be checked.

        An unconfirmed delivery is reported and never posted again by this app, although a later
        history lookup may still confirm it (`mark_sent`). Raises DeliveryNotFound or
        InvalidStateTransition.
        """
        moved = await self._move(
            delivery_id,
            to=DeliveryStatus.UNCONFIRMED,
            values={"error": error, "reason": reason},
            detail=f"with error {error}",
        )
        if moved:
            logger.warning("Delivery %s is unconfirmed: %s", delivery_id, error)

    async def mark_skipped(self, delivery_id: int, *, reason: str) -> None:
        """Set a `pending` delivery to `skipped`, not posted on purpose. Raises as `mark_failed`."""
        await self._move(
            delivery_id, to=DeliveryStatus.SKIPPED, values={"reason": reason}, detail=reason
        )

    async def cancel_broadcast(self, broadcast_id: int, *, user_id: str) -> BroadcastRecord:
        """Cancel a `resolving` or `sending` broadcast, and audit it.

        Its `pending` deliveries become `cancelled` at once. Deliveries already `sending` are left
        to finish, because their post may be on its way. The broadcast keeps `cancelled` when
        `finish_broadcast` runs. Raises BroadcastNotFound, or InvalidStateTransition when the
        broadcast has finished.
        """
        now = utc_now()
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Broadcast)
                .where(
                    Broadcast.id == broadcast_id,
                    Broadcast.status.in_(_RUNNING_BROADCAST_STATUSES),
                )
                .values(status=BroadcastStatus.CANCELLED),
            )
            row = await self._load_broadcast(session, broadcast_id)
            if row is None:
                raise BroadcastNotFound(broadcast_id)
            if updated == 0:
                raise InvalidStateTransition(
                    f"Broadcast {broadcast_id} is already {row.status}, so it cannot be "
                    "cancelled: only a running broadcast can be."
                )
            cancelled = await _updated_row_count(
                session,
                update(Delivery)
                .where(
                    Delivery.broadcast_id == broadcast_id,
                    Delivery.status.in_(DELIVERY_TRANSITIONS[DeliveryStatus.CANCELLED]),
                )
                .values(status=DeliveryStatus.CANCELLED, updated_at=now),
            )
            if not row.deliveries:
                # Cancelled while resolving: nothing was posted, so it is finished now.
                row.finished_at = now
            _add_audit(
                session,
                team_id=row.team_id,
                user_id=user_id,
                action=AuditAction.BROADCAST_CANCELLED,
                target=f"broadcast:{broadcast_id}",
                details={"cancelled_deliveries": cancelled},
            )
            row = await self._load_broadcast(session, broadcast_id, refresh=True)
            assert row is not None  # Loaded above in this transaction.
            record = _broadcast_record(row)

        logger.info(
            "Broadcast %s cancelled by %s: %d pending deliveries cancelled",
            broadcast_id,
            user_id,
            cancelled,
        )
        return record

    async def reopen_failed(self, broadcast_id: int, *, user_id: str) -> BroadcastRecord:
        """Move a finished broadcast's `failed` deliveries back to `pending` to resend them.

        The broadcast becomes `sending` again and the change is audited. `unconfirmed`
        deliveries stay as they are, because their message may already be in the channel.
        Raises BroadcastNotFound, or InvalidStateTransition when the broadcast is still running
        (also when another resend started first) or has no failed delivery.
        """
        now = utc_now()
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Broadcast)
                .where(
                    Broadcast.id == broadcast_id,
                    Broadcast.status.in_(_RESENDABLE_BROADCAST_STATUSES),
                    Broadcast.deliveries.any(Delivery.status == DeliveryStatus.FAILED),
                )
                .values(status=BroadcastStatus.SENDING, finished_at=None),
            )
            row = await self._load_broadcast(session, broadcast_id)
            if row is None:
                raise BroadcastNotFound(broadcast_id)
            if updated == 0:
                raise InvalidStateTransition(
                    f"Broadcast {broadcast_id} is {row.status} and has no failed delivery to "
                    "resend: only a finished broadcast with failed deliveries can be resent."
                )
            reopened = await _updated_row_count(
                session,
                update(Delivery)
                .where(
                    Delivery.broadcast_id == broadcast_id,
                    Delivery.status.in_(DELIVERY_TRANSITIONS[DeliveryStatus.PENDING]),
                )
                .values(
                    status=DeliveryStatus.PENDING,
                    error=None,
                    reason=None,
                    sending_started_at=None,
                    updated_at=now,
                ),
            )
            _add_audit(
                session,
                team_id=row.team_id,
                user_id=user_id,
                action=AuditAction.BROADCAST_RESENT,
                target=f"broadcast:{broadcast_id}",
                details={"deliveries": reopened},
            )
            row = await self._load_broadcast(session, broadcast_id, refresh=True)
            assert row is not None  # Loaded above in this transaction.
            record = _broadcast_record(row)

        logger.info(
            "Broadcast %s reopened by %s to resend %d failed deliveries",
            broadcast_id,
            user_id,
            reopened,
        )
        return record

    async def finish_broadcast(self, broadcast_id: int) -> BroadcastRecord:
        """Derive and store the final status (see `broadcast_status_for`) and `finished_at`.

        A cancelled broadcast stays `cancelled`. Finishing an already finished broadcast returns
        it unchanged. Raises BroadcastNotFound, or InvalidStateTransition while any delivery is
        still `pending` or `sending`, because those must reach a final status first.
        """
        async with self._session_factory() as session, session.begin():
            broadcast = await self._load_broadcast(session, broadcast_id)
            if broadcast is None:
                raise BroadcastNotFound(broadcast_id)
            if broadcast.finished_at is not None and (
                broadcast.status in _FINISHED_BROADCAST_STATUSES
            ):
                return _broadcast_record(broadcast)

            unfinished = [
                delivery.id
                for delivery in broadcast.deliveries
                if delivery.status not in FINAL_DELIVERY_STATUSES
            ]
            if unfinished:
                raise InvalidStateTransition(
                    f"Broadcast {broadcast_id} cannot finish: {len(unfinished)} deliveries are "
                    f"still pending or sending (ids {unfinished[:10]}). Move each one to a final "
                    "status first."
                )
            if broadcast.status != BroadcastStatus.CANCELLED:
                statuses = [DeliveryStatus(delivery.status) for delivery in broadcast.deliveries]
                broadcast.status = broadcast_status_for(statuses)
            broadcast.finished_at = utc_now()
            record = _broadcast_record(broadcast)

        sent = sum(1 for delivery in record.deliveries if delivery.status == DeliveryStatus.SENT)
        logger.info(
            "Broadcast %s finished as %s: %d of %d deliveries sent",
            broadcast_id,
            record.status,
            sent,
            len(record.deliveries),
        )
        return record

    async def set_report_message(self, broadcast_id: int, *, channel: str, ts: str) -> None:
        """Remember the sender's report DM, so a restarted process edits it instead of posting."""
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Broadcast)
                .where(Broadcast.id == broadcast_id)
                .values(report_channel=channel, report_ts=ts),
            )
            if updated == 0:
                raise BroadcastNotFound(broadcast_id)

    async def get_broadcast(self, broadcast_id: int) -> BroadcastRecord | None:
        async with self._session_factory() as session, session.begin():
            broadcast = await self._load_broadcast(session, broadcast_id)
            return None if broadcast is None else _broadcast_record(broadcast)

    async def get_stored_broadcast(self, broadcast_id: int) -> StoredBroadcast | None:
        """Return the broadcast with its message, rules and report DM, or None when missing."""
        async with self._session_factory() as session, session.begin():
            broadcast = await self._load_broadcast(session, broadcast_id)
            return None if broadcast is None else _stored_broadcast(broadcast)

    async def list_unfinished(self) -> Sequence[StoredBroadcast]:
        """Return every broadcast left `resolving` or `sending`, oldest first, in every workspace."""
        statement = (
            select(Broadcast)
            .where(Broadcast.status.in_(_RUNNING_BROADCAST_STATUSES))
            .order_by(Broadcast.created_at, Broadcast.id)
            .options(selectinload(Broadcast.deliveries))
        )
        async with self._session_factory() as session, session.begin():
            broadcasts = (await session.scalars(statement)).all()
            return tuple(_stored_broadcast(broadcast) for broadcast in broadcasts)

    async def frequency_capped(self, *, team_id: str, channel_ids: Sequence[str]) -> Mapping[str, str]:
        """Return the channels the workspace's frequency cap would skip now, with the reason each."""
        async with self._session_factory() as session, session.begin():
            return await capped_channels(session, team_id=team_id, channel_ids=channel_ids, now=utc_now())

    async def list_broadcasts(self, team_id: str, *, limit: int = 20) -> Sequence[BroadcastRecord]:
        """Return the workspace's latest `limit` broadcasts with their deliveries, newest first.

        Broadcasts still waiting for their scheduled time are left out: they have not been sent,
        and App Home lists them in their own section.
        """
        _validate_limit(limit)
        statement = (
            select(Broadcast)
            .where(Broadcast.team_id == team_id, Broadcast.status != BroadcastStatus.SCHEDULED)
            .order_by(Broadcast.created_at.desc(), Broadcast.id.desc())
            .limit(limit)
            .options(selectinload(Broadcast.deliveries))
        )
        async with self._session_factory() as session, session.begin():
            broadcasts = (await session.scalars(statement)).all()
            return tuple(_broadcast_record(broadcast) for broadcast in broadcasts)

    async def _move(
        self,
        delivery_id: int,
        *,
        to: DeliveryStatus,
        values: Mapping[str, Any],
        detail: str,
    ) -> bool:
        """Apply one transition of `DELIVERY_TRANSITIONS` with a conditional UPDATE.

        Return True when the row moved, False when it already had status `to` (a repeated mark,
        logged as a WARNING and otherwise ignored). Raise DeliveryNotFound or
        InvalidStateTransition.
        """
        sources = DELIVERY_TRANSITIONS[to]
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status.in_(sources))
                .values(status=to, updated_at=utc_now(), **values),
            )
            if updated == 1:
                return True
            current = await self._current_status(session, delivery_id)
        if current == to:
            logger.warning(
                "Delivery %s is already %s. Ignoring the repeated change %s", delivery_id, to, detail
            )
            return False
        allowed = " or ".join(sorted(sources))
        state = f"already {current}" if current in FINAL_DELIVERY_STATUSES else str(current)
        hint = ""
        if to == DeliveryStatus.SENT and current == DeliveryStatus.PENDING:
            hint = " Call mark_sending before posting, so the attempt is recorded first."
        raise InvalidStateTransition(
            f"Delivery {delivery_id} is {state}, so it cannot become {to}: only a {allowed} "
            f"delivery can.{hint}"
        )

    def _broadcast_row(
        self,
        broadcast: NewBroadcast,
        *,
        rules: Mapping[str, Any] | None,
        status: BroadcastStatus,
        now: datetime,
    ) -> Broadcast:
        return Broadcast(
            team_id=broadcast.team_id,
            segment_id=broadcast.segment_id,
            segment_name=broadcast.segment_name,
            rules=None if rules is None else dict(rules),
            rules_text=broadcast.rules_text,
            message_text=broadcast.message_text,
            message_blocks=(
                None
                if broadcast.message_blocks is None
                else [dict(block) for block in broadcast.message_blocks]
            ),
            sent_by=broadcast.sent_by,
            status=status,
            unmapped=[dict(company) for company in broadcast.unmapped],
            created_at=now,
            deliveries=[],
        )

    def _audit_created(self, session: AsyncSession, row: Broadcast, *, channels: int) -> None:
        _add_audit(
            session,
            team_id=row.team_id,
            user_id=row.sent_by,
            action=AuditAction.BROADCAST_CREATED,
            target=f"broadcast:{row.id}",
            details={
                "segment_id": row.segment_id,
                "segment_name": row.segment_name,
                "channels": channels,
                "unmapped": len(row.unmapped),
            },
        )

    async def _load_broadcast(
        self, session: AsyncSession, broadcast_id: int, *, refresh: bool = False
    ) -> Broadcast | None:
        # `refresh` reloads rows this session already holds, after a bulk UPDATE changed them.
        return await session.get(
            Broadcast,
            broadcast_id,
            options=[selectinload(Broadcast.deliveries)],
            populate_existing=refresh,
        )

    async def _current_status(self, session: AsyncSession, delivery_id: int) -> DeliveryStatus:
        status = await session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
        if status is None:
            raise DeliveryNotFound(delivery_id)
        return DeliveryStatus(status)


def _validate_timezone(timezone: str) -> str:
    name = timezone.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f'Time zone "{timezone}" was not found. Use an IANA name such as "Europe/Berlin".'
        ) from exc
    return name


def _clean_managers(managers: Iterable[str]) -> tuple[str, ...]:
    cleaned: dict[str, None] = {}
    for user_id in managers:
        stripped = user_id.strip()
        if not stripped:
            raise ValueError("A manager's Slack user id is empty. Remove it or enter an id.")
        cleaned[stripped] = None
    return tuple(cleaned)


def _settings_changes(
    before: WorkspaceSettings, after: WorkspaceSettings
) -> dict[str, dict[str, Any]]:
    changes: dict[str, dict[str, Any]] = {}
    for name in ("channel_field", "channel_template", "timezone", "managers", "frequency_cap_days"):
        old = getattr(before, name)
        new = getattr(after, name)
        if name == "managers":
            old, new = [*old], [*new]
        if old != new:
            changes[name] = {"old": old, "new": new}
    return changes


class SqlSettingsStore:
    """Per-workspace settings. A workspace that never saved any gets the defaults given here."""

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        default_channel_field: str | None = None,
        default_channel_template: str = DEFAULT_CHANNEL_TEMPLATE,
        default_timezone: str = DEFAULT_TIMEZONE,
    ) -> None:
        self._session_factory = session_factory
        self._default_channel_field = default_channel_field
        self._default_channel_template = default_channel_template
        self._default_timezone = default_timezone

    async def get(self, team_id: str) -> WorkspaceSettings:
        async with self._session_factory() as session, session.begin():
            row = await session.get(WorkspaceSettingsRow, team_id)
            return self._defaults(team_id) if row is None else self._from_row(row)

    async def update(
        self,
        team_id: str,
        *,
        channel_field: str | None,
        channel_template: str,
        timezone: str,
        managers: Iterable[str],
        user_id: str,
        frequency_cap_days: int | None = None,
    ) -> WorkspaceSettings:
        """Replace all settings of the workspace and audit the fields that changed.

        An empty `channel_field` is stored as None, and `frequency_cap_days=None` turns the cap
        off. Raises ValueError for an empty template, an unknown time zone, an empty manager id
        or a cap below one day.
        """
        if frequency_cap_days is not None and frequency_cap_days < 1:
            raise ValueError(
                f"The frequency cap must be at least 1 day, got {frequency_cap_days}. "
                "Leave it empty to turn the cap off."
            )
        field = (channel_field or "").strip() or None
        template = channel_template.strip()
        if not template:
            raise ValueError(
                "The channel name template is empty. Enter one such as customer-{slug}."
            )
        zone = _validate_timezone(timezone)
        manager_ids = _clean_managers(managers)

        async with self._session_factory() as session, session.begin():
            await self._ensure_workspace(session, team_id=team_id, name=None)
            row = await session.get(WorkspaceSettingsRow, team_id)
            before = self._defaults(team_id) if row is None else self._from_row(row)
            if row is None:
                row = WorkspaceSettingsRow(team_id=team_id)
                session.add(row)
            row.channel_field = field
            row.channel_template = template
            row.timezone = zone
            row.managers = [*manager_ids]
            row.frequency_cap_days = frequency_cap_days
            row.updated_by = user_id
            row.updated_at = utc_now()
            after = self._from_row(row)
            _add_audit(
                session,
                team_id=team_id,
                user_id=user_id,
                action=AuditAction.SETTINGS_UPDATED,
                target=f"workspace:{team_id}",
                details={"changes": _settings_changes(before, after)},
            )

        logger.info("Settings of team %s updated by %s", team_id, user_id)
        return after

    async def save_workspace(self, team_id: str, *, name: str | None) -> None:
        """Insert the workspace, or update its name when it exists and `name` is given."""
        async with self._session_factory() as session, session.begin():
            await self._ensure_workspace(session, team_id=team_id, name=name)

    async def _ensure_workspace(
        self, session: AsyncSession, *, team_id: str, name: str | None
    ) -> None:
        workspace = await session.get(Workspace, team_id)
        if workspace is None:
            session.add(Workspace(team_id=team_id, name=name, created_at=utc_now()))
            # Flushed now so the settings row's foreign key finds it.
            await session.flush()
        elif name is not None:
            workspace.name = name

    def _defaults(self, team_id: str) -> WorkspaceSettings:
        return WorkspaceSettings(
            team_id=team_id,
            channel_field=self._default_channel_field,
            channel_template=self._default_channel_template,
            timezone=self._default_timezone,
        )

    def _from_row(self, row: WorkspaceSettingsRow) -> WorkspaceSettings:
        return WorkspaceSettings(
            team_id=row.team_id,
            channel_field=row.channel_field,
            channel_template=row.channel_template,
            timezone=row.timezone,
            managers=tuple(row.managers),
            frequency_cap_days=row.frequency_cap_days,
            updated_by=row.updated_by,
            updated_at=row.updated_at,
        )


class SqlAuditLog:
    """The audit trail: who did what, to what and when, per workspace."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def record(
        self,
        *,
        team_id: str,
        user_id: str,
        action: str,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Insert one audit entry, such as `permission.denied`, and return it."""
        async with self._session_factory() as session, session.begin():
            entry = _add_audit(
                session,
                team_id=team_id,
                user_id=user_id,
                action=action,
                target=target,
                details=details or {},
            )
            await session.flush()
            return _audit_entry(entry)

    async def list(self, team_id: str, *, limit: int = 50) -> Sequence[AuditEntry]:
        """Return the workspace's latest `limit` entries, newest first."""
        _validate_limit(limit)
        statement = (
            select(AuditLogEntry)
            .where(AuditLogEntry.team_id == team_id)
            .order_by(AuditLogEntry.created_at.desc(), AuditLogEntry.id.desc())
            .limit(limit)
        )
        async with self._session_factory() as session, session.begin():
            entries = (await session.scalars(statement)).all()
            return tuple(_audit_entry(entry) for entry in entries)
