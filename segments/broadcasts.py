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
from segments.ports import (
    BroadcastRecord,
    DeliveryLog,
    DeliveryRecord,
    DeliveryStatus,
    NewBroadcast,
    SegmentRecord,
)
from segments.rules import rules_from_json
from segments.sending import BroadcastSender
from segments.slack_text import escape_mrkdwn, format_delivery_report

logger = logging.getLogger(__name__)

# chat.update is a Tier 3 method (about 50 calls a minute), and one edit every two seconds is also
# as often as a person can read the counts.
UPDATE_INTERVAL_SECONDS = 2.0

Sleep = Callable[[float], Awaitable[Any]]


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
        return sum(status == DeliveryStatus.FAILED for status in self._statuses.values())

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
    ) -> None:
        self._client = client
        self._user_id = user_id
        self._interval = interval_seconds
        self._sleep = sleep
        self._channel: str | None = None
        self._ts: str | None = None
        self._out_of_date = asyncio.Event()
        # Held for each write, so the final edit can never be overtaken by a progress edit.
        self._lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None

    @property
    def posted(self) -> bool:
        return self._ts is not None

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

    `run` raises the resolver's and the sender's errors, and `UserFacingError` when the segment
    was deleted or reaches no channel at send time. The caller reports those
    failures to the sender through `dm`.
    """

    def __init__(
        self,
        *,
        resolver: AudienceResolver,
        segments: SegmentLookup,
        log: DeliveryLog,
        poster: AsyncWebClient,
        dm: LiveMessage,
    ) -> None:
        self._resolver = resolver
        self._segments = segments
        self._log = log
        self._poster = poster
        self.dm = dm
        # Set once the first post may have been made, so a failure report can warn about resending.
        self.sending_started = False

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
        rules = rules_from_json(segment.rules)
        audience = await self._resolver.resolve(
            rules, fresh=True, mapping=mapping, timezone=timezone
        )
        if not audience.targets:
            name = escape_mrkdwn(segment.name)
            raise UserFacingError(
                f"Nobody to send to: no company in *{name}* has a Slack channel right now, so "
                "nothing was posted. Preview the segment to see why."
            )
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

        counts = ProgressCounts(total=len(audience.targets))

        def on_progress(delivery: DeliveryRecord) -> None:
            counts.record(delivery)
            self.dm.request_update()

        # NOTE: a sender per run means two broadcasts running at once in one workspace keep
        # separate per-channel pacing. Both still pause for Slack's 429 responses.
        sender = BroadcastSender(client=self._poster, log=self._log, on_progress=on_progress)
        await self.dm.show(progress_text(segment.name, counts))
        self.dm.follow(lambda: progress_text(segment.name, counts))
        self.sending_started = True
        try:
            record = await sender.send(_new_broadcast(request, segment=segment, audience=audience))
        finally:
            await self.dm.stop_following()
        unmapped = len({row.company_id for row in audience.unmapped})
        await self.dm.show(report_text(record, change=change, unmapped=unmapped))
        return record


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
