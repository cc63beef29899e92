"""Post a broadcast once to each target channel, recording each delivery before and after its post.

`BroadcastSender` is the one place that decides retries for Slack posts, with `segments.pacing.Pacer`
deciding when each post may go out. It joins public channels it is not in and retries 429s, 5xx
responses and timeouts with backoff. When a post's outcome is unknown, it looks for the
delivery's message metadata in the channel's history before posting again. Without a history
scope it records the delivery as `unconfirmed` and does not post it again. One channel failing
never stops the others.
`FAILURES` is the one table that maps a Slack error code to the sentences a person reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from segments.channels import BOT_MENTION
from segments.pacing import Pacer
from segments.ports import (
    BroadcastRecord,
    DeliveryLog,
    DeliveryRecord,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
)

logger = logging.getLogger(__name__)

METADATA_EVENT_TYPE = "segment_broadcast"
# Maximum transient failures (429, 5xx, timeout, failed connection) per delivery, and attempts
# per join.
MAX_ATTEMPTS = 5
DEFAULT_RETRY_AFTER_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# Scopes that let the sender read a channel's history to check whether a post exists.
PUBLIC_HISTORY_SCOPE = "channels:history"
PRIVATE_HISTORY_SCOPE = "groups:history"
# The history lookup starts this long before the delivery's first attempt, because Slack's clock
# and ours may differ. A wider window only reads more messages, but a narrower one could miss the post.
HISTORY_MARGIN_SECONDS = 120.0
HISTORY_PAGE_SIZE = 200

# Error codes the sender records in place of Slack's own.
UNKNOWN_OUTCOME = "unknown_outcome"
# Slack failed every attempt, and the history shows that none of them was posted.
SERVER_ERRORS = "server_errors"
CONNECTION_FAILED = "connection_failed"
RATE_LIMITED = "ratelimited"
JOIN_FAILED = "join_failed"

# Errors that can come with a post Slack stored anyway, so reposting could duplicate the message.
_UNCONFIRMED_ERRORS = frozenset({"fatal_error", "internal_error", "request_timeout", "service_unavailable"})
# Errors about the token: every later post would fail the same way, so they are not attempted.
_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"})

Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class FailureText:
    """Wording of a failed delivery: `reason` names one channel, the group fields a report line."""

    reason: str
    group_label: str
    group_action: str


_NOT_IN_CHANNEL = FailureText(
    reason=f"{BOT_MENTION} is not in #{{channel}}. Invite {BOT_MENTION} to #{{channel}}, then resend.",
    group_label=f"{BOT_MENTION} is not in the channel",
    group_action=f"Invite {BOT_MENTION}, then resend.",
)
_RESTRICTED = FailureText(
    reason=f"Posting in #{{channel}} is restricted, for example to admins. Ask an admin to let {BOT_MENTION} "
    "post there, then resend.",
    group_label="Posting is restricted",
    group_action=f"Ask an admin to let {BOT_MENTION} post there, then resend.",
)
_TOO_LONG = FailureText(
    reason="The message is too long for Slack. Shorten it, then resend.",
    group_label="Message too long",
    group_action="Shorten it, then resend.",
)
_TOKEN_REJECTED = FailureText(
    reason="Slack rejected segment-bot's token, so nothing was posted to #{channel}. Reinstall the app, "
    "then resend.",
    group_label="Token rejected by Slack",
    group_action="Reinstall the app, then resend.",
)

FAILURES: Mapping[str, FailureText] = {
    "not_in_channel": _NOT_IN_CHANNEL,
    # conversations.join returns this error for private channels, which only an invitation can open.
    "method_not_supported_for_channel_type": _NOT_IN_CHANNEL,
    "channel_not_found": FailureText(
        reason=f"#{{channel}} was not found. It was deleted, or it is private and {BOT_MENTION} was removed. "
        f"Fix the company's channel or invite {BOT_MENTION}, then resend.",
        group_label="Channel not found",
        group_action=f"Fix the companies' channels or invite {BOT_MENTION}, then resend.",
    ),
    "is_archived": FailureText(
        reason="#{channel} is archived. Unarchive it, then resend.",
        group_label="Channel archived",
        group_action="Unarchive the channels, then resend.",
    ),
    "restricted_action": _RESTRICTED,
    "restricted_action_read_only_channel": _RESTRICTED,
    "restricted_action_thread_only_channel": _RESTRICTED,
    "restricted_action_non_threadable_channel": _RESTRICTED,
    "msg_too_long": _TOO_LONG,
    "msg_blocks_too_long": _TOO_LONG,
    "invalid_blocks": FailureText(
        reason="Slack rejected the message layout (invalid_blocks). Fix the blocks, then resend.",
        group_label="Invalid message layout",
        group_action="Fix the blocks, then resend.",
    ),
    "no_text": FailureText(
        reason="The message is empty. Add text, then resend.",
        group_label="Empty message",
        group_action="Add text, then resend.",
    ),
    "invalid_auth": _TOKEN_REJECTED,
    "not_authed": _TOKEN_REJECTED,
    "token_revoked": _TOKEN_REJECTED,
    "token_expired": _TOKEN_REJECTED,
    "account_inactive": _TOKEN_REJECTED,
    "missing_scope": FailureText(
        reason="segment-bot lacks a Slack scope it needs to post in #{channel}. Add the scopes from the app "
        "manifest, reinstall, then resend.",
        group_label="Missing Slack scope",
        group_action="Add the scopes from the app manifest, reinstall, then resend.",
    ),
    RATE_LIMITED: FailureText(
        reason="Slack kept rate-limiting the posts, so nothing was posted to #{channel}. Resend later.",
        group_label="Rate-limited by Slack",
        group_action="Resend later.",
    ),
    UNKNOWN_OUTCOME: FailureText(
        reason="Slack did not confirm the post, and segment-bot cannot read #{channel}'s history "
        "to check, so it was not posted again. Check #{channel}.",
        group_label="Not confirmed by Slack",
        group_action="Check these channels, because the message may be there. Add the "
        "channels:history and groups:history scopes so segment-bot can check by itself.",
    ),
    SERVER_ERRORS: FailureText(
        reason="Slack kept failing, so nothing was posted to #{channel}. Resend later.",
        group_label="Slack kept failing",
        group_action="Resend later.",
    ),
    JOIN_FAILED: FailureText(
        reason=f"{BOT_MENTION} could not join #{{channel}} because Slack kept failing, so nothing was posted. "
        f"Invite {BOT_MENTION} to #{{channel}} or resend later.",
        group_label="Could not join the channel",
        group_action=f"Invite {BOT_MENTION} or resend later.",
    ),
    CONNECTION_FAILED: FailureText(
        reason="Could not connect to Slack, so nothing was posted to #{channel}. Resend later.",
        group_label="Could not connect to Slack",
        group_action="Resend later.",
    ),
}


def failure_reason(error: str, *, channel_name: str) -> str:
    """Return the sentence for a delivery that failed with `error`, naming the channel."""
    text = FAILURES.get(error)
    if text is None:
        return f"Slack returned the error {error} for #{channel_name}. Check the channel, then resend."
    return text.reason.format(channel=channel_name)


def failure_group(error: str) -> tuple[str, str]:
    """Return a label and an action for a report line that groups channels failing with `error`."""
    text = FAILURES.get(error)
    if text is None:
        return f"Slack error {error}", "Check the channels, then resend."
    return text.group_label, text.group_action


@dataclass(frozen=True)
class RenderedMessage:
    """The text and blocks posted to one channel."""

    text: str
    blocks: list[dict[str, Any]] | None = None


Renderer = Callable[[DeliveryRecord], RenderedMessage]


class DurableDeliveryLog(DeliveryLog, Protocol):
    """A `DeliveryLog` that can also record unknown outcomes and notice cancelled deliveries."""

    async def claim_for_sending(self, delivery_id: int) -> int | None:
        """Set a `pending` or `sending` delivery to `sending` and return the attempt count.

        Return None, and change nothing, when the delivery is in any other status, for example
        because its broadcast was cancelled.
        """
        ...

    async def mark_unconfirmed(self, delivery_id: int, *, error: str, reason: str) -> None:
        """Set a `sending` delivery to `unconfirmed`: it may be posted and could not be checked."""
        ...


@dataclass(frozen=True)
class _PostResult:
    ts: str | None = None
    error: str | None = None
    retry_after: float | None = None


class _CannotCheck(Exception):
    """The channel's history could not be read, so a post's outcome stays unknown."""


@dataclass
class _SendRun:
    """State shared by the workers of one `deliver`."""

    broadcast_id: int
    message: RenderedMessage
    token_error: str | None = None
    rate_limited: int = 0
    # Scopes granted to the token, from auth.test, read once per run when a check is needed.
    scopes: frozenset[str] | None = None
    scopes_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    # Set when a worker raised (a DeliveryLog failure), so the other workers take no new delivery.
    stopped: bool = False


class BroadcastSender:
    """Post a broadcast to its targets with bounded concurrency and record every delivery.

    `client` must have slack-sdk's automatic retries off (`retry_handlers=[]`): a handler that
    retries a post after a dropped connection or a 5xx can publish the message twice, so this
    class decides every retry itself. Before posting again after an unknown outcome, it looks for
    the delivery's metadata in the channel's history; without a history scope the delivery
    becomes `unconfirmed` instead. `render` builds each channel's message (None posts the
    broadcast's text and blocks as they are). `on_progress` is called with each delivery after
    each change. Pacing is kept by `pacer`, so share one pacer per workspace.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        log: DurableDeliveryLog,
        concurrency: int = 8,
        on_progress: Callable[[DeliveryRecord], None] | None = None,
        render: Renderer | None = None,
        pacer: Pacer | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if client.retry_handlers:
            names = ", ".join(type(handler).__name__ for handler in client.retry_handlers)
            raise ValueError(
                f"The posting client has retry handlers ({names}), which can post a message twice. "
                "Create it with AsyncWebClient(..., retry_handlers=[])."
            )
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._client = client
        self._log = log
        self._concurrency = concurrency
        self._on_progress = on_progress
        self._render = render
        self._pacer = pacer if pacer is not None else Pacer(clock=clock, sleep=sleep)
        self._sleep = sleep
        self._wall_clock = wall_clock

    async def send(self, broadcast: NewBroadcast) -> BroadcastRecord:
        """Record the broadcast, post to every target once, and return the finished record.

        Raises ValueError before recording anything when two targets share a channel. A
        `DeliveryLog` error stops the workers and is raised after they finish their current
        delivery, leaving later deliveries `pending`.
        """
        _check_unique_channels(broadcast.targets)
        record = await self._log.create_broadcast(broadcast)
        logger.info(
            "Sending broadcast %d (segment %r, team %s) to %d channels",
            record.id,
            broadcast.segment_name,
            broadcast.team_id,
            len(record.deliveries),
        )
        return await self.deliver(
            record, message_text=broadcast.message_text, message_blocks=broadcast.message_blocks
        )

    async def deliver(
        self,
        record: BroadcastRecord,
        *,
        message_text: str,
        message_blocks: Sequence[Mapping[str, Any]] | None,
    ) -> BroadcastRecord:
        """Post the recorded broadcast to each delivery still `pending` or `sending`, then finish it.

        Used for a new broadcast, to resume one after a restart, and to resend failed deliveries
        reopened as `pending`. A delivery left `sending` is checked in the channel's history before
        it is posted again. Deliveries in other statuses are left as they are.
        """
        run = _SendRun(
            broadcast_id=record.id,
            message=RenderedMessage(
                text=message_text,
                blocks=[dict(block) for block in message_blocks] if message_blocks else None,
            ),
        )
        open_deliveries = [
            delivery
            for delivery in record.deliveries
            if delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
        ]
        queue = iter(open_deliveries)

        async def work() -> None:
            # Workers share one iterator, so each delivery is taken by exactly one worker.
            for delivery in queue:
                if run.stopped:
                    return
                try:
                    await self._deliver(delivery, run)
                except Exception:
                    run.stopped = True
                    raise

        worker_count = min(self._concurrency, len(open_deliveries))
        results = await asyncio.gather(*(work() for _ in range(worker_count)), return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            logger.error("Broadcast %d stopped: %r", record.id, errors[0])
            raise errors[0]

        finished = await self._log.finish_broadcast(record.id)
        counts = Counter(delivery.status for delivery in finished.deliveries)
        logger.info(
            "Broadcast %d finished as %s: %d sent, %d failed, %d unconfirmed, %d cancelled, "
            "%d posts rate-limited (HTTP 429)",
            record.id,
            finished.status,
            counts[DeliveryStatus.SENT],
            counts[DeliveryStatus.FAILED],
            counts[DeliveryStatus.UNCONFIRMED],
            counts[DeliveryStatus.CANCELLED],
            run.rate_limited,
        )
        return finished

    async def _deliver(self, delivery: DeliveryRecord, run: _SendRun) -> None:
        # A delivery left `sending` by a crash may have been posted before the process died.
        outcome_unknown = delivery.status == DeliveryStatus.SENDING
        started_at = (
            delivery.sending_started_at.timestamp()
            if delivery.sending_started_at is not None
            else None
        )
        attempts = delivery.attempts
        transient = 0
        joined = False
        message = self._render(delivery) if self._render is not None else run.message
        while True:
            if run.token_error is not None:
                await self._fail(delivery, run.token_error, attempts=attempts)
                return
            if outcome_unknown:
                try:
                    ts = await self._find_post(delivery, run, started_at=started_at)
                except _CannotCheck as exc:
                    await self._unconfirm(delivery, attempts=attempts, cause=str(exc))
                    return
                if ts is not None:
                    await self._log.mark_sent(delivery.id, ts=ts)
                    logger.info("Delivery %d was already posted with ts %s; not posting again", delivery.id, ts)
                    self._report(delivery, status=DeliveryStatus.SENT, attempts=attempts, ts=ts)
                    return
                if transient >= MAX_ATTEMPTS:
                    await self._fail(delivery, SERVER_ERRORS, attempts=attempts)
                    return
                outcome_unknown = False

            await self._pacer.acquire(delivery.channel_id)
            claimed = await self._log.claim_for_sending(delivery.id)
            if claimed is None:
                logger.info("Delivery %d was cancelled before its post", delivery.id)
                self._report(delivery, status=DeliveryStatus.CANCELLED, attempts=attempts)
                return
            attempts = claimed
            if started_at is None:
                started_at = self._wall_clock()
            self._report(delivery, status=DeliveryStatus.SENDING, attempts=attempts)
            result = await self._post(delivery, run, message=message)

            if result.ts is not None:
                self._pacer.on_success()
                await self._log.mark_sent(delivery.id, ts=result.ts)
                self._report(delivery, status=DeliveryStatus.SENT, attempts=attempts, ts=result.ts)
                return
            error = result.error or UNKNOWN_OUTCOME
            if result.retry_after is not None:
                run.rate_limited += 1
                transient += 1
                self._pacer.on_rate_limited(result.retry_after)
                if transient < MAX_ATTEMPTS:
                    continue
            elif error == UNKNOWN_OUTCOME:
                # Slack may have stored the post, so the next round checks history before posting.
                transient += 1
                outcome_unknown = True
                await self._sleep(_backoff_seconds(transient))
                continue
            elif error == CONNECTION_FAILED:
                transient += 1
                if transient < MAX_ATTEMPTS:
                    await self._sleep(_backoff_seconds(transient))
                    continue
            elif error == "not_in_channel" and not delivery.is_private and not joined:
                joined = True
                join_error = await self._join(delivery)
                if join_error is None:
                    continue
                error = join_error
            if error in _TOKEN_ERRORS:
                run.token_error = error
            await self._fail(delivery, error, attempts=attempts)
            return

    async def _post(
        self, delivery: DeliveryRecord, run: _SendRun, *, message: RenderedMessage
    ) -> _PostResult:
        """Call chat.postMessage once and classify the response. This method never retries."""
        metadata = {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"broadcast_id": run.broadcast_id, "delivery_id": delivery.id},
        }
        try:
            response = await self._client.chat_postMessage(
                channel=delivery.channel_id,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                metadata=metadata,
            )
        except SlackApiError as exc:
            return _classify_api_error(exc, delivery=delivery)
        except aiohttp.ClientConnectorError as exc:
            # The connection was never opened, so Slack cannot have received the post.
            logger.warning("Delivery %d to %s: could not connect to Slack: %s", delivery.id, delivery.channel_id, exc)
            return _PostResult(error=CONNECTION_FAILED)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error(
                "Delivery %d to %s: no response from Slack (%r), so the post may or may not exist",
                delivery.id,
                delivery.channel_id,
                exc,
            )
            return _PostResult(error=UNKNOWN_OUTCOME)
        return _PostResult(ts=str(response["ts"]))

    async def _needs_membership(self, run: _SendRun) -> bool:
        """Return whether the token can post only in channels the bot is a member of."""
        return "chat:write.public" not in await self._granted_scopes(run)

    async def _find_post(
        self, delivery: DeliveryRecord, run: _SendRun, *, started_at: float | None
    ) -> str | None:
        """Return the ts of this delivery's post in the channel's history, or None when absent.

        Raises _CannotCheck when the token lacks the history scope or the history cannot be read.
        """
        scope = PRIVATE_HISTORY_SCOPE if delivery.is_private else PUBLIC_HISTORY_SCOPE
        if scope not in await self._granted_scopes(run):
            raise _CannotCheck(f"the token lacks {scope}")
        # Without a recorded start, every message since the broadcast's first post could match,
        # so the whole history is searched; `oldest=0` is Slack's default.
        oldest = 0.0 if started_at is None else max(0.0, started_at - HISTORY_MARGIN_SECONDS)
        cursor: str | None = None
        rate_limited = 0
        while True:
            try:
                response = await self._client.conversations_history(
                    channel=delivery.channel_id,
                    oldest=f"{oldest:.6f}",
                    include_all_metadata=True,
                    limit=HISTORY_PAGE_SIZE,
                    cursor=cursor,
                )
            except SlackApiError as exc:
                if exc.response.status_code == 429 and rate_limited < MAX_ATTEMPTS:
                    rate_limited += 1
                    await self._sleep(_retry_after_seconds(exc.response.headers))
                    continue
                if exc.response.get("error") == "not_in_channel" and await self._needs_membership(run):
                    # Without chat:write.public a bot posts only where it is a member, so a bot
                    # outside the channel (a crash before its join) cannot have posted there.
                    # NOTE: a bot removed from the channel after posting would be taken as not posted.
                    return None
                raise _CannotCheck(f"conversations.history failed with {exc.response.get('error')}") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _CannotCheck(f"conversations.history failed: {exc!r}") from exc
            for message in response.get("messages") or []:
                if _is_post_of(message, broadcast_id=run.broadcast_id, delivery_id=delivery.id):
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or cursor is None:
                return None

    async def _granted_scopes(self, run: _SendRun) -> frozenset[str]:
        async with run.scopes_lock:
            if run.scopes is None:
                try:
                    response = await self._client.auth_test()
                except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                    logger.warning("auth.test failed, so no history check is possible: %r", exc)
                    return frozenset()
                header = response.headers.get("x-oauth-scopes") or response.headers.get("X-OAuth-Scopes") or ""
                run.scopes = frozenset(scope.strip() for scope in header.split(",") if scope.strip())
            return run.scopes

    async def _join(self, delivery: DeliveryRecord) -> str | None:
        """Join a public channel and return None, or the error code to record when joining failed."""
        error = JOIN_FAILED
        for attempt in range(1, MAX_ATTEMPTS + 1):
            # Joining twice is harmless, so unlike a post a join is retried after any transient failure.
            try:
                await self._client.conversations_join(channel=delivery.channel_id)
            except SlackApiError as exc:
                status = exc.response.status_code
                if status == 429:
                    await self._sleep(_retry_after_seconds(exc.response.headers))
                    error = RATE_LIMITED
                    continue
                if status >= 500:
                    logger.warning("Joining %s: Slack responded with HTTP %d, trying again", delivery.channel_id, status)
                    error = JOIN_FAILED
                    await self._sleep(_backoff_seconds(attempt))
                    continue
                return str(exc.response.get("error") or f"http_{status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("Joining %s failed, trying again: %r", delivery.channel_id, exc)
                error = JOIN_FAILED
                await self._sleep(_backoff_seconds(attempt))
                continue
            logger.info("Joined #%s (%s) to post delivery %d", delivery.channel_name, delivery.channel_id, delivery.id)
            return None
        return error

    async def _fail(self, delivery: DeliveryRecord, error: str, *, attempts: int) -> None:
        reason = failure_reason(error, channel_name=delivery.channel_name)
        await self._log.mark_failed(delivery.id, error=error, reason=reason)
        logger.warning("Delivery %d to #%s (%s) failed with %s", delivery.id, delivery.channel_name, delivery.channel_id, error)
        self._report(delivery, status=DeliveryStatus.FAILED, attempts=attempts, error=error, reason=reason)

    async def _unconfirm(self, delivery: DeliveryRecord, *, attempts: int, cause: str) -> None:
        reason = failure_reason(UNKNOWN_OUTCOME, channel_name=delivery.channel_name)
        await self._log.mark_unconfirmed(delivery.id, error=UNKNOWN_OUTCOME, reason=reason)
        logger.error(
            "Delivery %d to #%s (%s) is unconfirmed and will not be posted again: %s",
            delivery.id,
            delivery.channel_name,
            delivery.channel_id,
            cause,
        )
        self._report(
            delivery, status=DeliveryStatus.UNCONFIRMED, attempts=attempts, error=UNKNOWN_OUTCOME, reason=reason
        )

    def _report(
        self,
        delivery: DeliveryRecord,
        *,
        status: DeliveryStatus,
        attempts: int,
        ts: str | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> None:
        if self._on_progress is None:
            return
        update = dataclasses.replace(delivery, status=status, attempts=attempts, ts=ts, error=error, reason=reason)
        try:
            self._on_progress(update)
        except Exception:  # noqa: BLE001 - a progress display must never stop or skip a delivery
            logger.exception("Progress callback failed for delivery %d", delivery.id)


def _is_post_of(message: Mapping[str, Any], *, broadcast_id: int, delivery_id: int) -> bool:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != METADATA_EVENT_TYPE:
        return False
    payload = metadata.get("event_payload") or {}
    # Slack may return payload numbers as strings, so both sides are compared as text.
    return str(payload.get("broadcast_id")) == str(broadcast_id) and str(payload.get("delivery_id")) == str(
        delivery_id
    )


def _backoff_seconds(attempt: int) -> float:
    """Return the wait before retry `attempt` (1-based) after a 5xx, timeout or failed connection."""
    return float(min(DEFAULT_RETRY_AFTER_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def _classify_api_error(exc: SlackApiError, *, delivery: DeliveryRecord) -> _PostResult:
    status = exc.response.status_code
    error = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
    if status == 429:
        return _PostResult(error=RATE_LIMITED, retry_after=_retry_after_seconds(exc.response.headers))
    if status >= 500 or error in _UNCONFIRMED_ERRORS:
        # The post may exist, so the sender checks the channel's history before posting again.
        logger.error(
            "Delivery %d to %s: Slack responded with HTTP %d %s, so the post may or may not exist",
            delivery.id,
            delivery.channel_id,
            status,
            error or "(no error code)",
        )
        return _PostResult(error=UNKNOWN_OUTCOME)
    return _PostResult(error=error or f"http_{status}")


def _retry_after_seconds(headers: Mapping[str, Any]) -> float:
    """Read `Retry-After` in seconds, falling back to one second when it is missing or invalid."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        seconds = float(raw) if raw is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    return max(seconds, 0.0)


def _check_unique_channels(targets: Sequence[DeliveryTarget]) -> None:
    seen: set[str] = set()
    duplicates: list[str] = []
    for target in targets:
        if target.channel_id in seen:
            duplicates.append(f"#{target.channel_name} ({target.channel_id})")
        seen.add(target.channel_id)
    if duplicates:
        raise ValueError(
            f"Targets list these channels more than once: {', '.join(duplicates)}. "
            "Merge them so each channel gets the message once."
        )
