"""SQL storage of edits, deletes and follow-ups of posted broadcasts (`segments.followups.ActionLog`).

Like `db.stores.SqlDeliveryLog`, each method is one committed unit of work and returns frozen
records. Target states move with conditional UPDATEs, so two writers cannot both win:

    pending/sending --claim_target-------------> sending  (adds one attempt)
    sending         --mark_target_done---------> done
    pending/sending --mark_target_failed-------> failed
    sending         --mark_target_unconfirmed--> unconfirmed

Repeating a mark the target already has is a no-op that logs a WARNING; any other move raises
`InvalidStateTransition`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Update, case, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased, selectinload

from db.models import ActionTarget, Broadcast, BroadcastAction, Delivery, utc_now
from segments.followups import (
    FINAL_TARGET_STATUSES,
    ActionKind,
    ActionRecord,
    ActionRefused,
    ActionStatus,
    NewAction,
    TargetStatus,
    action_status_for,
)
from segments.followups import ActionTarget as ActionTargetRecord
from segments.ports import BroadcastStatus, DeliveryStatus, QualifyingCompany

logger = logging.getLogger(__name__)

# Each target status, and the statuses a target may enter it from.
TARGET_TRANSITIONS: Mapping[TargetStatus, frozenset[TargetStatus]] = {
    TargetStatus.SENDING: frozenset({TargetStatus.PENDING, TargetStatus.SENDING}),
    TargetStatus.DONE: frozenset({TargetStatus.SENDING}),
    TargetStatus.FAILED: frozenset({TargetStatus.PENDING, TargetStatus.SENDING}),
    TargetStatus.UNCONFIRMED: frozenset({TargetStatus.SENDING}),
}
# A broadcast still posting would give an action only the channels posted so far.
_RUNNING_BROADCAST_STATUSES = (
    BroadcastStatus.SCHEDULED,
    BroadcastStatus.RESOLVING,
    BroadcastStatus.SENDING,
)


class ActionNotFound(LookupError):
    def __init__(self, action_id: int) -> None:
        super().__init__(f"Action {action_id} was not found.")
        self.action_id = action_id


class TargetNotFound(LookupError):
    def __init__(self, target_id: int) -> None:
        super().__init__(f"Action target {target_id} was not found.")
        self.target_id = target_id


class InvalidTargetTransition(Exception):
    """An action target cannot move to the requested status from the one it has."""


def _target_record(row: ActionTarget) -> ActionTargetRecord:
    delivery = row.delivery
    return ActionTargetRecord(
        id=row.id,
        action_id=row.action_id,
        delivery_id=row.delivery_id,
        channel_id=delivery.channel_id,
        channel_name=delivery.channel_name,
        is_private=delivery.is_private,
        message_ts=delivery.ts or "",
        status=TargetStatus(row.status),
        attempts=row.attempts,
        error=row.error,
        reason=row.reason,
        reply_ts=row.reply_ts,
        companies=tuple(
            QualifyingCompany(
                company_id=str(company["company_id"]),
                company_name=str(company["company_name"]),
                values=dict(company.get("values") or {}),
                variables=dict(company.get("variables") or {}),
            )
            for company in delivery.companies
        ),
        sending_started_at=row.sending_started_at,
    )


def _action_record(row: BroadcastAction, *, team_id: str) -> ActionRecord:
    return ActionRecord(
        id=row.id,
        broadcast_id=row.broadcast_id,
        team_id=team_id,
        kind=ActionKind(row.kind),
        text=row.text,
        blocks=row.blocks,
        requested_by=row.requested_by,
        status=ActionStatus(row.status),
        created_at=row.created_at,
        finished_at=row.finished_at,
        targets=tuple(_target_record(target) for target in row.targets),
    )


async def _updated_row_count(session: AsyncSession, statement: Update) -> int:
    result = await session.execute(statement)
    return cast(CursorResult[Any], result).rowcount


class SqlActionLog:
    """`segments.followups.ActionLog` on SQL."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def create_action(self, action: NewAction) -> ActionRecord:
        """Insert a `running` action with one `pending` target per message it can act on.

        Targets are the broadcast's `sent` deliveries with a ts, except those whose message a
        finished delete removed. Raises ActionRefused (a sentence for the person) while the
        broadcast is running, while another action on it runs, or when no message is left.
        """
        now = utc_now()
        async with self._session_factory() as session, session.begin():
            broadcast = await session.get(Broadcast, action.broadcast_id)
            if broadcast is None:
                raise ActionRefused("That broadcast was not found, so nothing was changed.")
            if broadcast.status in _RUNNING_BROADCAST_STATUSES:
                raise ActionRefused(
                    "This broadcast is still sending. Wait for its report, then try again."
                )
            running = await session.scalar(
                select(BroadcastAction.id).where(
                    BroadcastAction.broadcast_id == action.broadcast_id,
                    BroadcastAction.status == ActionStatus.RUNNING,
                )
            )
            if running is not None:
                raise ActionRefused(
                    "Another edit, delete or follow-up of this broadcast is still running. Wait "
                    "for its line in the report, then try again."
                )
            deleted = aliased(ActionTarget)
            deleting = aliased(BroadcastAction)
            delivery_ids = (
                await session.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.broadcast_id == action.broadcast_id,
                        Delivery.status == DeliveryStatus.SENT,
                        Delivery.ts.is_not(None),
                        ~exists(
                            select(deleted.id)
                            .join(deleting, deleting.id == deleted.action_id)
                            .where(
                                deleted.delivery_id == Delivery.id,
                                deleted.status == TargetStatus.DONE,
                                deleting.kind == ActionKind.DELETE,
                            )
                        ),
                    )
                    .order_by(Delivery.id)
                )
            ).all()
            if not delivery_ids:
                raise ActionRefused(
                    "No message of this broadcast is left in any channel: none was posted, or "
                    "all were deleted. Send a new broadcast instead."
                )
            row = BroadcastAction(
                broadcast_id=action.broadcast_id,
                kind=action.kind,
                text=action.text,
                blocks=None if action.blocks is None else [dict(block) for block in action.blocks],
                requested_by=action.requested_by,
                status=ActionStatus.RUNNING,
                created_at=now,
                targets=[
                    ActionTarget(
                        delivery_id=delivery_id,
                        status=TargetStatus.PENDING,
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                    for delivery_id in delivery_ids
                ],
            )
            session.add(row)
            await session.flush()
            team_id = broadcast.team_id
            action_id = row.id
        logger.info(
            "Action %d (%s) created on broadcast %d by %s with %d targets",
            action_id,
            action.kind,
            action.broadcast_id,
            action.requested_by,
            len(delivery_ids),
        )
        record = await self.get_action(action_id)
        assert record is not None  # Committed above.
        assert record.team_id == team_id
        return record

    async def claim_target(self, target_id: int) -> int | None:
        """Set a `pending` or `sending` target to `sending` and return its attempt count.

        Return None when the target already has a final status. Raises TargetNotFound.
        """
        now = utc_now()
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(ActionTarget)
                .where(
                    ActionTarget.id == target_id,
                    ActionTarget.status.in_(TARGET_TRANSITIONS[TargetStatus.SENDING]),
                )
                .values(
                    status=TargetStatus.SENDING,
                    attempts=ActionTarget.attempts + 1,
                    sending_started_at=case(
                        (ActionTarget.status == TargetStatus.PENDING, now),
                        else_=ActionTarget.sending_started_at,
                    ),
                    updated_at=now,
                ),
            )
            if updated == 0:
                await self._current_status(session, target_id)
                return None
            return await session.scalar(
                select(ActionTarget.attempts).where(ActionTarget.id == target_id)
            )

    async def mark_target_done(self, target_id: int, *, reply_ts: str | None = None) -> None:
        await self._move(target_id, to=TargetStatus.DONE, values={"reply_ts": reply_ts})

    async def mark_target_failed(self, target_id: int, *, error: str, reason: str) -> None:
        await self._move(
            target_id, to=TargetStatus.FAILED, values={"error": error, "reason": reason}
        )

    async def mark_target_unconfirmed(self, target_id: int, *, error: str, reason: str) -> None:
        await self._move(
            target_id, to=TargetStatus.UNCONFIRMED, values={"error": error, "reason": reason}
        )

    async def finish_action(self, action_id: int) -> ActionRecord:
        """Store the action's final status (see `action_status_for`) and return the record.

        Raises ActionNotFound, or InvalidTargetTransition while a target is still open.
        """
        async with self._session_factory() as session, session.begin():
            row = await self._load(session, action_id)
            if row is None:
                raise ActionNotFound(action_id)
            statuses = [TargetStatus(target.status) for target in row.targets]
            open_targets = [status for status in statuses if status not in FINAL_TARGET_STATUSES]
            if open_targets:
                raise InvalidTargetTransition(
                    f"Action {action_id} cannot finish: {len(open_targets)} targets are still "
                    "pending or sending. Move each one to a final status first."
                )
            if row.status == ActionStatus.RUNNING:
                row.status = action_status_for(statuses)
                row.finished_at = utc_now()
        record = await self.get_action(action_id)
        assert record is not None  # Loaded above.
        return record

    async def get_action(self, action_id: int) -> ActionRecord | None:
        async with self._session_factory() as session, session.begin():
            row = await self._load(session, action_id)
            if row is None:
                return None
            team_id = await session.scalar(
                select(Broadcast.team_id).where(Broadcast.id == row.broadcast_id)
            )
            return _action_record(row, team_id=str(team_id))

    async def list_actions(self, broadcast_id: int) -> Sequence[ActionRecord]:
        """Return the broadcast's actions with their targets, oldest first."""
        return await self._list(BroadcastAction.broadcast_id == broadcast_id)

    async def list_unfinished_actions(self) -> Sequence[ActionRecord]:
        """Return every action left `running`, oldest first, in every workspace.

        `serve` calls this at start and continues each one with `continue_action`.
        """
        return await self._list(BroadcastAction.status == ActionStatus.RUNNING)

    async def _list(self, condition: Any) -> Sequence[ActionRecord]:
        statement = (
            select(BroadcastAction, Broadcast.team_id)
            .join(Broadcast, Broadcast.id == BroadcastAction.broadcast_id)
            .where(condition)
            .order_by(BroadcastAction.created_at, BroadcastAction.id)
            .options(selectinload(BroadcastAction.targets).selectinload(ActionTarget.delivery))
        )
        async with self._session_factory() as session, session.begin():
            rows = (await session.execute(statement)).all()
            return tuple(_action_record(row, team_id=team_id) for row, team_id in rows)

    async def _load(self, session: AsyncSession, action_id: int) -> BroadcastAction | None:
        return await session.get(
            BroadcastAction,
            action_id,
            options=[selectinload(BroadcastAction.targets).selectinload(ActionTarget.delivery)],
            populate_existing=True,
        )

    async def _move(self, target_id: int, *, to: TargetStatus, values: Mapping[str, Any]) -> None:
        sources = TARGET_TRANSITIONS[to]
        async with self._session_factory() as session, session.begin():
            updated = await _updated_row_count(
                session,
                update(ActionTarget)
                .where(ActionTarget.id == target_id, ActionTarget.status.in_(sources))
                .values(status=to, updated_at=utc_now(), **values),
            )
            if updated == 1:
                return
            current = await self._current_status(session, target_id)
        if current == to:
            logger.warning(
                "Action target %d is already %s; ignoring the repeated change", target_id, to
            )
            return
        allowed = " or ".join(sorted(sources))
        raise InvalidTargetTransition(
            f"Action target {target_id} is {current}, so it cannot become {to}: only a {allowed} "
            "target can."
        )

    async def _current_status(self, session: AsyncSession, target_id: int) -> TargetStatus:
        status = await session.scalar(
            select(ActionTarget.status).where(ActionTarget.id == target_id)
        )
        if status is None:
            raise TargetNotFound(target_id)
        return TargetStatus(status)
