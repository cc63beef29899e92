"""Workflow Builder custom step "Send to segment": the `function_executed` listener.

The step exists only in the app built from `manifest.workflow.yml`, because Slack does not let an
app with custom steps be distributed publicly. Bolt acks the event at once. The listener then reads
the inputs, finds the segment and checks that the step's Sender may send, and hands the broadcast
to `services.tasks`. The broadcast goes through `segments.broadcasts.BroadcastRun` like a confirmed
send from the modal, and the step ends with `complete` (delivered and failed counts) or `fail` (one
sentence with the fix).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.complete.async_complete import AsyncComplete
from slack_bolt.context.fail.async_fail import AsyncFail
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from handlers.common import error_text, segment_not_found
from handlers.send import SEND_ACTION
from handlers.views.send import MAX_MESSAGE_CHARS, rich_text_to_mrkdwn
from segments.broadcasts import BroadcastRequest, BroadcastRun, LiveMessage
from segments.errors import UserFacingError
from segments.ports import BroadcastRecord, DeliveryStatus, SegmentRecord
from segments.rules import rules_from_json

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

# The step's callback id, input names and output names, as declared in manifest.workflow.yml.
CALLBACK_ID = "send_to_segment_step"
SEGMENT_INPUT = "segment"
MESSAGE_INPUT = "message"
USER_INPUT = "user_id"
DELIVERED_OUTPUT = "delivered"
FAILED_OUTPUT = "failed"

# Deliveries counted in the `failed` output: every channel that should have the message but is not
# known to have it. Skipped and cancelled deliveries were left out on purpose and count in neither.
NOT_DELIVERED = frozenset(
    {
        DeliveryStatus.FAILED,
        DeliveryStatus.UNCONFIRMED,
        DeliveryStatus.PENDING,
        DeliveryStatus.SENDING,
    }
)
# Slack's errors for a step token that expired or was revoked. Slack staff state in the
# slackapi/bolt-python issue tracker that the token in `function_executed` expires 15 minutes after
# it is issued or when the step completes, and a large broadcast can take longer than that.
STEP_TOKEN_ERRORS = frozenset({"token_expired", "token_revoked", "invalid_auth"})
# How many execution ids this process remembers to ignore a repeated event.
MAX_REMEMBERED_EXECUTIONS = 10_000
RESEND_WARNING = (
    " Some channels may already have the message, so check the latest broadcast in segment-bot's "
    "App Home before running the workflow again."
)


@dataclass(frozen=True)
class StepInputs:
    """The step's inputs, checked: what to post, to which segment, and on whose behalf."""

    segment_name: str
    user_id: str
    # Slack mrkdwn: the fallback text of a rich text message, or the whole message when no blocks.
    message_text: str
    message_blocks: list[dict[str, Any]] | None


def read_step_inputs(inputs: Mapping[str, Any]) -> StepInputs:
    """Check the inputs of a `function_executed` event; raise UserFacingError naming the fix.

    `message` is declared as `slack#/types/rich_text`, which Slack sends as a `rich_text` block. A
    plain string, or a list of `rich_text` blocks, is accepted too, because a workflow variable
    of another text type may fill it.
    """
    segment_name = str(inputs.get(SEGMENT_INPUT) or "").strip()
    if not segment_name:
        raise UserFacingError(
            "The step has no segment. Edit the step in Workflow Builder and enter the name of a "
            "saved segment, as `/segment list` shows it."
        )
    user_id = str(inputs.get(USER_INPUT) or "").strip()
    if not user_id:
        raise UserFacingError(
            'The step has no Sender. Edit the step in Workflow Builder and set Sender, usually to '
            '"Person who used this workflow".'
        )

    message_text, message_blocks = _read_message(inputs.get(MESSAGE_INPUT))
    if not message_text.strip():
        raise UserFacingError(
            "The step's message is empty. Edit the step in Workflow Builder and write the message."
        )
    if len(message_text) > MAX_MESSAGE_CHARS:
        raise UserFacingError(
            f"The step's message is {len(message_text):,} characters long, but Slack shows at "
            f"most {MAX_MESSAGE_CHARS:,}. Shorten it in Workflow Builder."
        )
    return StepInputs(
        segment_name=segment_name,
        user_id=user_id,
        message_text=message_text,
        message_blocks=message_blocks,
    )


