"""Act on a broadcast's posted messages after sending: edit them, delete them, or reply in their threads.

An action is stored with one target per posted message before any Slack call, and each target is
recorded before and after its call, like a delivery: marked `sending` and committed, then the
call, then the result committed. `ActionSender` paces the calls with `segments.pacing.Pacer` and
words failures with the sender's table (`segments.sending.FAILURES`) plus the codes only edits and
deletes return. An edit or delete can safely be repeated, so an unknown outcome is tried again.
A follow-up reply cannot, so it carries message metadata, and a reply whose outcome is unknown is
looked up in the thread (`conversations.replies`) before it is posted again. Without a history
scope such a reply becomes `unconfirmed` and is not posted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from db.records import StoredBroadcast
from segments.broadcasts import AudienceChange, LiveMessage, report_controls, report_text
from segments.errors import UserFacingError
from segments.pacing import Pacer
from segments.personalize import MessageRenderer, find_missing_values
from segments.ports import DeliveryStatus, DeliveryTarget, QualifyingCompany
from segments.properties import PropertyCatalog
from segments.sending import (
    CONNECTION_FAILED,
    DEFAULT_RETRY_AFTER_SECONDS,
    MAX_ATTEMPTS,
    MAX_BACKOFF_SECONDS,
    PRIVATE_HISTORY_SCOPE,
    PUBLIC_HISTORY_SCOPE,
    RATE_LIMITED,
    SERVER_ERRORS,
    UNKNOWN_OUTCOME,
    FailureText,
    RenderedMessage,
    failure_group,
    failure_reason,
)
from segments.slack_text import escape_mrkdwn

logger = logging.getLogger(__name__)

FOLLOWUP_METADATA_EVENT_TYPE = "segment_broadcast_followup"
REPLIES_PAGE_SIZE = 200
MAX_CHANNELS_PER_LINE = 20

Sleep = Callable[[float], Awaitable[Any]]


class ActionKind(StrEnum):
    EDIT = "edit"
    DELETE = "delete"
    FOLLOWUP = "followup"


class ActionStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    PARTIALLY_DONE = "partially_done"
    FAILED = "failed"


class TargetStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"
    # A follow-up whose outcome is unknown and could not be checked, so it is not posted again.
    UNCONFIRMED = "unconfirmed"


# Statuses that end a target's part in an action.
FINAL_TARGET_STATUSES = frozenset(
    {TargetStatus.DONE, TargetStatus.FAILED, TargetStatus.UNCONFIRMED}
)


class ActionRefused(UserFacingError):
    """The action cannot start now, with the reason and what to do instead."""


@dataclass(frozen=True)
class NewAction:
    broadcast_id: int
    kind: ActionKind
    # The mrkdwn text and blocks as the person wrote them, or empty for a delete.
    text: str
    blocks: Sequence[Mapping[str, Any]] | None
    requested_by: str


@dataclass(frozen=True)
class ActionTarget:
    """One posted message an action changes, or replies under."""

    id: int
    action_id: int
    delivery_id: int
    channel_id: str
    channel_name: str
    is_private: bool
    # The broadcast's message in the channel: the `ts` to edit or delete, or the thread to reply in.
    message_ts: str
    status: TargetStatus
    attempts: int
    error: str | None = None
    reason: str | None = None
    # The follow-up reply's own ts, once posted.
    reply_ts: str | None = None
    companies: Sequence[QualifyingCompany] = ()
    sending_started_at: datetime | None = None


@dataclass(frozen=True)
class ActionRecord:
    id: int
    broadcast_id: int
    team_id: str
    kind: ActionKind
    text: str
    blocks: Sequence[Mapping[str, Any]] | None
    requested_by: str
    status: ActionStatus
    created_at: datetime
    finished_at: datetime | None
    targets: Sequence[ActionTarget]


class ActionLog(Protocol):
    """Storage for actions and their targets. Every method commits before it returns."""

    async def create_action(self, action: NewAction) -> ActionRecord:
        """Insert a `running` action with one `pending` target per message it can act on.

        Targets are the deliveries `sent` with a ts whose message no earlier delete removed.
        Raises ActionRefused while the broadcast is still running, while another action on it
        runs, or when no message is left to act on, and BroadcastNotFound for an unknown id.
        """
        ...

    async def claim_target(self, target_id: int) -> int | None:
        """Set a `pending` or `sending` target to `sending`, add one attempt and return the count.

        Return None, and change nothing, when the target already has a final status.
        """
        ...

    async def mark_target_done(self, target_id: int, *, reply_ts: str | None = None) -> None: ...

    async def mark_target_failed(self, target_id: int, *, error: str, reason: str) -> None: ...

    async def mark_target_unconfirmed(self, target_id: int, *, error: str, reason: str) -> None: ...

    async def finish_action(self, action_id: int) -> ActionRecord:
        """Derive the action's final status from its targets, store it and return the record."""
        ...

    async def get_action(self, action_id: int) -> ActionRecord | None: ...

    async def list_actions(self, broadcast_id: int) -> Sequence[ActionRecord]:
        """Return the broadcast's actions, oldest first."""
        ...


