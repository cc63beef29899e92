"""Buttons on a broadcast's report DM and Home tab: cancel, resend failed, edit, delete, follow up.

Every click acks at once and continues in a background task through `services.tasks`. Each checks
the person's permission (`broadcast.cancel`, `broadcast.resend`, `broadcast.edit`,
`broadcast.delete`, `broadcast.followup`) and that the broadcast belongs to their workspace.
Edit, delete and follow-up open a modal first, and the domain work runs after its submission in
`segments.followups.run_action`. Failures reach the person as one sentence by direct message.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from db.actions import SqlActionLog
from db.engine import create_session_factory
from db.records import StoredBroadcast
from db.stores import BroadcastNotFound, InvalidStateTransition
from handlers.common import error_text, team_and_user, tell_user
from handlers.views import reports as views
from segments.followups import ActionKind, ActionRecord, ActionRequest, ActionStatus, run_action
from segments.permissions import NOT_ALLOWED
from segments.ports import BroadcastStatus, DeliveryStatus
from segments.properties import PropertyCatalog
from segments.resume import resume_broadcast

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

CANCEL_PERMISSION = "broadcast.cancel"
RESEND_PERMISSION = "broadcast.resend"
ACTION_PERMISSIONS = {
    ActionKind.EDIT: "broadcast.edit",
    ActionKind.DELETE: "broadcast.delete",
    ActionKind.FOLLOWUP: "broadcast.followup",
}
NOT_FOUND = "That broadcast was not found, so nothing was changed."
_RUNNING = (BroadcastStatus.SCHEDULED, BroadcastStatus.RESOLVING, BroadcastStatus.SENDING)
_BUTTON_KINDS = {
    views.REPORT_EDIT_ACTION: ActionKind.EDIT,
    views.REPORT_DELETE_ACTION: ActionKind.DELETE,
    views.REPORT_FOLLOWUP_ACTION: ActionKind.FOLLOWUP,
}


@dataclass(frozen=True)
class ReportClick:
    """One click on a report or Home button, with everything its background work needs."""

    services: Services
    actions: SqlActionLog
    client: AsyncWebClient
    team_id: str
    user_id: str
    trigger_id: str
    broadcast_id: int


def register(app: AsyncApp, services: Services) -> None:
    """Register the report buttons, the Home broadcast menu and the action modals on `app`."""
    actions = SqlActionLog(create_session_factory(services.engine))

    def start(
        work: Callable[[ReportClick], Awaitable[None]],
        body: dict[str, Any],
        client: AsyncWebClient,
        *,
        broadcast_id: int | None,
    ) -> None:
        team_id, user_id = team_and_user(body)
        if broadcast_id is None:
            logger.warning(
                "Ignoring %s by %s: no broadcast id in the payload", work.__name__, user_id
            )
            return
        click = ReportClick(
            services=services,
            actions=actions,
            client=client,
            team_id=team_id,
            user_id=user_id,
            trigger_id=str(body.get("trigger_id") or ""),
            broadcast_id=broadcast_id,
        )
        services.tasks.start(
            _report_failures(work, click),
            name=f"report {work.__name__} of broadcast {broadcast_id}",
        )

    @app.action(views.REPORT_CANCEL_ACTION)
    async def handle_cancel(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_cancel, body, client, broadcast_id=_button_broadcast_id(body))

    @app.action(views.REPORT_RESEND_ACTION)
    async def handle_resend(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_resend, body, client, broadcast_id=_button_broadcast_id(body))

    for action_id, kind in _BUTTON_KINDS.items():
        app.action(action_id)(_modal_opener(start, kind))

    @app.action(views.HOME_BROADCAST_MENU_ACTION)
    async def handle_home_menu(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        choice = _menu_choice(body)
        if choice is None:
            return

        async def open_modal(click: ReportClick) -> None:
            await _open_modal(click, kind=choice.kind)

        start(open_modal, body, client, broadcast_id=choice.broadcast_id)

    @app.view(views.ACTION_VIEW)
    async def handle_submission(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        view = body.get("view") or {}
        metadata = views.read_action_metadata(str(view.get("private_metadata") or ""))
        if metadata is None:
            # The modal that only shows a message has no submit button, so this is not expected.
            await ack()
            return
        team_id, user_id = team_and_user(body)
        submitted = views.ActionText(block=None, text="")
        if metadata.kind != ActionKind.DELETE:
            submitted = views.read_action_text((view.get("state") or {}).get("values") or {})
            errors = views.action_text_errors(submitted)
            if errors:
                await ack(response_action="errors", errors=errors)
                return
        allowed = await services.permissions.check(
            team_id=team_id,
            user_id=user_id,
            action=ACTION_PERMISSIONS[metadata.kind],
            target=f"broadcast:{metadata.broadcast_id}",
        )
        if not allowed:
            await ack(response_action="update", view=views.message_view(NOT_ALLOWED))
            return
        await ack()
        request = ActionRequest(
            team_id=team_id,
            user_id=user_id,
            broadcast_id=metadata.broadcast_id,
            kind=metadata.kind,
            text=submitted.text,
            blocks=[submitted.block] if submitted.block is not None else None,
        )

        async def run(click: ReportClick) -> None:
            await _run_action(click, request)

        run.__name__ = f"{metadata.kind.value}"
        start(run, body, client, broadcast_id=metadata.broadcast_id)


def _modal_opener(
    start: Callable[..., None], kind: ActionKind
) -> Callable[[AsyncAck, dict[str, Any], AsyncWebClient], Awaitable[None]]:
    async def handle_button(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()

        async def open_modal(click: ReportClick) -> None:
            await _open_modal(click, kind=kind)

        open_modal.__name__ = f"open {kind.value} modal"
        start(open_modal, body, client, broadcast_id=_button_broadcast_id(body))

    return handle_button


def _button_broadcast_id(body: dict[str, Any]) -> int | None:
    actions = body.get("actions") or []
    value = str(actions[0].get("value") or "") if actions else ""
    return int(value) if value.isdigit() else None


def _menu_choice(body: dict[str, Any]) -> views.ActionMetadata | None:
    actions = body.get("actions") or []
    option = (actions[0].get("selected_option") or {}) if actions else {}
    return views.read_menu_choice(str(option.get("value") or ""))


async def _report_failures(
    work: Callable[[ReportClick], Awaitable[None]], click: ReportClick
) -> None:
    """Run `work`, and log a failure and send the person its sentence by direct message."""
    try:
        await work(click)
    except Exception as exc:  # noqa: BLE001 - every failure gets a reply; error_text logs unexpected ones
        message = error_text(exc)
        logger.warning(
            "Report %s of broadcast %d failed for user %s: %s",
            work.__name__,
            click.broadcast_id,
            click.user_id,
            message,
        )
        try:
            await tell_user(click.client, user_id=click.user_id, text=message)
        except SlackApiError as dm_error:
            logger.warning(
                "Could not send user %s the failure: %s",
                click.user_id,
                dm_error.response.get("error"),
            )


async def _allowed(click: ReportClick, *, action: str) -> bool:
    allowed = await click.services.permissions.check(
        team_id=click.team_id,
        user_id=click.user_id,
        action=action,
        target=f"broadcast:{click.broadcast_id}",
    )
    if not allowed:
        await tell_user(click.client, user_id=click.user_id, text=NOT_ALLOWED)
    return allowed


async def _stored(click: ReportClick) -> StoredBroadcast | None:
    """Return the broadcast of the click, or None after telling the person it was not found."""
    stored = await click.services.deliveries.get_stored_broadcast(click.broadcast_id)
    # A broadcast of another workspace is treated as missing, so a forged id reaches nothing.
    if stored is not None and stored.record.team_id == click.team_id:
        return stored
    await tell_user(click.client, user_id=click.user_id, text=NOT_FOUND)
    return None


async def _cancel(click: ReportClick) -> None:
    if not await _allowed(click, action=CANCEL_PERMISSION):
        return
    if await _stored(click) is None:
        return
    try:
        # The running sender finds its remaining deliveries cancelled and writes the final report.
        record = await click.services.deliveries.cancel_broadcast(
            click.broadcast_id, user_id=click.user_id
        )
    except InvalidStateTransition as exc:
        logger.info(
            "Cancel of broadcast %d by %s rejected: %s", click.broadcast_id, click.user_id, exc
        )
        await tell_user(
            click.client,
            user_id=click.user_id,
            text="This broadcast has already finished, so there is nothing to cancel. Its report "
            "shows where the message went.",
        )
        return
    cancelled = sum(delivery.status == DeliveryStatus.CANCELLED for delivery in record.deliveries)
    await tell_user(
        click.client,
        user_id=click.user_id,
        text=f"Cancelled. {cancelled:,} channels that had not got the message yet will not get "
        "it. Posts already on their way finish, and the report shows the final counts.",
    )


async def _resend(click: ReportClick) -> None:
    if not await _allowed(click, action=RESEND_PERMISSION):
        return
    if await _stored(click) is None:
        return
    services = click.services
    latest = _latest_message_change(await click.actions.list_actions(click.broadcast_id))
    if latest is not None and latest.kind == ActionKind.DELETE:
        await tell_user(
            click.client,
            user_id=click.user_id,
            text="This broadcast was deleted everywhere, so there is nothing to resend. Send a new "
            "broadcast instead.",
        )
        return
    try:
        await services.deliveries.reopen_failed(click.broadcast_id, user_id=click.user_id)
    except (InvalidStateTransition, BroadcastNotFound) as exc:
        logger.info(
            "Resend of broadcast %d by %s rejected: %s", click.broadcast_id, click.user_id, exc
        )
        await tell_user(
            click.client,
            user_id=click.user_id,
            text="Nothing to resend: the broadcast is still sending, or no channel failed. Its "
            "report shows the current counts.",
        )
        return
    stored = await services.deliveries.get_stored_broadcast(click.broadcast_id)
    assert stored is not None  # Reopened above, and broadcasts are never deleted.
    if latest is not None:
        # Every channel should read the same: a resent channel gets the text of the last edit.
        # NOTE: follow-ups posted before the resend are not replayed in the resent channels.
        stored = dataclasses.replace(stored, message_text=latest.text, message_blocks=latest.blocks)
    mapping, timezone = await services.mapping_for(click.team_id)
    # Resuming posts only the reopened `pending` deliveries and edits the same report DM.
    await resume_broadcast(
        stored,
        log=services.deliveries,
        resolver=services.resolver,
        poster=services.poster,
        reader=services.reader,
        mapping=mapping,
        timezone=timezone,
    )


def _latest_message_change(actions: Sequence[ActionRecord]) -> ActionRecord | None:
    """Return the newest edit or delete that reached at least one channel, or None."""
    changes = [
        action
        for action in actions
        if action.kind in (ActionKind.EDIT, ActionKind.DELETE)
        and action.status in (ActionStatus.DONE, ActionStatus.PARTIALLY_DONE)
    ]
    return changes[-1] if changes else None


async def _open_modal(click: ReportClick, *, kind: ActionKind) -> None:
    if not await _allowed(click, action=ACTION_PERMISSIONS[kind]):
        return
    stored = await _stored(click)
    if stored is None:
        return
    record = stored.record
    posted = sum(
        delivery.status == DeliveryStatus.SENT and bool(delivery.ts)
        for delivery in record.deliveries
    )
    if record.status in _RUNNING:
        view = views.message_view(
            "This broadcast is still sending. Wait for its report, then try again."
        )
    elif posted == 0:
        view = views.message_view(
            "No message of this broadcast was posted, so there is nothing to change."
        )
    elif kind == ActionKind.DELETE:
        view = views.delete_modal(
            broadcast_id=record.id, segment_name=record.segment_name, channel_count=posted
        )
    else:
        initial = (
            views.initial_message(stored.message_text, stored.message_blocks)
            if kind == ActionKind.EDIT
            else None
        )
        view = views.text_modal(
            kind=kind,
            broadcast_id=record.id,
            segment_name=record.segment_name,
            channel_count=posted,
            initial=initial,
        )
    await click.client.views_open(trigger_id=click.trigger_id, view=view)


async def _run_action(click: ReportClick, request: ActionRequest) -> None:
    services = click.services
    # A delete has no text, so it needs no Planhat call for the variable catalog.
    catalog = (
        PropertyCatalog.builtin()
        if request.kind == ActionKind.DELETE
        else await services.resolver.catalog()
    )
    await run_action(
        request,
        actions=click.actions,
        broadcasts=services.deliveries,
        poster=services.poster,
        reader=services.reader,
        catalog=catalog,
    )