def _read_message(value: Any) -> tuple[str, list[dict[str, Any]] | None]:
    if value is None or isinstance(value, str):
        return value or "", None
    blocks = [value] if isinstance(value, dict) else value
    if isinstance(blocks, list) and blocks and all(_is_rich_text(block) for block in blocks):
        return "\n".join(rich_text_to_mrkdwn(block) for block in blocks), list(blocks)
    raise UserFacingError(
        f"The step's message is not text (Slack sent {type(value).__name__}). Edit the step in "
        "Workflow Builder and set Message to text or to a rich text variable."
    )


def _is_rich_text(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "rich_text"


def step_outputs(record: BroadcastRecord) -> dict[str, int]:
    """Return the step's outputs for a finished broadcast: channels delivered to and not."""
    statuses = [delivery.status for delivery in record.deliveries]
    return {
        DELIVERED_OUTPUT: sum(status == DeliveryStatus.SENT for status in statuses),
        FAILED_OUTPUT: sum(status in NOT_DELIVERED for status in statuses),
    }


def not_allowed_text(user_id: str) -> str:
    return (
        f"The step's Sender ({user_id}) is not allowed to send to segments. Ask a workspace admin "
        "to add them to the segment managers in segment-bot's App Home settings."
    )


class RecentExecutions:
    """Function execution ids this process has started, so a repeated event posts nothing twice.

    Slack sends an event again when it gets no ack in time. Only the newest `max_size` ids are kept.

    NOTE: the ids live in memory, so a repeat that reaches another instance, or arrives after a
    restart, starts a second broadcast.
    """

    def __init__(self, max_size: int = MAX_REMEMBERED_EXECUTIONS) -> None:
        self._max_size = max_size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, execution_id: str) -> bool:
        """Remember `execution_id` and return whether it was new."""
        if execution_id in self._ids:
            return False
        self._ids[execution_id] = None
        while len(self._ids) > self._max_size:
            self._ids.popitem(last=False)
        return True


