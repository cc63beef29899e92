"""Run a confirmed broadcast: resolve the segment again from live data, post, and report by DM.

Membership is resolved with `fresh=True` at send time, so the message reaches whoever is in the
segment now, and the report says how that differs from the channels the sender confirmed. The
sender's direct message is posted when the run starts and edited as deliveries finish, at most
once per `UPDATE_INTERVAL_SECONDS`, with a final edit that carries the delivery report. Texts here
are Slack mrkdwn. The Block Kit views of the send modal live in `handlers/views/send.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from segments.audience import Audience, AudienceResolver
from segments.channels import ChannelMapping
from segments.errors import UserFacingError
from segments.personalize import MessageRenderer, find_missing_values
from segments.ports import (
    BroadcastRecord,
    DeliveryRecord,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
    SegmentRecord,
)
from segments.rules import rules_from_json
from segments.sending import BroadcastSender, DurableDeliveryLog, Renderer
from segments.slack_text import escape_mrkdwn, format_delivery_report

logger = logging.getLogger(__name__)

_NOT_DELIVERED = frozenset(
    {DeliveryStatus.FAILED, DeliveryStatus.UNCONFIRMED, DeliveryStatus.CANCELLED}
)
# chat.update is a Tier 3 method (about 50 calls a minute), and one edit every two seconds is also
# as often as a person can read the counts.
UPDATE_INTERVAL_SECONDS = 2.0

Sleep = Callable[[float], Awaitable[Any]]


class BroadcastLog(DurableDeliveryLog, Protocol):
    """The storage a broadcast run needs: the delivery log plus the resolving step and report DM."""

    async def start_resolving(
        self, broadcast: NewBroadcast, *, rules: Mapping[str, Any]
    ) -> BroadcastRecord:
        """Insert a `resolving` broadcast without deliveries."""
        ...

    async def add_audience(
        self,
        broadcast_id: int,
        *,
        rules_text: str,
        targets: Sequence[DeliveryTarget],
        unmapped: Sequence[Mapping[str, str]],
    ) -> BroadcastRecord:
        """Store the audience as `pending` deliveries; raise when the broadcast was cancelled."""
        ...

    async def fail_resolving(self, broadcast_id: int) -> BroadcastRecord:
        """Finish a `resolving` broadcast as `failed`."""
        ...

    async def set_report_message(self, broadcast_id: int, *, channel: str, ts: str) -> None:
        """Remember the sender's report DM."""
        ...


class SegmentLookup(Protocol):
    async def get(self, segment_id: int) -> SegmentRecord | None:
        """Return the segment, or None when it was deleted."""
        ...


@dataclass(frozen=True)
class BroadcastRequest:
    """A broadcast the sender confirmed, and the channels the confirmation showed them."""

    team_id: str
    user_id: str
    segment_id: int
    message_text: str
    message_blocks: Sequence[Mapping[str, Any]] | None
    confirmed_channel_ids: frozenset[str]


@dataclass(frozen=True)
class AudienceChange:
    """Channels that joined or left the audience between the confirmation and the send."""

    added: int
    dropped: int

    @classmethod
    def between(cls, confirmed: Collection[str], current: Collection[str]) -> AudienceChange:
        confirmed_set = set(confirmed)
        current_set = set(current)
        return cls(added=len(current_set - confirmed_set), dropped=len(confirmed_set - current_set))

    def describe(self) -> str | None:
        """Return a sentence about the change, or None when the audience did not change."""
        if not self.added and not self.dropped:
            return None
        parts = []
        if self.added:
            parts.append(f"{_channels(self.added)} joined")
        if self.dropped:
            parts.append(f"{_channels(self.dropped)} left")
        return (
            f"Since you confirmed, {' and '.join(parts)} the segment, so the message went to "
            "the channels in it at send time."
        )


@dataclass
class ProgressCounts:
    """Delivered, failed and pending deliveries of a running broadcast, from progress updates."""

    total: int
    _statuses: dict[int, DeliveryStatus] = field(default_factory=dict)

    def record(self, delivery: DeliveryRecord) -> None:
        self._statuses[delivery.id] = delivery.status

    @property
    def delivered(self) -> int:
        return sum(status == DeliveryStatus.SENT for status in self._statuses.values())

    @property
    def failed(self) -> int:
        """Deliveries that ended without a confirmed post: failed, unconfirmed or cancelled."""
        return sum(status in _NOT_DELIVERED for status in self._statuses.values())

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed


def checking_text(segment_name: str) -> str:
    return f"Checking who is in *{escape_mrkdwn(segment_name)}* right now…"


def progress_text(segment_name: str, counts: ProgressCounts) -> str:
    return (
        f"Sending *{escape_mrkdwn(segment_name)}* to {_channels(counts.total)}…\n"
        f"Delivered {counts.delivered} · Failed {counts.failed} · Pending {counts.pending}"
    )


