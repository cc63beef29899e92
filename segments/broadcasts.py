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
    BroadcastStatus,
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
# Slack shows at most 3,000 characters in a section block, so a long report is split by lines.
MAX_SECTION_CHARS = 3000

# Buttons on the report DM. Each carries the broadcast id as its value, and `handlers/reports.py`
# matches on these action ids.
REPORT_CANCEL_ACTION = "report_cancel"
REPORT_RESEND_ACTION = "report_resend_failed"
REPORT_EDIT_ACTION = "report_edit"
REPORT_DELETE_ACTION = "report_delete"
REPORT_FOLLOWUP_ACTION = "report_followup"
REPORT_ACTIONS_BLOCK = "report_actions"

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
    # A scheduled broadcast that the scheduler claimed (now `resolving`), run in place of a new row.
    broadcast_id: int | None = None


@dataclass(frozen=True)
class AudienceChange:
    """Channels that joined or left the audience between the confirmation and the send."""

    added: int
    dropped: int
    # The channel ids behind the counts, sorted, when `between` computed them.
    added_ids: tuple[str, ...] = ()
    dropped_ids: tuple[str, ...] = ()

    @classmethod
    def between(cls, confirmed: Collection[str], current: Collection[str]) -> AudienceChange:
        confirmed_set = set(confirmed)
        current_set = set(current)
        added = sorted(current_set - confirmed_set)
        dropped = sorted(confirmed_set - current_set)
        return cls(
            added=len(added),
            dropped=len(dropped),
            added_ids=tuple(added),
            dropped_ids=tuple(dropped),
        )

    def describe(self) -> str | None:
        """Return a sentence about the change, or None when the audience did not change."""
        if not self.added and not self.dropped:
            return None
        parts = []
        if self.added:
            parts.append(f"{_channels(self.added)} joined")
        if self.dropped:
            parts.append(f"{_channels(self.dropped)} left")
        sentence = (
            f"Since you confirmed, {' and '.join(parts)} the segment, so the message went to "
            "the channels in it at send time."
        )
        # Channel mentions, because Slack shows a channel's current name for its id.
        if self.added_ids:
            sentence += f" Joined: {_channel_mentions(self.added_ids)}."
        if self.dropped_ids:
            sentence += f" Left: {_channel_mentions(self.dropped_ids)}."
        return sentence


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
    def skipped(self) -> int:
        """Deliveries not posted on purpose, for example because of the frequency cap."""
        return sum(status == DeliveryStatus.SKIPPED for status in self._statuses.values())

    @property
    def pending(self) -> int:
        return self.total - self.delivered - self.failed - self.skipped


def checking_text(segment_name: str) -> str:
    return f"Checking who is in *{escape_mrkdwn(segment_name)}* right now…"


