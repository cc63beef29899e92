"""Post a broadcast once to each target channel, recording each delivery before and after its post.

`BroadcastSender` is the one place that decides retries and pacing for Slack posts. It waits out
429s for the whole workspace, keeps posts to one channel at least a second apart, joins public
channels it is not in, and never reposts when Slack may already have posted. One channel failing
never stops the others. `FAILURES` is the one table that maps a Slack error code to the sentences
a person reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from segments.channels import BOT_MENTION
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
# Slack allows about one post per second per channel. The extra tenth of a second keeps network
# jitter from bringing two posts closer than a second when they reach Slack.
CHANNEL_POST_INTERVAL_SECONDS = 1.1
# Maximum attempts per delivery while Slack responds 429, and per join while it responds 429 or 5xx.
MAX_ATTEMPTS = 5
DEFAULT_RETRY_AFTER_SECONDS = 1.0

# Error codes the sender records in place of Slack's own.
UNKNOWN_OUTCOME = "unknown_outcome"
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
        reason="Slack did not confirm the post. Check #{channel} before resending.",
        group_label="Not confirmed by Slack",
        group_action="Check these channels before resending, because the message may be there.",
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
class _PostResult:
    ts: str | None = None
    error: str | None = None
    retry_after: float | None = None


@dataclass
class _SendRun:
    """State shared by the workers of one `send`."""

    broadcast_id: int
    text: str
    blocks: list[dict[str, Any]] | None
    targets: Mapping[str, DeliveryTarget]
    token_error: str | None = None
    rate_limited: int = 0
    # Set when a worker raised (a DeliveryLog failure), so the other workers take no new delivery.
    stopped: bool = False


class BroadcastSender:
    """Post a broadcast to its targets with bounded concurrency and record every delivery.

    `client` must have slack-sdk's automatic retries off (`retry_handlers=[]`): a handler that
    retries a post after a dropped connection or a 5xx can publish the message twice, so this
    class decides every retry itself. `on_progress` is called with each delivery after each
    change (sending, sent, failed). Pacing state is kept per sender, so reuse one sender per
    workspace.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        log: DeliveryLog,
        concurrency: int = 8,
        on_progress: Callable[[DeliveryRecord], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
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
        self._sleep = sleep
        self._clock = clock
        self._paused_until = 0.0
        self._next_post_at: dict[str, float] = {}

    async def send(self, broadcast: NewBroadcast) -> BroadcastRecord:
        """Record the broadcast, post to every target once, and return the finished record.

        Raises ValueError before recording anything when two targets share a channel. A
        `DeliveryLog` error stops the workers and is raised after they finish their current
        delivery, leaving later deliveries `pending`.
        """
        _check_unique_channels(broadcast.targets)
        record = await self._log.create_broadcast(broadcast)
        run = _SendRun(
            broadcast_id=record.id,
            text=broadcast.message_text,
            blocks=[dict(block) for block in broadcast.message_blocks] if broadcast.message_blocks else None,
            targets={target.channel_id: target for target in broadcast.targets},
        )
        logger.info(
            "Sending broadcast %d (segment %r, team %s) to %d channels",
            record.id,
            broadcast.segment_name,
            broadcast.team_id,
            len(record.deliveries),
        )

        pending = iter(record.deliveries)

        async def work() -> None:
            # Workers share one iterator, so each delivery is taken by exactly one worker.
            for delivery in pending:
                if run.stopped:
                    return
                try:
                    await self._deliver(delivery, run)
                except Exception:
                    run.stopped = True
                    raise

        worker_count = min(self._concurrency, len(record.deliveries))
        results = await asyncio.gather(*(work() for _ in range(worker_count)), return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            logger.error("Broadcast %d stopped: %r", record.id, errors[0])
            raise errors[0]

        finished = await self._log.finish_broadcast(record.id)
        sent = sum(delivery.status == DeliveryStatus.SENT for delivery in finished.deliveries)
        logger.info(
            "Broadcast %d finished as %s: %d sent, %d failed, %d posts rate-limited (HTTP 429)",
            record.id,
            finished.status,
            sent,
            len(finished.deliveries) - sent,
            run.rate_limited,
        )
        return finished

    async def _deliver(self, delivery: DeliveryRecord, run: _SendRun) -> None:
        target = run.targets.get(delivery.channel_id)
        is_private = target.is_private if target is not None else False
        attempts = delivery.attempts
        rate_limited = 0
        joined = False
        while True:
            if run.token_error is not None:
                await self._fail(delivery, run.token_error, attempts=attempts)
                return
            await self._wait_for_turn(delivery.channel_id)
            attempts = await self._log.mark_sending(delivery.id)
            self._report(delivery, status=DeliveryStatus.SENDING, attempts=attempts)
            result = await self._post(delivery, run)

            if result.ts is not None:
                await self._log.mark_sent(delivery.id, ts=result.ts)
                self._report(delivery, status=DeliveryStatus.SENT, attempts=attempts, ts=result.ts)
                return
            error = result.error or UNKNOWN_OUTCOME
            if result.retry_after is not None:
                run.rate_limited += 1
                rate_limited += 1
                self._pause_workspace(result.retry_after)
                if rate_limited < MAX_ATTEMPTS:
                    continue
            elif error == "not_in_channel" and not is_private and not joined:
                joined = True
                join_error = await self._join(delivery)
                if join_error is None:
                    continue
                error = join_error
            if error in _TOKEN_ERRORS:
                run.token_error = error
            await self._fail(delivery, error, attempts=attempts)
            return

    async def _post(self, delivery: DeliveryRecord, run: _SendRun) -> _PostResult:
        """Call chat.postMessage once and classify the response. This method never retries."""
        metadata = {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"broadcast_id": run.broadcast_id, "delivery_id": delivery.id},
        }
        try:
            response = await self._client.chat_postMessage(
                channel=delivery.channel_id,
                text=run.text,
                blocks=run.blocks,
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

    async def _join(self, delivery: DeliveryRecord) -> str | None:
        """Join a public channel and return None, or the error code to record when joining failed."""
        error = JOIN_FAILED
        for _ in range(MAX_ATTEMPTS):
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
                    await self._sleep(DEFAULT_RETRY_AFTER_SECONDS)
                    continue
                return str(exc.response.get("error") or f"http_{status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("Joining %s failed, trying again: %r", delivery.channel_id, exc)
                error = JOIN_FAILED
                await self._sleep(DEFAULT_RETRY_AFTER_SECONDS)
                continue
            logger.info("Joined #%s (%s) to post delivery %d", delivery.channel_name, delivery.channel_id, delivery.id)
            return None
        return error

    async def _wait_for_turn(self, channel_id: str) -> None:
        """Wait for this channel's next post slot, then for any workspace pause to end."""
        now = self._clock()
        slot = max(now, self._next_post_at.get(channel_id, now))
        # Reserve the slot before sleeping so that concurrent posts to one channel queue up.
        self._next_post_at[channel_id] = slot + CHANNEL_POST_INTERVAL_SECONDS
        if slot > now:
            await self._sleep(slot - now)
        while (remaining := self._paused_until - self._clock()) > 0:
            await self._sleep(remaining)

    def _pause_workspace(self, seconds: float) -> None:
        # Slack's 429 does not say whether the channel or the workspace limit was hit, so every
        # worker waits: retrying elsewhere at once would only draw more 429s.
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            logger.debug("Slack responded with 429, pausing posts for %.1fs", seconds)

    async def _fail(self, delivery: DeliveryRecord, error: str, *, attempts: int) -> None:
        reason = failure_reason(error, channel_name=delivery.channel_name)
        await self._log.mark_failed(delivery.id, error=error, reason=reason)
        log = logger.error if error == UNKNOWN_OUTCOME else logger.warning
        log("Delivery %d to #%s (%s) failed with %s", delivery.id, delivery.channel_name, delivery.channel_id, error)
        self._report(delivery, status=DeliveryStatus.FAILED, attempts=attempts, error=error, reason=reason)

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


def _classify_api_error(exc: SlackApiError, *, delivery: DeliveryRecord) -> _PostResult:
    status = exc.response.status_code
    error = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
    if status == 429:
        return _PostResult(error=RATE_LIMITED, retry_after=_retry_after_seconds(exc.response.headers))
    if status >= 500 or error in _UNCONFIRMED_ERRORS:
        # NOTE: the post may exist, so it is recorded as failed and not repeated. Looking for the
        # delivery's metadata in conversations.history could confirm it instead.
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