def report_text(record: BroadcastRecord, *, change: AudienceChange, unmapped: int) -> str:
    """Render the final DM: audience notes first, then the delivery report with its counts."""
    lines = []
    note = change.describe()
    if note:
        lines.append(note)
    if unmapped:
        noun = "company" if unmapped == 1 else "companies"
        lines.append(f"{unmapped:,} matching {noun} had no channel and did not get the message.")
    lines.append(format_delivery_report(record))
    return "\n".join(lines)


class LiveMessage:
    """A direct message to one user that is posted once and then edited in place.

    `show` writes at once. While `follow` runs, `request_update` marks the text as out of date,
    and a background loop edits the message at most once per `interval_seconds`. A post or edit
    that Slack rejects, or that cannot reach Slack, is logged and skipped, because a progress
    display must not stop the broadcast it describes.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        user_id: str,
        interval_seconds: float = UPDATE_INTERVAL_SECONDS,
        sleep: Sleep = asyncio.sleep,
        channel: str | None = None,
        ts: str | None = None,
    ) -> None:
        # `channel` and `ts` continue a message posted earlier, for example before a restart.
        self._client = client
        self._user_id = user_id
        self._interval = interval_seconds
        self._sleep = sleep
        self._channel = channel
        self._ts = ts
        self._out_of_date = asyncio.Event()
        # Held for each write, so the final edit can never be overtaken by a progress edit.
        self._lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None

    @property
    def posted(self) -> bool:
        return self._ts is not None

    @property
    def location(self) -> tuple[str, str] | None:
        """Return the message's conversation id and ts once it is posted."""
        if self._channel is None or self._ts is None:
            return None
        return self._channel, self._ts

    async def show(self, text: str) -> bool:
        """Post the message, or edit it when it exists. Return whether Slack accepted the text."""
        async with self._lock:
            return await self._write(text)

    def follow(self, render: Callable[[], str]) -> None:
        """Start editing the message with `render()` whenever `request_update` was called."""
        if self._follower is None:
            self._follower = asyncio.create_task(
                self._follow(render), name=f"live-dm-{self._user_id}"
            )

    def request_update(self) -> None:
        self._out_of_date.set()

    async def stop_following(self) -> None:
        """Stop the background edits, after letting an edit in flight finish."""
        follower, self._follower = self._follower, None
        if follower is None:
            return
        async with self._lock:
            follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

    async def _follow(self, render: Callable[[], str]) -> None:
        while True:
            # Sleeping first keeps the interval after `show`, which the caller runs before `follow`.
            await self._sleep(self._interval)
            await self._out_of_date.wait()
            self._out_of_date.clear()
            async with self._lock:
                await self._write(render())

    async def _write(self, text: str) -> bool:
        try:
            if self._channel is None or self._ts is None:
                response = await self._client.chat_postMessage(channel=self._user_id, text=text)
                self._channel = str(response["channel"])
                self._ts = str(response["ts"])
            else:
                await self._client.chat_update(channel=self._channel, ts=self._ts, text=text)
        except SlackApiError as exc:
            logger.warning(
                "Could not write the progress message to user %s: Slack error %s",
                self._user_id,
                exc.response.get("error"),
            )
            return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning(
                "Could not write the progress message to user %s: %r", self._user_id, exc
            )
            return False
        return True


