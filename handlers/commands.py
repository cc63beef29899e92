"""The `/segment` slash command and the buttons of its delete confirmation.

Help and unknown subcommands get their reply in the ack response. Every other subcommand acks at
once and continues in a background task: `new`, `edit` and `send` open a modal with the command's
trigger_id, and `list`, `preview` and `delete` reply through the command's response_url. A
failure reaches the person as one sentence with the fix (`error_text`), never as silence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from handlers.builder import open_builder
from handlers.common import error_text, segment_not_found, team_and_user
from handlers.send import open_send_modal
from handlers.views.commands import (
    COMMAND,
    DELETE_CANCEL_ACTION,
    DELETE_CONFIRM_ACTION,
    SUBCOMMAND_NAMES,
    already_deleted_text,
    delete_cancelled_text,
    delete_confirmation_blocks,
    delete_confirmation_text,
    deleted_text,
    help_blocks,
    help_text,
    missing_argument_text,
    preview_blocks,
    preview_text,
    segment_list_blocks,
    segment_list_text,
    unknown_subcommand_text,
)
from segments.audience import Audience
from segments.errors import UserFacingError
from segments.permissions import NOT_ALLOWED
from segments.ports import SegmentRecord
from segments.rules import RuleError, rules_from_json

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

# Quote pairs people put around a segment name with spaces. Slack clients may turn straight
# quotes into curly ones as they are typed.
_QUOTE_PAIRS = (('"', '"'), ("“", "”"), ("'", "'"), ("‘", "’"))


@dataclass(frozen=True)
class CommandRequest:
    """One `/segment` invocation, with the clients that reply to it."""

    services: Services
    client: AsyncWebClient
    respond: AsyncRespond
    team_id: str
    user_id: str
    channel_id: str
    trigger_id: str
    subcommand: str
    argument: str


def split_command(text: str) -> tuple[str, str]:
    """Split command text into the lower-case subcommand and the rest, both stripped."""
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    argument = parts[1].strip() if len(parts) > 1 else ""
    return parts[0].casefold(), argument


def unquote_name(text: str) -> str:
    """Remove one pair of quotes around a segment name, as in `/segment edit "At risk"`."""
    stripped = text.strip()
    for opening, closing in _QUOTE_PAIRS:
        if len(stripped) >= 2 and stripped.startswith(opening) and stripped.endswith(closing):
            return stripped[1:-1].strip()
    return stripped


async def find_segment(services: Services, *, team_id: str, name: str) -> SegmentRecord:
    """Return the workspace's segment named `name` (ignoring case), or raise UserFacingError."""
    record = await services.segments.get_by_name(team_id=team_id, name=name)
    if record is not None:
        return record
    existing = [segment.name for segment in await services.segments.list(team_id=team_id)]
    raise segment_not_found(name, existing)


async def preview_segment(services: Services, *, team_id: str, record: SegmentRecord) -> Audience:
    """Resolve a saved segment's audience with the workspace's channel mapping and time zone."""
    mapping, timezone = await services.mapping_for(team_id)
    rules = rules_from_json(record.rules)
    return await services.resolver.resolve(rules, mapping=mapping, timezone=timezone)


async def preview_name_or_rules(
    services: Services, *, team_id: str, text: str
) -> tuple[str | None, Audience]:
    """Resolve the audience of a saved segment named `text`, or else of `text` read as rules.

    Returns the segment's name (None for rule text) and the audience. Raises UserFacingError
    naming both failures when `text` is neither a saved segment nor valid rule text.
    """
    name = unquote_name(text)
    record = await services.segments.get_by_name(team_id=team_id, name=name)
    if record is not None:
        return record.name, await preview_segment(services, team_id=team_id, record=record)

    try:
        rules, catalog = await services.resolver.parse(text)
    except RuleError as exc:
        existing = [segment.name for segment in await services.segments.list(team_id=team_id)]
        not_found = segment_not_found(name, existing)
        raise UserFacingError(f"{not_found} Read as rules, it is not valid either: {exc}") from exc
    mapping, timezone = await services.mapping_for(team_id)
    audience = await services.resolver.resolve(
        rules, catalog=catalog, mapping=mapping, timezone=timezone
    )
    return None, audience


