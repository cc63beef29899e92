"""Scheduled broadcasts ("Send later"): store, edit and cancel them, and start each at its time.

A scheduled broadcast stores the segment id, not its members: the audience is resolved when it
sends, through the same `BroadcastRun` as a confirmed send. `Scheduler` is one asyncio loop per
process. It wakes at the next send time, and at least every `POLL_SECONDS` to see rows that
another instance wrote. It claims each due row with a conditional UPDATE, so only one instance
sends it. A scheduled broadcast whose segment was deleted is cancelled, and its sender gets a DM
with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import SQLAlchemyError

from db.scheduled import NewScheduledBroadcast, ScheduledBroadcast
from segments.audience import AudienceResolver
from segments.broadcasts import BroadcastLog, BroadcastRequest, BroadcastRun, LiveMessage, SegmentLookup
from segments.channels import ChannelMapping
from segments.errors import UserFacingError
from segments.ports import BroadcastRecord
from segments.slack_text import escape_mrkdwn

logger = logging.getLogger(__name__)

# Maximum sleep of the loop, and so the maximum delay before it sees a row another instance wrote.
POLL_SECONDS = 30.0
# The shortest sleep between rounds, so a row that keeps failing cannot turn the loop into a spin.
MIN_WAIT_SECONDS = 0.5
# The audit log's user for changes the scheduler makes on its own, such as cancelling a broadcast
# whose segment was deleted.
SCHEDULER_USER = "segment-bot"

Clock = Callable[[], datetime]
Dispatch = Callable[[ScheduledBroadcast], Awaitable[None]]


def utc_clock() -> datetime:
    return datetime.now(UTC)


class ScheduleStore(Protocol):
    """Storage of scheduled broadcasts, implemented by `db.scheduled.SqlScheduledBroadcasts`."""

    async def schedule(self, broadcast: NewScheduledBroadcast) -> ScheduledBroadcast: ...

    async def get(self, broadcast_id: int) -> ScheduledBroadcast | None:
        """Return the broadcast while it is still `scheduled`, else None."""
        ...

    async def list(self, *, team_id: str) -> Sequence[ScheduledBroadcast]: ...

    async def list_due(self, *, now: datetime, limit: int = 50) -> Sequence[ScheduledBroadcast]: ...

    async def list_orphaned(self) -> Sequence[ScheduledBroadcast]: ...

    async def next_due_at(self) -> datetime | None: ...

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
        """Return None when the broadcast is no longer `scheduled`."""
        ...

    async def cancel(
        self, broadcast_id: int, *, user_id: str, reason: str
    ) -> ScheduledBroadcast | None:
        """Return None when the broadcast is no longer `scheduled`."""
        ...

    async def claim(
        self, broadcast_id: int, *, segment_name: str, rules: Mapping[str, Any]
    ) -> bool:
        """Move `scheduled` to `resolving`, and return True for exactly one of racing callers."""
        ...


class PastSendTime(UserFacingError):
    """The chosen send time is not in the future."""


def send_time(*, day: date, time_of_day: time, timezone: str) -> datetime:
    """Return the UTC instant of a wall-clock date and time in an IANA time zone.

    A time that a daylight-saving change skips (such as 02:30 on the spring-forward night) is read
    with the offset before the change, as `zoneinfo` does for `fold=0`. Raises UserFacingError for
    an unknown time zone.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UserFacingError(
            f'Time zone "{timezone}" was not found. Pick one from the list, such as "Europe/Berlin".'
        ) from exc
    return datetime.combine(day, time_of_day, tzinfo=zone).astimezone(UTC)