class BroadcastRun:
    """One confirmed broadcast: fresh audience, posts through `BroadcastSender`, live DM report.

    The broadcast is stored as `resolving` (with the segment's rules) before the audience is
    resolved, and its report DM is remembered, so `segments.resume` can finish it after a crash.
    `run` raises the resolver's and the sender's errors, and `UserFacingError` when the segment
    was deleted or reaches no channel at send time. The caller reports those failures to the
    sender through `dm`.
    """

    def __init__(
        self,
        *,
        resolver: AudienceResolver,
        segments: SegmentLookup,
        log: BroadcastLog,
        poster: AsyncWebClient,
        dm: LiveMessage,
        render: Renderer | None = None,
    ) -> None:
        self._resolver = resolver
        self._segments = segments
        self._log = log
        self._poster = poster
        self._render = render
        self.dm = dm
        # Set once the first post may have been made, so a failure report can warn about resending.
        self.sending_started = False
        self.broadcast_id: int | None = None

    async def run(
        self, request: BroadcastRequest, *, mapping: ChannelMapping, timezone: str
    ) -> BroadcastRecord:
        """Resolve the segment now, post the message to each of its channels, and report by DM."""
        segment = await self._segments.get(request.segment_id)
        if segment is None:
            raise UserFacingError(
                "The segment was deleted after you confirmed, so nothing was posted. "
                "Choose another segment and send again."
            )
        await self.dm.show(checking_text(segment.name))
        draft = NewBroadcast(
            team_id=request.team_id,
            segment_id=segment.id,
            segment_name=segment.name,
            rules_text="",
            message_text=request.message_text,
            message_blocks=request.message_blocks,
            sent_by=request.user_id,
            targets=(),
        )
        started = await self._log.start_resolving(draft, rules=segment.rules)
        self.broadcast_id = started.id
        await remember_report_message(self._log, broadcast_id=started.id, dm=self.dm)

        try:
            # Personalization: the message's variables are read with the audience, and stored
            # with each delivery so a resumed delivery renders the same text.
            catalog = await self._resolver.catalog()
            renderer = MessageRenderer(
                message_text=request.message_text,
                message_blocks=request.message_blocks,
                catalog=catalog,
            )
            audience = await self._resolver.resolve(
                rules_from_json(segment.rules),
                catalog=catalog,
                fresh=True,
                mapping=mapping,
                timezone=timezone,
                template=renderer.template,
            )
        except BaseException:
            await self._log.fail_resolving(started.id)
            raise
        if not audience.targets:
            await self._log.fail_resolving(started.id)
            name = escape_mrkdwn(segment.name)
            raise UserFacingError(
                f"Nobody to send to: no company in *{name}* has a Slack channel right now, so "
                "nothing was posted. Preview the segment to see why."
            )
        # Values can go missing between the confirmation and now, and no channel gets a message
        # with a blank where a value should be.
        missing = find_missing_values(audience.targets, renderer.template)
        if missing is not None:
            await self._log.fail_resolving(started.id)
            raise UserFacingError(missing.describe())
        change = AudienceChange.between(
            request.confirmed_channel_ids, [target.channel_id for target in audience.targets]
        )
        if change.added or change.dropped:
            logger.info(
                "Audience of segment %d changed since confirmation: %d channels added, %d dropped",
                segment.id,
                change.added,
                change.dropped,
            )

        broadcast = _new_broadcast(request, segment=segment, audience=audience)
        record = await self._log.add_audience(
            started.id,
            rules_text=broadcast.rules_text,
            targets=broadcast.targets,
            unmapped=broadcast.unmapped,
        )
        self.sending_started = True
        return await deliver_with_report(
            record,
            message_text=broadcast.message_text,
            message_blocks=broadcast.message_blocks,
            segment_name=segment.name,
            log=self._log,
            poster=self._poster,
            dm=self.dm,
            render=self._render or renderer.render_delivery,
            change=change,
            unmapped=len({row.company_id for row in audience.unmapped}),
        )


async def remember_report_message(log: BroadcastLog, *, broadcast_id: int, dm: LiveMessage) -> None:
    """Store where the report DM is, so a restarted process edits it instead of posting another."""
    location = dm.location
    if location is not None:
        await log.set_report_message(broadcast_id, channel=location[0], ts=location[1])


async def deliver_with_report(
    record: BroadcastRecord,
    *,
    message_text: str,
    message_blocks: Sequence[Mapping[str, Any]] | None,
    segment_name: str,
    log: BroadcastLog,
    poster: AsyncWebClient,
    dm: LiveMessage,
    render: Renderer | None = None,
    change: AudienceChange | None = None,
    unmapped: int = 0,
) -> BroadcastRecord:
    """Post a stored broadcast's open deliveries with a live DM report, and return the final record.

    Used by a fresh run, by resume after a restart, and by a resend of failed deliveries.
    """
    counts = ProgressCounts(total=len(record.deliveries))
    for delivery in record.deliveries:
        counts.record(delivery)

    def on_progress(delivery: DeliveryRecord) -> None:
        counts.record(delivery)
        dm.request_update()

    # NOTE: a sender per run means two broadcasts running at once in one workspace keep
    # separate pacing. Both still pause for Slack's 429 responses.
    sender = BroadcastSender(client=poster, log=log, on_progress=on_progress, render=render)
    was_posted = dm.posted
    await dm.show(progress_text(segment_name, counts))
    if not was_posted:
        await remember_report_message(log, broadcast_id=record.id, dm=dm)
    dm.follow(lambda: progress_text(segment_name, counts))
    try:
        finished = await sender.deliver(
            record, message_text=message_text, message_blocks=message_blocks
        )
    finally:
        await dm.stop_following()
    await dm.show(
        report_text(finished, change=change or AudienceChange(added=0, dropped=0), unmapped=unmapped)
    )
    return finished


def _new_broadcast(
    request: BroadcastRequest, *, segment: SegmentRecord, audience: Audience
) -> NewBroadcast:
    return NewBroadcast(
        team_id=request.team_id,
        segment_id=segment.id,
        segment_name=segment.name,
        rules_text=audience.rules_text,
        message_text=request.message_text,
        message_blocks=request.message_blocks,
        sent_by=request.user_id,
        targets=audience.targets,
        unmapped=[
            {"company_id": row.company_id, "company_name": row.company_name, "reason": row.reason}
            for row in audience.unmapped
        ],
    )


def _channels(count: int) -> str:
    return f"{count:,} channel" if count == 1 else f"{count:,} channels"