def register(app: AsyncApp, services: Services) -> None:
    """Register `/segment` and the delete confirmation buttons on `app`."""

    @app.command(COMMAND)
    async def handle_segment_command(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        subcommand, argument = split_command(str(body.get("text") or ""))
        if subcommand in ("", "help"):
            await ack(text=help_text(), blocks=help_blocks())
            return
        if subcommand not in SUBCOMMAND_NAMES:
            notice = unknown_subcommand_text(subcommand)
            await ack(text=notice, blocks=help_blocks(notice=notice))
            return
        if subcommand == "preview" and argument:
            # Previews fetch every company from Planhat, which can take several seconds.
            await ack(text="Working on the preview…")
        else:
            await ack()

        team_id, user_id = team_and_user(body)
        request = CommandRequest(
            services=services,
            client=client,
            respond=respond,
            team_id=team_id,
            user_id=user_id,
            channel_id=str(body.get("channel_id") or ""),
            trigger_id=str(body.get("trigger_id") or ""),
            subcommand=subcommand,
            argument=argument,
        )
        services.tasks.start(
            _run(request), name=f"{COMMAND} {subcommand} by {user_id} in {team_id}"
        )

    @app.action(DELETE_CONFIRM_ACTION)
    async def confirm_delete(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        team_id, user_id = team_and_user(body)
        segment_id = _action_segment_id(body)
        try:
            await _delete_segment(
                services, respond, team_id=team_id, user_id=user_id, segment_id=segment_id
            )
        except Exception as exc:  # noqa: BLE001
            # Any failure gets a reply, and error_text logs the unexpected ones with their traceback.
            message = error_text(exc)
            logger.warning(
                "Deleting segment %s failed for user %s in team %s: %s",
                segment_id,
                user_id,
                team_id,
                message,
            )
            await respond(text=message, replace_original=True)

    @app.action(DELETE_CANCEL_ACTION)
    async def cancel_delete(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        team_id, _ = team_and_user(body)
        segment_id = _action_segment_id(body)
        record = await services.segments.get(segment_id) if segment_id is not None else None
        if record is None or record.team_id != team_id:
            await respond(text="Nothing was deleted.", replace_original=True)
            return
        await respond(text=delete_cancelled_text(record.name), replace_original=True)


_Handler = Callable[[CommandRequest], Awaitable[None]]


async def _run(request: CommandRequest) -> None:
    handler = _HANDLERS[request.subcommand]
    try:
        await handler(request)
    except Exception as exc:  # noqa: BLE001
        # Any failure gets a reply, and error_text logs the unexpected ones with their traceback.
        message = error_text(exc)
        logger.warning(
            "%s %s failed for user %s in team %s: %s",
            COMMAND,
            request.subcommand,
            request.user_id,
            request.team_id,
            message,
        )
        await request.respond(text=message)


async def _allowed(request: CommandRequest, *, action: str, target: str | None = None) -> bool:
    """Check the permission for `action`. When it is denied, tell the person and return False."""
    allowed = await request.services.permissions.check(
        team_id=request.team_id, user_id=request.user_id, action=action, target=target
    )
    if not allowed:
        await request.respond(text=NOT_ALLOWED)
    return allowed


async def _new(request: CommandRequest) -> None:
    if not await _allowed(request, action="segment.create"):
        return
    await open_builder(
        client=request.client,
        services=request.services,
        trigger_id=request.trigger_id,
        team_id=request.team_id,
        user_id=request.user_id,
        channel_id=request.channel_id,
        rules_text=request.argument or None,
    )


async def _list(request: CommandRequest) -> None:
    segments = await request.services.segments.list(team_id=request.team_id)
    await request.respond(text=segment_list_text(segments), blocks=segment_list_blocks(segments))


async def _preview(request: CommandRequest) -> None:
    if not request.argument:
        await request.respond(text=missing_argument_text("preview"))
        return
    name, audience = await preview_name_or_rules(
        request.services, team_id=request.team_id, text=request.argument
    )
    await request.respond(
        text=preview_text(audience=audience, segment_name=name),
        blocks=preview_blocks(audience=audience, segment_name=name),
    )


async def _edit(request: CommandRequest) -> None:
    if not request.argument:
        await request.respond(text=missing_argument_text("edit"))
        return
    name = unquote_name(request.argument)
    if not await _allowed(request, action="segment.update", target=name):
        return
    record = await find_segment(request.services, team_id=request.team_id, name=name)
    await open_builder(
        client=request.client,
        services=request.services,
        trigger_id=request.trigger_id,
        team_id=request.team_id,
        user_id=request.user_id,
        channel_id=request.channel_id,
        segment=record,
    )


async def _delete(request: CommandRequest) -> None:
    if not request.argument:
        await request.respond(text=missing_argument_text("delete"))
        return
    name = unquote_name(request.argument)
    if not await _allowed(request, action="segment.delete", target=name):
        return
    record = await find_segment(request.services, team_id=request.team_id, name=name)
    await request.respond(
        text=delete_confirmation_text(record), blocks=delete_confirmation_blocks(record)
    )


async def _send(request: CommandRequest) -> None:
    # Without a name the send modal opens with no segment chosen, and the person picks one there.
    name = unquote_name(request.argument) or None
    if not await _allowed(request, action="broadcast.send", target=name):
        return
    await open_send_modal(
        client=request.client,
        services=request.services,
        trigger_id=request.trigger_id,
        team_id=request.team_id,
        user_id=request.user_id,
        channel_id=request.channel_id,
        segment_name=name,
    )


_HANDLERS: dict[str, _Handler] = {
    "new": _new,
    "list": _list,
    "preview": _preview,
    "edit": _edit,
    "delete": _delete,
    "send": _send,
}


def _action_segment_id(body: dict[str, Any]) -> int | None:
    actions = body.get("actions") or []
    value = str(actions[0].get("value") or "") if actions else ""
    return int(value) if value.isdigit() else None


async def _delete_segment(
    services: Services, respond: AsyncRespond, *, team_id: str, user_id: str, segment_id: int | None
) -> None:
    """Delete after the confirmation, checking the permission again because time has passed."""
    target = f"segment:{segment_id}"
    if not await services.permissions.check(
        team_id=team_id, user_id=user_id, action="segment.delete", target=target
    ):
        await respond(text=NOT_ALLOWED, replace_original=True)
        return
    record = await services.segments.get(segment_id) if segment_id is not None else None
    # A segment of another workspace is treated as missing, so a forged id deletes nothing.
    if record is None or record.team_id != team_id:
        await respond(text=already_deleted_text(), replace_original=True)
        return
    # The store writes the `segment.deleted` audit entry in the same transaction.
    deleted = await services.segments.delete(record.id, user_id=user_id)
    text = deleted_text(record.name) if deleted else already_deleted_text()
    await respond(text=text, replace_original=True)