class StepCompletion:
    """Ends one step execution through Bolt's `complete` or `fail`, which use the step's token.

    When Slack rejects that token as expired or revoked, the call is repeated once with the app's
    bot token. A failure to reach Slack is logged and not raised, because the broadcast it reports
    on is already finished.
    """

    def __init__(
        self,
        *,
        complete: AsyncComplete,
        fail: AsyncFail,
        app_client: AsyncWebClient,
        execution_id: str,
    ) -> None:
        self._complete = complete
        self._fail = fail
        self._app_client = app_client
        self.execution_id = execution_id

    async def succeed(self, outputs: dict[str, int]) -> None:
        async def with_app_token() -> Any:
            return await self._app_client.functions_completeSuccess(
                function_execution_id=self.execution_id, outputs=outputs
            )

        await self._finish(
            "functions.completeSuccess", lambda: self._complete(outputs=outputs), with_app_token
        )

    async def fail(self, error: str) -> None:
        async def with_app_token() -> Any:
            return await self._app_client.functions_completeError(
                function_execution_id=self.execution_id, error=error
            )

        await self._finish("functions.completeError", lambda: self._fail(error=error), with_app_token)

    async def _finish(
        self,
        method: str,
        with_step_token: Callable[[], Awaitable[Any]],
        with_app_token: Callable[[], Awaitable[Any]],
    ) -> None:
        try:
            await with_step_token()
            return
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in STEP_TOKEN_ERRORS:
                logger.error("%s failed for execution %s: %s", method, self.execution_id, error)
                return
            logger.warning(
                "%s with the step token failed for execution %s (%s); retrying with the bot token",
                method,
                self.execution_id,
                error,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error("%s failed for execution %s: %r", method, self.execution_id, exc)
            return

        # NOTE: Slack documents bot tokens as accepted by both methods, but whether it accepts the
        # app's own token for an execution whose step token expired has not been tried on Slack.
        try:
            await with_app_token()
        except SlackApiError as exc:
            logger.error(
                "%s with the bot token failed for execution %s: %s",
                method,
                self.execution_id,
                exc.response.get("error"),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error("%s failed for execution %s: %r", method, self.execution_id, exc)


def register(app: AsyncApp, services: Services) -> None:
    started = RecentExecutions()

    @app.function(CALLBACK_ID)
    async def run_send_to_segment_step(
        body: dict[str, Any],
        context: AsyncBoltContext,
        inputs: dict[str, Any],
        complete: AsyncComplete,
        fail: AsyncFail,
    ) -> None:
        # Bolt has acked the event already (auto-acknowledge), so this runs after the response.
        execution_id = context.function_execution_id or ""
        if not started.first_time(execution_id):
            logger.info("Ignoring a repeated function_executed event for execution %s", execution_id)
            return
        step = StepCompletion(
            complete=complete, fail=fail, app_client=services.reader, execution_id=execution_id
        )
        team_id = context.team_id or str(body.get("team_id") or "")
        try:
            step_inputs = read_step_inputs(inputs or {})
            segment = await _find_segment(services, team_id=team_id, name=step_inputs.segment_name)
            allowed = await services.permissions.check(
                team_id=team_id,
                user_id=step_inputs.user_id,
                action=SEND_ACTION,
                target=f"segment:{segment.id}",
            )
            if not allowed:
                raise UserFacingError(not_allowed_text(step_inputs.user_id))
        except Exception as exc:  # noqa: BLE001 - every execution must end with complete or fail
            logger.info("Workflow step %s in team %s rejected: %r", execution_id, team_id, exc)
            await step.fail(error_text(exc))
            return

        logger.info(
            "Workflow step %s sends segment %d in team %s for user %s",
            execution_id,
            segment.id,
            team_id,
            step_inputs.user_id,
        )
        services.tasks.start(
            _broadcast(services, step=step, team_id=team_id, segment=segment, inputs=step_inputs),
            name=f"workflow-broadcast-{team_id}-{segment.id}",
        )


async def _find_segment(services: Services, *, team_id: str, name: str) -> SegmentRecord:
    segment = await services.segments.get_by_name(team_id=team_id, name=name)
    if segment is not None:
        return segment
    existing = await services.segments.list(team_id=team_id)
    raise segment_not_found(name, [known.name for known in existing])


async def _broadcast(
    services: Services,
    *,
    step: StepCompletion,
    team_id: str,
    segment: SegmentRecord,
    inputs: StepInputs,
) -> None:
    """Send the broadcast with a DM report to the Sender, then end the step with its outcome."""
    dm = LiveMessage(client=services.reader, user_id=inputs.user_id)
    run = BroadcastRun(
        resolver=services.resolver,
        segments=services.segments,
        log=services.deliveries,
        poster=services.poster,
        dm=dm,
    )
    try:
        mapping, timezone = await services.mapping_for(team_id)
        # A step has no confirmation, so the audience when the step starts takes the place of the
        # confirmed one. The DM report then notes only channels that joined or left during the
        # run. This costs a second fresh Planhat listing, as the send modal's confirmation does.
        # BroadcastRun checks personalization variables itself: an unknown variable or a company
        # without a value fails the step with one sentence before anything is posted.
        audience = await services.resolver.resolve(
            rules_from_json(segment.rules), fresh=True, mapping=mapping, timezone=timezone
        )
        request = BroadcastRequest(
            team_id=team_id,
            user_id=inputs.user_id,
            segment_id=segment.id,
            message_text=inputs.message_text,
            message_blocks=inputs.message_blocks,
            confirmed_channel_ids=frozenset(target.channel_id for target in audience.targets),
        )
        record = await run.run(request, mapping=mapping, timezone=timezone)
    except Exception as exc:  # noqa: BLE001 - whatever stops the broadcast must end the step
        text = error_text(exc)
        if run.sending_started:
            text += RESEND_WARNING
        await dm.show(text)
        await step.fail(text)
        return

    outputs = step_outputs(record)
    logger.info(
        "Workflow step %s finished broadcast %d: %d delivered, %d not delivered",
        step.execution_id,
        record.id,
        outputs[DELIVERED_OUTPUT],
        outputs[FAILED_OUTPUT],
    )
    await step.succeed(outputs)