def wall_time_exists(*, day: date, time_of_day: time, zone: ZoneInfo) -> bool:
    """Return False for a wall-clock time that a daylight-saving change skips in `zone`."""
    local = datetime.combine(day, time_of_day, tzinfo=zone)
    round_trip = local.astimezone(UTC).astimezone(zone)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def format_send_time(moment: datetime, *, timezone: str) -> str:
    """Return a send time as people read it in `timezone`, such as `Fri 4 Dec 2026, 09:30 (Europe/Berlin)`."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone, timezone = ZoneInfo("UTC"), "UTC"
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} ({timezone})"


def check_future(scheduled_at: datetime, *, now: datetime) -> None:
    """Raise PastSendTime unless `scheduled_at` is later than `now`."""
    if scheduled_at <= now:
        raise PastSendTime("That time has already passed. Pick a date and time in the future.")


async def schedule_broadcast(
    store: ScheduleStore, broadcast: NewScheduledBroadcast, *, now: datetime
) -> ScheduledBroadcast:
    """Store a broadcast to send at `broadcast.scheduled_at`. Raises PastSendTime for a past time."""
    check_future(broadcast.scheduled_at, now=now)
    return await store.schedule(broadcast)


async def edit_scheduled(
    store: ScheduleStore,
    broadcast_id: int,
    *,
    scheduled_at: datetime,
    timezone: str,
    message_text: str,
    message_blocks: Sequence[Mapping[str, Any]] | None,
    user_id: str,
    now: datetime,
) -> ScheduledBroadcast:
    """Change a scheduled broadcast's time and message.

    Raises PastSendTime for a past time, and UserFacingError when the broadcast already started
    sending or was cancelled.
    """
    check_future(scheduled_at, now=now)
    edited = await store.reschedule(
        broadcast_id,
        scheduled_at=scheduled_at,
        timezone=timezone,
        message_text=message_text,
        message_blocks=message_blocks,
        user_id=user_id,
    )
    if edited is None:
        raise UserFacingError(_NO_LONGER_SCHEDULED)
    return edited


async def cancel_scheduled(
    store: ScheduleStore, broadcast_id: int, *, user_id: str
) -> ScheduledBroadcast:
    """Cancel a scheduled broadcast. Raises UserFacingError when it already started or was cancelled."""
    cancelled = await store.cancel(broadcast_id, user_id=user_id, reason="cancelled by a person")
    if cancelled is None:
        raise UserFacingError(_NO_LONGER_SCHEDULED)
    return cancelled


_NO_LONGER_SCHEDULED = (
    "This broadcast is no longer scheduled: it already started sending or was cancelled. "
    "Open App Home to see its status."
)


def segment_deleted_text(scheduled: ScheduledBroadcast) -> str:
    """Return the DM text for a scheduled broadcast cancelled because its segment was deleted."""
    name = escape_mrkdwn(scheduled.segment_name)
    when = format_send_time(scheduled.scheduled_at, timezone=scheduled.timezone)
    return (
        f"Your broadcast to *{name}* scheduled for {when} was cancelled because the segment was "
        "deleted, so nothing was posted. Choose another segment and schedule it again."
    )


class Scheduler:
    """Start each scheduled broadcast once when its time comes, across any number of instances.

    `run_once` does one round and is what tests drive with an injected `clock`. `run_forever`
    repeats it until cancelled. `dispatch` receives each claimed broadcast, which is `resolving`
    by then, and should start sending in the background and return.
    """

    def __init__(
        self,
        *,
        store: ScheduleStore,
        segments: SegmentLookup,
        dispatch: Dispatch,
        reader: AsyncWebClient,
        clock: Clock = utc_clock,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._store = store
        self._segments = segments
        self._dispatch = dispatch
        self._reader = reader
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Start the next round now, for example after a broadcast was scheduled in this process."""
        self._wake.set()

    async def run_once(self) -> list[int]:
        """Cancel broadcasts whose segment was deleted, then claim and dispatch every due one.

        Return the ids this scheduler claimed.
        """
        for orphan in await self._store.list_orphaned():
            await self._cancel_for_deleted_segment(orphan)

        claimed: list[int] = []
        for due in await self._store.list_due(now=self._clock()):
            segment = None if due.segment_id is None else await self._segments.get(due.segment_id)
            if segment is None:
                await self._cancel_for_deleted_segment(due)
                continue
            if not await self._store.claim(due.id, segment_name=segment.name, rules=segment.rules):
                logger.info("Scheduled broadcast %d was claimed by another instance", due.id)
                continue
            claimed.append(due.id)
            await self._dispatch(due)
        return claimed

    async def run_forever(self) -> None:
        """Run rounds until cancelled. A database error is logged and retried on the next round."""
        logger.info("Scheduler started; polling at least every %.0fs", self._poll_seconds)
        while True:
            try:
                await self.run_once()
                wait = await self._seconds_to_next_round()
            except (SQLAlchemyError, OSError) as exc:
                logger.error("Scheduler round failed, retrying in %.0fs: %r", self._poll_seconds, exc)
                wait = self._poll_seconds
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _seconds_to_next_round(self) -> float:
        next_due = await self._store.next_due_at()
        if next_due is None:
            return self._poll_seconds
        until_due = (next_due - self._clock()).total_seconds()
        return max(MIN_WAIT_SECONDS, min(self._poll_seconds, until_due))

    async def _cancel_for_deleted_segment(self, scheduled: ScheduledBroadcast) -> None:
        cancelled = await self._store.cancel(
            scheduled.id, user_id=SCHEDULER_USER, reason="the segment was deleted"
        )
        if cancelled is None:
            return
        logger.info(
            "Scheduled broadcast %d cancelled because segment %r was deleted",
            scheduled.id,
            scheduled.segment_name,
        )
        dm = LiveMessage(client=self._reader, user_id=scheduled.sent_by)
        await dm.show(segment_deleted_text(scheduled))


async def send_claimed(
    scheduled: ScheduledBroadcast,
    *,
    segments: SegmentLookup,
    log: BroadcastLog,
    resolver: AudienceResolver,
    poster: AsyncWebClient,
    reader: AsyncWebClient,
    mapping: ChannelMapping,
    timezone: str,
) -> BroadcastRecord:
    """Send a claimed scheduled broadcast with a fresh audience and a live DM report.

    The report compares the audience at send time with the channels shown when it was scheduled.
    On any error the broadcast is stored as `failed` if it is still `resolving`, and the error is
    raised for the caller to report to the sender.
    """
    dm = LiveMessage(client=reader, user_id=scheduled.sent_by)
    run = BroadcastRun(resolver=resolver, segments=segments, log=log, poster=poster, dm=dm)
    if scheduled.segment_id is None:
        await log.fail_resolving(scheduled.id)
        raise UserFacingError(segment_deleted_text(scheduled))
    request = BroadcastRequest(
        team_id=scheduled.team_id,
        user_id=scheduled.sent_by,
        segment_id=scheduled.segment_id,
        message_text=scheduled.message_text,
        message_blocks=scheduled.message_blocks,
        confirmed_channel_ids=scheduled.confirmed_channel_ids,
        broadcast_id=scheduled.id,
    )
    try:
        return await run.run(request, mapping=mapping, timezone=timezone)
    except BaseException:
        await log.fail_resolving(scheduled.id)
        raise


def default_send_time(*, now: datetime, timezone: str) -> tuple[date, time]:
    """Return the date and time the send-later fields start at: the next full hour, local time."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = (now.astimezone(zone) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return local.date(), local.time()