class BroadcastSource(Protocol):
    async def get_stored_broadcast(self, broadcast_id: int) -> StoredBroadcast | None: ...


def action_status_for(statuses: Sequence[TargetStatus]) -> ActionStatus:
    """Return `done` when every target is done, `failed` when none is, else `partially_done`."""
    done = sum(status == TargetStatus.DONE for status in statuses)
    if statuses and done == len(statuses):
        return ActionStatus.DONE
    if done == 0:
        return ActionStatus.FAILED
    return ActionStatus.PARTIALLY_DONE


# Failure wording


_MESSAGE_GONE = FailureText(
    reason="The message in #{channel} was not found, so someone deleted it in Slack. Nothing was "
    "changed there.",
    group_label="Message deleted in Slack",
    group_action="Nothing to change there. Send a new broadcast if these channels still need it.",
)

# Codes that only chat.update and chat.delete return. Everything else is worded by the sender's
# table, so a channel that failed to post and one that failed to edit read alike.
ACTION_FAILURES: Mapping[str, FailureText] = {
    "message_not_found": _MESSAGE_GONE,
    "cant_update_message": FailureText(
        reason="Slack does not let segment-bot edit its message in #{channel} "
        "(cant_update_message). Delete it and post a follow-up instead.",
        group_label="Slack refused the edit",
        group_action="Delete these messages and post a follow-up instead.",
    ),
    "edit_window_closed": FailureText(
        reason="The workspace allows edits only for a while after posting, and that time is over "
        "for the message in #{channel}. Delete it and post a follow-up instead.",
        group_label="Edit window closed",
        group_action="Delete these messages and post a follow-up instead, or ask an admin to "
        "allow edits for longer.",
    ),
    "cant_delete_message": FailureText(
        reason="Slack does not let segment-bot delete its message in #{channel} "
        "(cant_delete_message). Ask an admin of #{channel} to delete it.",
        group_label="Slack refused the delete",
        group_action="Ask an admin of these channels to delete the message.",
    ),
    "thread_not_found": FailureText(
        reason="The message in #{channel} was not found, so there is no thread to reply in. "
        "Send a new broadcast if #{channel} still needs it.",
        group_label="Message deleted in Slack",
        group_action="Nothing to reply under. Send a new broadcast if these channels still need it.",
    ),
}


def action_failure_reason(error: str, *, channel_name: str) -> str:
    """Return the sentence for a target that failed with `error`, naming the channel."""
    text = ACTION_FAILURES.get(error)
    if text is None:
        return failure_reason(error, channel_name=channel_name)
    return text.reason.format(channel=channel_name)


def action_failure_group(error: str) -> tuple[str, str]:
    """Return a label and an action for a report line that groups targets failing with `error`."""
    text = ACTION_FAILURES.get(error)
    if text is None:
        return failure_group(error)
    return text.group_label, text.group_action


_KIND_LABELS = {
    ActionKind.EDIT: ("Edit", "edited", "Editing"),
    ActionKind.DELETE: ("Delete", "deleted", "Deleting"),
    ActionKind.FOLLOWUP: ("Follow-up", "posted", "Posting"),
}