def progress_text(segment_name: str, counts: ProgressCounts) -> str:
    return (
        f"Sending *{escape_mrkdwn(segment_name)}* to {_channels(counts.total)}…\n"
        f"Delivered {counts.delivered} · Failed {counts.failed} · Pending {counts.pending}"
        + (f" · Skipped {counts.skipped}" if counts.skipped else "")
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
    cancelled = sum(delivery.status == DeliveryStatus.CANCELLED for delivery in record.deliveries)
    if record.status == BroadcastStatus.CANCELLED:
        lines.append(
            f"Cancelled: {_channels(cancelled)} did not get the message. Posts already on their "
            "way when you cancelled were finished."
        )
    return "\n".join(lines)


def running_controls(broadcast_id: int) -> list[dict[str, Any]]:
    """Return the report DM's buttons while the broadcast runs: Cancel."""
    return [
        _button(
            "Cancel",
            action_id=REPORT_CANCEL_ACTION,
            broadcast_id=broadcast_id,
            style="danger",
            confirm=(
                "Cancel sending?",
                "Channels that have not got the message yet will not get it. Posts already on "
                "their way finish.",
            ),
        )
    ]


def no_channel_error(segment_name: str) -> UserFacingError:
    """Return the error for a send whose fresh audience has no channel: nothing is posted."""
    name = escape_mrkdwn(segment_name)
    return UserFacingError(
        f"Nobody to send to: no company in *{name}* has a Slack channel right now, so nothing was "
        "posted. Preview the segment to see why."
    )


def report_controls(record: BroadcastRecord, *, deleted: bool = False) -> list[dict[str, Any]]:
    """Return the report DM's buttons for a finished broadcast.

    Resend failed appears when a delivery failed. Edit, Delete and Follow up appear when at least
    one message was posted, because they act only on posted messages. Once the broadcast was
    `deleted` everywhere, none of them applies, so there are no buttons.
    """
    buttons: list[dict[str, Any]] = []
    if deleted:
        return buttons
    if any(delivery.status == DeliveryStatus.FAILED for delivery in record.deliveries):
        buttons.append(
            _button("Resend failed", action_id=REPORT_RESEND_ACTION, broadcast_id=record.id)
        )
    if any(
        delivery.status == DeliveryStatus.SENT and delivery.ts for delivery in record.deliveries
    ):
        buttons.append(_button("Edit", action_id=REPORT_EDIT_ACTION, broadcast_id=record.id))
        buttons.append(
            _button("Follow up", action_id=REPORT_FOLLOWUP_ACTION, broadcast_id=record.id)
        )
        buttons.append(
            _button(
                "Delete", action_id=REPORT_DELETE_ACTION, broadcast_id=record.id, style="danger"
            )
        )
    return buttons


def message_blocks(text: str, controls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return `text` as mrkdwn sections of at most 3,000 characters, then the buttons."""
    blocks: list[dict[str, Any]] = []
    current = ""
    for line in text.split("\n"):
        if len(line) > MAX_SECTION_CHARS:
            line = line[: MAX_SECTION_CHARS - 1] + "…"
        if current and len(current) + 1 + len(line) > MAX_SECTION_CHARS:
            blocks.append(_section(current))
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        blocks.append(_section(current))
    if controls:
        blocks.append(
            {
                "type": "actions",
                "block_id": REPORT_ACTIONS_BLOCK,
                "elements": [dict(control) for control in controls],
            }
        )
    return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(
    label: str,
    *,
    action_id: str,
    broadcast_id: int,
    style: str | None = None,
    confirm: tuple[str, str] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "action_id": action_id,
        "value": str(broadcast_id),
    }
    if style is not None:
        button["style"] = style
    if confirm is not None:
        title, text = confirm
        button["confirm"] = {
            "title": {"type": "plain_text", "text": title},
            "text": {"type": "plain_text", "text": text},
            "confirm": {"type": "plain_text", "text": "Yes"},
            "deny": {"type": "plain_text", "text": "No"},
        }
    return button


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

    async def show(self, text: str, *, controls: Sequence[Mapping[str, Any]] = ()) -> bool:
        """Post the message, or edit it when it exists. Return whether Slack accepted the text.

        With `controls` (Block Kit buttons), the text is shown in section blocks with the
        buttons under it, and `text` stays the notification fallback.
        """
        async with self._lock:
            return await self._write(text, controls)

    def follow(
        self, render: Callable[[], str], *, controls: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Start editing the message with `render()` whenever `request_update` was called."""
        if self._follower is None:
            self._follower = asyncio.create_task(
                self._follow(render, controls), name=f"live-dm-{self._user_id}"
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

    async def _follow(
        self, render: Callable[[], str], controls: Sequence[Mapping[str, Any]]
    ) -> None:
        while True:
            # Sleeping first keeps the interval after `show`, which the caller runs before `follow`.
            await self._sleep(self._interval)
            await self._out_of_date.wait()
            self._out_of_date.clear()
            async with self._lock:
                await self._write(render(), controls)

    async def _write(self, text: str, controls: Sequence[Mapping[str, Any]]) -> bool:
        # An edit without blocks removes the buttons of an earlier version, so `[]` is sent
        # rather than leaving the blocks out.
        blocks = message_blocks(text, controls) if controls else []
        try:
            if self._channel is None or self._ts is None:
                response = await self._client.chat_postMessage(
                    channel=self._user_id, text=text, blocks=blocks or None
                )
                self._channel = str(response["channel"])
                self._ts = str(response["ts"])
            else:
                await self._client.chat_update(
                    channel=self._channel, ts=self._ts, text=text, blocks=blocks
                )
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
        if request.broadcast_id is None:
            started = await self._log.start_resolving(draft, rules=segment.rules)
        else:
            claimed = await self._log.get_broadcast(request.broadcast_id)
            if claimed is None:
                raise LookupError(f"Broadcast {request.broadcast_id} was not found.")
            started = claimed
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
            raise no_channel_error(segment.name)
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
    controls = running_controls(record.id)
    await dm.show(progress_text(segment_name, counts), controls=controls)
    if not was_posted:
        await remember_report_message(log, broadcast_id=record.id, dm=dm)
    dm.follow(lambda: progress_text(segment_name, counts), controls=controls)
    try:
        finished = await sender.deliver(
            record, message_text=message_text, message_blocks=message_blocks
        )
    finally:
        await dm.stop_following()
    await dm.show(
        report_text(finished, change=change or AudienceChange(added=0, dropped=0), unmapped=unmapped),
        controls=report_controls(finished),
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


# Enough names to act on while keeping the report DM short.
_MAX_CHANNEL_MENTIONS = 20


def _channel_mentions(channel_ids: Sequence[str]) -> str:
    mentions = [f"<#{channel_id}>" for channel_id in channel_ids[:_MAX_CHANNEL_MENTIONS]]
    hidden = len(channel_ids) - len(mentions)
    if hidden > 0:
        mentions.append(f"and {hidden:,} more")
    return ", ".join(mentions)