def format_action_report(action: ActionRecord) -> str:
    """Render one action as mrkdwn: who, the count of messages changed, and failures by reason."""
    label, done_verb, running_verb = _KIND_LABELS[action.kind]
    total = len(action.targets)
    head = f"*{label}* by <@{action.requested_by}>"
    if action.status == ActionStatus.RUNNING:
        return f"{head}: {running_verb.lower()} in {_channels(total)}…"
    done = [target for target in action.targets if target.status == TargetStatus.DONE]
    lines = [f"{head}: {done_verb} in {len(done)} of {_channels(total)}."]
    failed = [target for target in action.targets if target.status == TargetStatus.FAILED]
    if failed:
        by_error: dict[str, list[ActionTarget]] = defaultdict(list)
        for target in failed:
            by_error[target.error or "unknown"].append(target)
        for error, group in sorted(by_error.items(), key=lambda item: (-len(item[1]), item[0])):
            group_label, fix = action_failure_group(error)
            lines.append(f"• {group_label} ({len(group)}): {_channel_list(group)}. {fix}")
    unconfirmed = [target for target in action.targets if target.status == TargetStatus.UNCONFIRMED]
    if unconfirmed:
        lines.append(
            f"• Not confirmed by Slack ({len(unconfirmed)}): {_channel_list(unconfirmed)}. "
            "Check these threads, because the reply may be there."
        )
    return "\n".join(lines)


def _channels(count: int) -> str:
    return f"{count:,} channel" if count == 1 else f"{count:,} channels"


def _channel_list(targets: Sequence[ActionTarget]) -> str:
    names = [f"#{escape_mrkdwn(target.channel_name)}" for target in targets[:MAX_CHANNELS_PER_LINE]]
    hidden = len(targets) - len(names)
    if hidden > 0:
        names.append(f"and {hidden} more")
    return ", ".join(names)


# Sending


TargetRenderer = Callable[[ActionTarget], RenderedMessage]

_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"}
)
# Errors that can come with a call Slack carried out anyway.
_UNKNOWN_OUTCOME_ERRORS = frozenset(
    {"fatal_error", "internal_error", "request_timeout", "service_unavailable"}
)


@dataclass(frozen=True)
class _CallResult:
    ok: bool = False
    ts: str | None = None
    error: str | None = None
    retry_after: float | None = None


class _CannotCheck(Exception):
    """The thread could not be read, so whether a reply exists is unknown."""


@dataclass
class _ActionRun:
    action: ActionRecord
    scopes: frozenset[str] | None = None
    token_error: str | None = None


class ActionSender:
    """Carry out one stored action in every target channel, recording each target around its call.

    Only the targets still `pending` or `sending` are worked on, so the same call resumes an
    action that a stopped process left unfinished. One channel failing never stops the others,
    except that a rejected token fails the rest at once without calling Slack.
    """

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        log: ActionLog,
        pacer: Pacer | None = None,
        concurrency: int = 8,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client.retry_handlers:
            raise ValueError(
                "The client has retry handlers, which can post a follow-up twice. Create it with "
                "AsyncWebClient(..., retry_handlers=[])."
            )
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._client = client
        self._log = log
        self._pacer = pacer if pacer is not None else Pacer(clock=clock, sleep=sleep)
        self._concurrency = concurrency
        self._sleep = sleep

    async def run(
        self, action: ActionRecord, *, render: TargetRenderer | None = None
    ) -> ActionRecord:
        """Call Slack for each open target, then finish the action and return its final record.

        `render` builds each channel's text and blocks; None uses the action's own. A storage
        error stops the workers and is raised after they finish their current target.
        """
        run = _ActionRun(action=action)
        open_targets = [
            target for target in action.targets if target.status not in FINAL_TARGET_STATUSES
        ]
        queue = iter(open_targets)

        async def work() -> None:
            # Workers share one iterator, so each target is taken by exactly one worker.
            for target in queue:
                await self._run_target(target, run, render=render)

        if open_targets:
            workers = min(self._concurrency, len(open_targets))
            results = await asyncio.gather(
                *(work() for _ in range(workers)), return_exceptions=True
            )
            errors = [result for result in results if isinstance(result, BaseException)]
            if errors:
                logger.error(
                    "Action %d on broadcast %d stopped: %r",
                    action.id,
                    action.broadcast_id,
                    errors[0],
                )
                raise errors[0]
        finished = await self._log.finish_action(action.id)
        logger.info(
            "Action %d (%s) on broadcast %d finished as %s",
            finished.id,
            finished.kind,
            finished.broadcast_id,
            finished.status,
        )
        return finished

    async def _run_target(
        self, target: ActionTarget, run: _ActionRun, *, render: TargetRenderer | None
    ) -> None:
        kind = run.action.kind
        if render is not None and kind != ActionKind.DELETE:
            message = render(target)
        else:
            blocks = [dict(block) for block in run.action.blocks] if run.action.blocks else None
            message = RenderedMessage(text=run.action.text, blocks=blocks)
        # A reply left `sending` by a crash may be in the thread already.
        check_thread = kind == ActionKind.FOLLOWUP and target.status == TargetStatus.SENDING
        transient = 0
        while True:
            if run.token_error is not None:
                await self._fail(target, run.token_error)
                return
            if check_thread:
                try:
                    reply_ts = await self._find_reply(target, run)
                except _CannotCheck as exc:
                    await self._unconfirm(target, cause=str(exc))
                    return
                if reply_ts is not None:
                    logger.info(
                        "Follow-up target %d was already posted with ts %s", target.id, reply_ts
                    )
                    await self._log.mark_target_done(target.id, reply_ts=reply_ts)
                    return
                if transient >= MAX_ATTEMPTS:
                    await self._fail(target, SERVER_ERRORS)
                    return
                check_thread = False

            await self._pacer.acquire(target.channel_id)
            if await self._log.claim_target(target.id) is None:
                logger.info(
                    "Target %d of action %d is already final; skipping it", target.id, run.action.id
                )
                return
            result = await self._call(target, run, message=message)
            if result.ok:
                self._pacer.on_success()
                await self._log.mark_target_done(target.id, reply_ts=result.ts)
                return

            error = result.error or UNKNOWN_OUTCOME
            if result.retry_after is not None:
                transient += 1
                self._pacer.on_rate_limited(result.retry_after)
                if transient < MAX_ATTEMPTS:
                    continue
            elif error in (UNKNOWN_OUTCOME, CONNECTION_FAILED):
                transient += 1
                if error == UNKNOWN_OUTCOME and kind == ActionKind.FOLLOWUP:
                    # The reply may exist, so the next round reads the thread before posting.
                    check_thread = True
                    await self._sleep(_backoff_seconds(transient))
                    continue
                if transient < MAX_ATTEMPTS:
                    await self._sleep(_backoff_seconds(transient))
                    continue
                if error == UNKNOWN_OUTCOME:
                    error = SERVER_ERRORS
            elif kind == ActionKind.DELETE and error == "message_not_found":
                # Gone already: removed by hand, or by an earlier attempt whose response was lost.
                logger.info(
                    "Message of target %d in %s was already deleted", target.id, target.channel_id
                )
                await self._log.mark_target_done(target.id)
                return
            if error in _TOKEN_ERRORS:
                run.token_error = error
            await self._fail(target, error)
            return

    async def _call(
        self, target: ActionTarget, run: _ActionRun, *, message: RenderedMessage
    ) -> _CallResult:
        """Make the action's one Slack call for `target` and classify the response. It never retries."""
        kind = run.action.kind
        try:
            if kind == ActionKind.EDIT:
                # An empty list removes the old blocks, which would otherwise hide the new text.
                await self._client.chat_update(
                    channel=target.channel_id,
                    ts=target.message_ts,
                    text=message.text,
                    blocks=message.blocks or [],
                )
                return _CallResult(ok=True)
            if kind == ActionKind.DELETE:
                await self._client.chat_delete(channel=target.channel_id, ts=target.message_ts)
                return _CallResult(ok=True)
            response = await self._client.chat_postMessage(
                channel=target.channel_id,
                thread_ts=target.message_ts,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                metadata={
                    "event_type": FOLLOWUP_METADATA_EVENT_TYPE,
                    "event_payload": {
                        "action_id": run.action.id,
                        "delivery_id": target.delivery_id,
                    },
                },
            )
            return _CallResult(ok=True, ts=str(response["ts"]))
        except SlackApiError as exc:
            return _classify(exc, target=target)
        except aiohttp.ClientConnectorError as exc:
            # The connection was never opened, so Slack cannot have acted.
            logger.warning(
                "Target %d in %s: could not connect to Slack: %s", target.id, target.channel_id, exc
            )
            return _CallResult(error=CONNECTION_FAILED)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error(
                "Target %d in %s: no response from Slack (%r)", target.id, target.channel_id, exc
            )
            return _CallResult(error=UNKNOWN_OUTCOME)

    async def _find_reply(self, target: ActionTarget, run: _ActionRun) -> str | None:
        """Return the ts of this target's reply in the thread, or None when it is not there.

        Raises _CannotCheck when the token lacks the history scope or the thread cannot be read.
        """
        scope = PRIVATE_HISTORY_SCOPE if target.is_private else PUBLIC_HISTORY_SCOPE
        if scope not in await self._granted_scopes(run):
            raise _CannotCheck(f"the token lacks {scope}")
        cursor: str | None = None
        rate_limited = 0
        while True:
            try:
                response = await self._client.conversations_replies(
                    channel=target.channel_id,
                    ts=target.message_ts,
                    include_all_metadata=True,
                    limit=REPLIES_PAGE_SIZE,
                    cursor=cursor,
                )
            except SlackApiError as exc:
                if exc.response.status_code == 429 and rate_limited < MAX_ATTEMPTS:
                    rate_limited += 1
                    await self._sleep(_retry_after_seconds(exc.response.headers))
                    continue
                raise _CannotCheck(
                    f"conversations.replies failed with {exc.response.get('error')}"
                ) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _CannotCheck(f"conversations.replies failed: {exc!r}") from exc
            for message in response.get("messages") or []:
                if _is_reply_of(message, action_id=run.action.id, delivery_id=target.delivery_id):
                    return str(message["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not response.get("has_more") or cursor is None:
                return None

    async def _granted_scopes(self, run: _ActionRun) -> frozenset[str]:
        if run.scopes is None:
            try:
                response = await self._client.auth_test()
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
                logger.warning("auth.test failed, so no thread check is possible: %r", exc)
                return frozenset()
            header = (
                response.headers.get("x-oauth-scopes")
                or response.headers.get("X-OAuth-Scopes")
                or ""
            )
            run.scopes = frozenset(scope.strip() for scope in header.split(",") if scope.strip())
        return run.scopes

    async def _fail(self, target: ActionTarget, error: str) -> None:
        reason = action_failure_reason(error, channel_name=target.channel_name)
        await self._log.mark_target_failed(target.id, error=error, reason=reason)
        logger.warning(
            "Target %d in #%s (%s) failed with %s",
            target.id,
            target.channel_name,
            target.channel_id,
            error,
        )

    async def _unconfirm(self, target: ActionTarget, *, cause: str) -> None:
        reason = (
            f"Slack did not confirm the reply, and segment-bot cannot read the thread in "
            f"#{target.channel_name} to check, so it was not posted again. Check the thread."
        )
        await self._log.mark_target_unconfirmed(target.id, error=UNKNOWN_OUTCOME, reason=reason)
        logger.error(
            "Target %d in %s is unconfirmed and will not be posted again: %s",
            target.id,
            target.channel_id,
            cause,
        )


def _is_reply_of(message: Mapping[str, Any], *, action_id: int, delivery_id: int) -> bool:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != FOLLOWUP_METADATA_EVENT_TYPE:
        return False
    payload = metadata.get("event_payload") or {}
    # Slack may return payload numbers as strings, so both sides are compared as text.
    return str(payload.get("action_id")) == str(action_id) and str(
        payload.get("delivery_id")
    ) == str(delivery_id)


def _classify(exc: SlackApiError, *, target: ActionTarget) -> _CallResult:
    status = exc.response.status_code
    error = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
    if status == 429:
        return _CallResult(
            error=RATE_LIMITED, retry_after=_retry_after_seconds(exc.response.headers)
        )
    if status >= 500 or error in _UNKNOWN_OUTCOME_ERRORS:
        logger.error(
            "Target %d in %s: Slack responded with HTTP %d %s, so the outcome is unknown",
            target.id,
            target.channel_id,
            status,
            error or "(no error code)",
        )
        return _CallResult(error=UNKNOWN_OUTCOME)
    return _CallResult(error=error or f"http_{status}")


def _backoff_seconds(attempt: int) -> float:
    return float(min(DEFAULT_RETRY_AFTER_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))


def _retry_after_seconds(headers: Mapping[str, Any]) -> float:
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        seconds = float(raw) if raw is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    return max(seconds, 0.0)


# Running an action from a request


@dataclass(frozen=True)
class ActionRequest:
    """An edit, delete or follow-up a person submitted for one broadcast."""

    team_id: str
    user_id: str
    broadcast_id: int
    kind: ActionKind
    text: str = ""
    blocks: Sequence[Mapping[str, Any]] | None = None


def target_renderer(
    *,
    text: str,
    blocks: Sequence[Mapping[str, Any]] | None,
    stored: StoredBroadcast,
    catalog: PropertyCatalog,
) -> TargetRenderer | None:
    """Return the per-channel renderer of an edit or follow-up, or None when it has no variables.

    Variables are filled in from the company values stored with each delivery, the same way the
    broadcast itself was rendered. Raises TemplateError for a variable that does not fit
    `catalog`, and UserFacingError when a channel lacks a value the text needs.
    """
    renderer = MessageRenderer(message_text=text, message_blocks=blocks, catalog=catalog)
    if not renderer.is_personalized:
        return None
    posted = [
        DeliveryTarget(
            channel_id=delivery.channel_id,
            channel_name=delivery.channel_name,
            is_private=delivery.is_private,
            companies=delivery.companies,
        )
        for delivery in stored.record.deliveries
        if delivery.status == DeliveryStatus.SENT
    ]
    missing = find_missing_values(posted, renderer.template)
    if missing is not None:
        # NOTE: only the values the broadcast's own message used were stored, so a variable that
        # the original message did not use has no value here.
        raise UserFacingError(missing.describe())

    def render(target: ActionTarget) -> RenderedMessage:
        return renderer.render_for(target.companies)

    return render


async def run_action(
    request: ActionRequest,
    *,
    actions: ActionLog,
    broadcasts: BroadcastSource,
    poster: AsyncWebClient,
    reader: AsyncWebClient,
    catalog: PropertyCatalog,
    pacer: Pacer | None = None,
    sleep: Sleep = asyncio.sleep,
) -> ActionRecord:
    """Store the requested action, carry it out in every channel and update the report DM.

    Raises UserFacingError (ActionRefused, TemplateError, missing values) before anything is
    stored or called when the action cannot run, for example on a broadcast of another workspace.
    """
    stored = await broadcasts.get_stored_broadcast(request.broadcast_id)
    if stored is None or stored.record.team_id != request.team_id:
        raise ActionRefused("That broadcast was not found, so nothing was changed.")
    render = None
    if request.kind != ActionKind.DELETE:
        render = target_renderer(
            text=request.text, blocks=request.blocks, stored=stored, catalog=catalog
        )
    action = await actions.create_action(
        NewAction(
            broadcast_id=request.broadcast_id,
            kind=request.kind,
            text=request.text,
            blocks=request.blocks,
            requested_by=request.user_id,
        )
    )
    logger.info(
        "Action %d (%s) on broadcast %d by %s: %d channels",
        action.id,
        action.kind,
        action.broadcast_id,
        request.user_id,
        len(action.targets),
    )
    return await continue_action(
        action,
        actions=actions,
        stored=stored,
        poster=poster,
        reader=reader,
        render=render,
        pacer=pacer,
        sleep=sleep,
    )


async def continue_action(
    action: ActionRecord,
    *,
    actions: ActionLog,
    stored: StoredBroadcast,
    poster: AsyncWebClient,
    reader: AsyncWebClient,
    render: TargetRenderer | None,
    pacer: Pacer | None = None,
    sleep: Sleep = asyncio.sleep,
) -> ActionRecord:
    """Carry out a stored action's open targets with the report DM kept current, and return it.

    Used for a new action, and for one that a stopped process left `running`.
    """
    dm = LiveMessage(
        client=reader, user_id=stored.sent_by, channel=stored.report_channel, ts=stored.report_ts
    )
    await show_report(dm, stored=stored, actions=await actions.list_actions(action.broadcast_id))
    sender = ActionSender(client=poster, log=actions, pacer=pacer, sleep=sleep)
    finished = await sender.run(action, render=render)
    await show_report(dm, stored=stored, actions=await actions.list_actions(action.broadcast_id))
    return finished


async def show_report(
    dm: LiveMessage, *, stored: StoredBroadcast, actions: Sequence[ActionRecord]
) -> None:
    """Write the broadcast's report DM with one line per action under the delivery report."""
    unmapped = len({row.get("company_id") for row in stored.unmapped})
    lines = [
        report_text(stored.record, change=AudienceChange(added=0, dropped=0), unmapped=unmapped)
    ]
    lines.extend(format_action_report(action) for action in actions)
    deleted = any(
        action.kind == ActionKind.DELETE
        and action.status in (ActionStatus.DONE, ActionStatus.PARTIALLY_DONE)
        for action in actions
    )
    await dm.show("\n".join(lines), controls=report_controls(stored.record, deleted=deleted))
