"""The App Home tab: published on `app_home_opened`, with buttons that preview, send, edit and
delete segments, and a settings modal for people who may manage segments.

The "Scheduled" section's Edit and Cancel buttons change a broadcast scheduled to send later,
through `segments.scheduling`. Buttons ack at once and continue in a background task. Modals open with the button's
trigger_id before any Planhat call, because Slack accepts a trigger_id only for 3 seconds. Home
has no response_url, so failures reach the person in the modal itself or as a direct message.
"""

from __future__ import annotations

import functools

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from db.scheduled import ScheduledBroadcast
from handlers.builder import open_builder
from handlers.commands import preview_segment
from handlers.common import error_text, team_and_user, tell_user
from handlers.send import open_send_modal
from handlers.views.commands import preview_blocks
from handlers.views.home import (
    CHANNEL_FIELD_BLOCK,
    DELETE_VIEW,
    HOME_BROADCASTS,
    HOME_DELETE_ACTION,
    HOME_EDIT_ACTION,
    HOME_NEW_ACTION,
    HOME_PREVIEW_ACTION,
    HOME_SEND_ACTION,
    FREQUENCY_CAP_BLOCK,
    HOME_SETTINGS_ACTION,
    SETTINGS_VIEW,
    TEMPLATE_BLOCK,
    TIMEZONE_BLOCK,
    SettingsForm,
    delete_modal,
    deleted_segment_id,
    error_home_view,
    home_view,
    preview_error_modal,
    preview_loading_modal,
    preview_modal,
    read_settings_form,
    settings_modal,
)
from handlers.views.home import (
    SCHEDULED_CANCEL_ACTION,
    SCHEDULED_CANCEL_VIEW,
    SCHEDULED_EDIT_ACTION,
    SCHEDULED_EDIT_VIEW,
    read_scheduled_edit_form,
    scheduled_broadcast_id,
    scheduled_cancel_modal,
    scheduled_edit_errors,
    scheduled_edit_modal,
)
from handlers.views.send import rich_text_to_mrkdwn, scheduled_instant
from segments.channels import ChannelMapping
from segments.permissions import NOT_ALLOWED
from segments.personalize import MessageRenderer, join_split_variables
from segments.ports import SegmentRecord
from segments.scheduling import cancel_scheduled, edit_scheduled, utc_clock

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

# A company field path as `Company.get` reads it: a top-level Planhat field (`slackChannel`), or
# `custom.` and the name of a custom field, which may contain spaces and dots.
_FIELD_PATH = re.compile(r"(?:custom\.\S.*|[A-Za-z_][A-Za-z0-9_]*)")


def settings_form_errors(form: SettingsForm) -> dict[str, str]:
    """Return an error message per settings input block, or an empty dict when the form is valid.

    Only checks that need no Planhat call are made, so a `custom.` field name is not looked up
    in Planhat.
    """
    errors: dict[str, str] = {}
    if form.channel_field and not _FIELD_PATH.fullmatch(form.channel_field):
        errors[CHANNEL_FIELD_BLOCK] = (
            f'"{form.channel_field}" is not a Planhat field path. Enter a top-level field such as '
            "slackChannel, or custom. and a custom field name, such as custom.Slack Channel, or "
            "leave it empty."
        )

    if "{slug}" not in form.channel_template:
        errors[TEMPLATE_BLOCK] = (
            "The template must contain {slug}, which becomes the company name, "
            "as in customer-{slug}."
        )
    else:
        try:
            ChannelMapping(template=form.channel_template)
        except ValueError as exc:
            errors[TEMPLATE_BLOCK] = str(exc)

    if form.frequency_cap and frequency_cap_days(form) is None:
        errors[FREQUENCY_CAP_BLOCK] = (
            f'"{form.frequency_cap}" is not a whole number of days. Enter 1 or more, or leave it '
            "empty to turn the cap off."
        )

    if not form.timezone:
        errors[TIMEZONE_BLOCK] = 'Enter an IANA time zone name such as "Europe/Berlin" or "UTC".'
    else:
        try:
            ZoneInfo(form.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors[TIMEZONE_BLOCK] = (
                f'Time zone "{form.timezone}" was not found. '
                'Use an IANA name such as "Europe/Berlin".'
            )
    return errors


def frequency_cap_days(form: SettingsForm) -> int | None:
    """Return the form's frequency cap in days, or None when it is empty or not a positive integer."""
    if not form.frequency_cap.isdigit():
        return None
    days = int(form.frequency_cap)
    return days if days >= 1 else None


async def publish_home(
    client: AsyncWebClient, services: Services, *, team_id: str, user_id: str
) -> None:
    """Build the user's Home tab from the database and publish it with `views.publish`.

    When the data cannot be read, a Home tab with the reason is published instead.
    """
    try:
        segments = await services.segments.list(team_id=team_id)
        broadcasts = await services.deliveries.list_broadcasts(team_id, limit=HOME_BROADCASTS)
        can_manage = await services.permissions.can_manage(team_id=team_id, user_id=user_id)
        settings = await services.settings_for(team_id) if can_manage else None
        scheduled = await services.scheduled.list(team_id=team_id)
        view = home_view(
            segments=segments,
            broadcasts=broadcasts,
            can_manage=can_manage,
            settings=settings,
            scheduled=scheduled,
        )
    except Exception as exc:  # noqa: BLE001
        # Home shows any failure, and error_text logs the unexpected ones with their traceback.
        message = error_text(exc)
        logger.warning(
            "Building App Home failed for user %s in team %s: %s", user_id, team_id, message
        )
        view = error_home_view(message)
    await client.views_publish(user_id=user_id, view=view)
    logger.info("Published App Home for user %s in team %s", user_id, team_id)


@dataclass(frozen=True)
class HomeRequest:
    """One click or submission on the Home tab or its modals, with the client that replies."""

    services: Services
    client: AsyncWebClient
    team_id: str
    user_id: str
    trigger_id: str
    segment_id: int | None
    # The scheduled broadcast an Edit or Cancel button or modal is for.
    broadcast_id: int | None = None


def _start_work(
    services: Services,
    work: Callable[[HomeRequest], Awaitable[None]],
    body: dict[str, Any],
    client: AsyncWebClient,
    *,
    segment_id: int | None = None,
    broadcast_id: int | None = None,
) -> None:
    """Run `work` for one Home click in a background task that reports failures to the person."""
    team_id, user_id = team_and_user(body)
    request = HomeRequest(
        services=services,
        client=client,
        team_id=team_id,
        user_id=user_id,
        trigger_id=str(body.get("trigger_id") or ""),
        segment_id=segment_id,
        broadcast_id=broadcast_id,
    )
    services.tasks.start(
        _report_failures(work, request), name=f"home {work.__name__} by {user_id} in {team_id}"
    )


def register(app: AsyncApp, services: Services) -> None:
    """Register the App Home event, its buttons and its modals on `app`."""

    start = functools.partial(_start_work, services)

    @app.event("app_home_opened")
    async def handle_home_opened(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        # Opening the Messages tab sends the same event, and that tab needs no publishing.
        if event.get("tab") != "home":
            return
        team_id = str(body.get("team_id") or "")
        await publish_home(client, services, team_id=team_id, user_id=str(event.get("user") or ""))

    @app.action(HOME_NEW_ACTION)
    async def handle_new(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_open_builder, body, client, segment_id=None)

    @app.action(HOME_EDIT_ACTION)
    async def handle_edit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_open_builder, body, client, segment_id=_action_segment_id(body))

    @app.action(HOME_PREVIEW_ACTION)
    async def handle_preview(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_preview, body, client, segment_id=_action_segment_id(body))

    @app.action(HOME_SEND_ACTION)
    async def handle_send(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_open_send, body, client, segment_id=_action_segment_id(body))

    @app.action(HOME_DELETE_ACTION)
    async def handle_delete(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_open_delete, body, client, segment_id=_action_segment_id(body))

    @app.view(DELETE_VIEW)
    async def handle_delete_submission(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        segment_id = deleted_segment_id(str(body.get("view", {}).get("private_metadata") or ""))
        start(_delete, body, client, segment_id=segment_id)

    @app.action(HOME_SETTINGS_ACTION)
    async def handle_settings(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        start(_open_settings, body, client, segment_id=None)

    @app.view(SETTINGS_VIEW)
    async def handle_settings_submission(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        form = read_settings_form(body.get("view", {}).get("state", {}).get("values", {}))
        errors = settings_form_errors(form)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()

        async def save(request: HomeRequest) -> None:
            await _save_settings(request, form)

        start(save, body, client, segment_id=None)

    _register_scheduled(app, services)


def _action_segment_id(body: dict[str, Any]) -> int | None:
    actions = body.get("actions") or []
    value = str(actions[0].get("value") or "") if actions else ""
    return int(value) if value.isdigit() else None


async def _report_failures(
    work: Callable[[HomeRequest], Awaitable[None]], request: HomeRequest
) -> None:
    """Run `work`, and log a failure and send the person its sentence by direct message."""
    try:
        await work(request)
    except Exception as exc:  # noqa: BLE001
        # Any failure gets a reply, and error_text logs the unexpected ones with their traceback.
        message = error_text(exc)
        logger.warning(
            "App Home %s failed for user %s in team %s: %s",
            work.__name__,
            request.user_id,
            request.team_id,
            message,
        )
        try:
            await tell_user(request.client, user_id=request.user_id, text=message)
        except SlackApiError as dm_error:
            logger.warning(
                "Could not send user %s the failure: %s",
                request.user_id,
                dm_error.response.get("error"),
            )


async def _allowed(request: HomeRequest, *, action: str, target: str | None) -> bool:
    """Check the permission for `action`. When it is denied, tell the person and return False."""
    allowed = await request.services.permissions.check(
        team_id=request.team_id, user_id=request.user_id, action=action, target=target
    )
    if not allowed:
        await tell_user(request.client, user_id=request.user_id, text=NOT_ALLOWED)
    return allowed


async def _segment(request: HomeRequest) -> SegmentRecord | None:
    """Return the segment a Home button is for, or None after telling the person it is gone.

    Home is published again then, so it no longer shows the deleted segment.
    """
    services = request.services
    record = (
        await services.segments.get(request.segment_id) if request.segment_id is not None else None
    )
    # A segment of another workspace is treated as missing, so a forged id reaches nothing.
    if record is not None and record.team_id == request.team_id:
        return record
    await tell_user(
        request.client,
        user_id=request.user_id,
        text="That segment was deleted meanwhile. Home now shows the current list.",
    )
    await publish_home(request.client, services, team_id=request.team_id, user_id=request.user_id)
    return None


async def _open_builder(request: HomeRequest) -> None:
    if request.segment_id is None:
        if not await _allowed(request, action="segment.create", target=None):
            return
        await open_builder(
            client=request.client,
            services=request.services,
            trigger_id=request.trigger_id,
            team_id=request.team_id,
            user_id=request.user_id,
        )
        return

    if not await _allowed(request, action="segment.update", target=f"segment:{request.segment_id}"):
        return
    record = await _segment(request)
    if record is None:
        return
    await open_builder(
        client=request.client,
        services=request.services,
        trigger_id=request.trigger_id,
        team_id=request.team_id,
        user_id=request.user_id,
        segment=record,
    )


async def _open_send(request: HomeRequest) -> None:
    if not await _allowed(request, action="broadcast.send", target=f"segment:{request.segment_id}"):
        return
    record = await _segment(request)
    if record is None:
        return
    await open_send_modal(
        client=request.client,
        services=request.services,
        trigger_id=request.trigger_id,
        team_id=request.team_id,
        user_id=request.user_id,
        segment_name=record.name,
    )


async def _preview(request: HomeRequest) -> None:
    record = await _segment(request)
    if record is None:
        return
    opened = await request.client.views_open(
        trigger_id=request.trigger_id, view=preview_loading_modal(record.name)
    )
    view_id = str(opened["view"]["id"])

    try:
        audience = await preview_segment(request.services, team_id=request.team_id, record=record)
        view = preview_modal(preview_blocks(audience=audience, segment_name=record.name))
    except Exception as exc:  # noqa: BLE001
        # The modal shows any failure, and error_text logs the unexpected ones with their traceback.
        message = error_text(exc)
        logger.warning(
            "Preview of segment %s failed for user %s in team %s: %s",
            record.id,
            request.user_id,
            request.team_id,
            message,
        )
        view = preview_error_modal(message)

    try:
        await request.client.views_update(view_id=view_id, view=view)
    except SlackApiError as exc:
        # The person may have closed the modal while Planhat was read.
        logger.info(
            "Could not update preview modal %s for user %s: %s",
            view_id,
            request.user_id,
            exc.response.get("error"),
        )


async def _open_delete(request: HomeRequest) -> None:
    if not await _allowed(request, action="segment.delete", target=f"segment:{request.segment_id}"):
        return
    record = await _segment(request)
    if record is None:
        return
    await request.client.views_open(trigger_id=request.trigger_id, view=delete_modal(record))


async def _delete(request: HomeRequest) -> None:
    # Checked again on submit, because the person's rights may have changed since the modal opened.
    if not await _allowed(request, action="segment.delete", target=f"segment:{request.segment_id}"):
        return
    services = request.services
    record = (
        await services.segments.get(request.segment_id) if request.segment_id is not None else None
    )
    if record is not None and record.team_id == request.team_id:
        # The store writes the `segment.deleted` audit entry in the same transaction.
        await services.segments.delete(record.id, user_id=request.user_id)
    await publish_home(request.client, services, team_id=request.team_id, user_id=request.user_id)


async def _open_settings(request: HomeRequest) -> None:
    if not await _allowed(request, action="settings.update", target=f"workspace:{request.team_id}"):
        return
    settings = await request.services.settings_for(request.team_id)
    await request.client.views_open(trigger_id=request.trigger_id, view=settings_modal(settings))


async def _save_settings(request: HomeRequest, form: SettingsForm) -> None:
    # Checked again on submit, because the person's rights may have changed since the modal opened.
    if not await _allowed(request, action="settings.update", target=f"workspace:{request.team_id}"):
        return
    try:
        # The store audits the changed fields in the same transaction.
        await request.services.workspace_settings.update(
            request.team_id,
            channel_field=form.channel_field or None,
            channel_template=form.channel_template,
            timezone=form.timezone,
            managers=form.managers,
            user_id=request.user_id,
            frequency_cap_days=frequency_cap_days(form),
        )
    except ValueError as exc:
        # The store checks the values again, and its message names the value to fix.
        logger.warning(
            "Saving settings failed for user %s in team %s: %s",
            request.user_id,
            request.team_id,
            exc,
        )
        await tell_user(request.client, user_id=request.user_id, text=str(exc))
        return
    await publish_home(
        request.client, request.services, team_id=request.team_id, user_id=request.user_id
    )


# Scheduled broadcasts ---------------------------------------------------------------------------

NO_LONGER_SCHEDULED = (
    "That broadcast is no longer scheduled: it already started sending or was cancelled. "
    "Home now shows the current list."
)


def _register_scheduled(app: AsyncApp, services: Services) -> None:
    """Register the Edit and Cancel buttons of scheduled broadcasts and their modals."""

    start = functools.partial(_start_work, services)

    @app.action(SCHEDULED_EDIT_ACTION)
    async def handle_scheduled_edit(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        start(_open_scheduled_edit, body, client, broadcast_id=_action_broadcast_id(body))

    @app.action(SCHEDULED_CANCEL_ACTION)
    async def handle_scheduled_cancel(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        start(_open_scheduled_cancel, body, client, broadcast_id=_action_broadcast_id(body))

    @app.view(SCHEDULED_EDIT_VIEW)
    async def handle_scheduled_edit_submission(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        view = body.get("view", {})
        form = read_scheduled_edit_form(view.get("state", {}).get("values", {}))
        message = join_split_variables(form.message) if form.message else None
        message_text = rich_text_to_mrkdwn(message) if message else ""
        errors = scheduled_edit_errors(form, message_text=message_text, now=utc_clock())
        if errors or message is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        edit = _ScheduledEdit(
            scheduled_at=scheduled_instant(form.schedule),
            timezone=form.schedule.timezone,
            message=message,
            message_text=message_text,
        )

        async def save_scheduled_edit(request: HomeRequest) -> None:
            await _save_scheduled_edit(request, edit)

        broadcast_id = scheduled_broadcast_id(str(view.get("private_metadata") or ""))
        start(save_scheduled_edit, body, client, broadcast_id=broadcast_id)

    @app.view(SCHEDULED_CANCEL_VIEW)
    async def handle_scheduled_cancel_submission(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        broadcast_id = scheduled_broadcast_id(
            str(body.get("view", {}).get("private_metadata") or "")
        )
        start(_cancel_scheduled, body, client, broadcast_id=broadcast_id)


@dataclass(frozen=True)
class _ScheduledEdit:
    """A validated edit: the new UTC send time, its zone, and the message."""

    scheduled_at: datetime
    timezone: str
    message: dict[str, Any]
    message_text: str


async def _scheduled(request: HomeRequest) -> ScheduledBroadcast | None:
    """Return the scheduled broadcast a button or modal is for, or None after telling the person.

    Home is published again then, so it no longer lists a broadcast that was sent or cancelled.
    """
    services = request.services
    item = (
        await services.scheduled.get(request.broadcast_id)
        if request.broadcast_id is not None
        else None
    )
    # A broadcast of another workspace is treated as missing, so a forged id reaches nothing.
    if item is not None and item.team_id == request.team_id:
        return item
    logger.info(
        "Scheduled broadcast %s is not scheduled in team %s, so user %s was told",
        request.broadcast_id,
        request.team_id,
        request.user_id,
    )
    await tell_user(request.client, user_id=request.user_id, text=NO_LONGER_SCHEDULED)
    await publish_home(request.client, services, team_id=request.team_id, user_id=request.user_id)
    return None


def _action_broadcast_id(body: dict[str, Any]) -> int | None:
    # Scheduled broadcast buttons carry the broadcast id as their value, as segment buttons do.
    return _action_segment_id(body)


def _broadcast_target(request: HomeRequest) -> str:
    return f"broadcast:{request.broadcast_id}"


async def _open_scheduled_edit(request: HomeRequest) -> None:
    target = _broadcast_target(request)
    if not await _allowed(request, action="broadcast.schedule.edit", target=target):
        return
    item = await _scheduled(request)
    if item is None:
        return
    settings = await request.services.settings_for(request.team_id)
    view = scheduled_edit_modal(item, workspace_timezone=settings.timezone)
    await request.client.views_open(trigger_id=request.trigger_id, view=view)


async def _save_scheduled_edit(request: HomeRequest, edit: _ScheduledEdit) -> None:
    # Checked again on submit, because the person's rights may have changed since the modal opened.
    target = _broadcast_target(request)
    if not await _allowed(request, action="broadcast.schedule.edit", target=target):
        return
    item = await _scheduled(request)
    if item is None:
        return
    services = request.services
    # Raises TemplateError, which the person gets by DM, for a variable Planhat does not have.
    MessageRenderer(
        message_text=edit.message_text,
        message_blocks=[edit.message],
        catalog=await services.resolver.catalog(),
    )
    await edit_scheduled(
        services.scheduled,
        item.id,
        scheduled_at=edit.scheduled_at,
        timezone=edit.timezone,
        message_text=edit.message_text,
        message_blocks=[edit.message],
        user_id=request.user_id,
        now=utc_clock(),
    )
    services.wake_scheduler()
    await publish_home(request.client, services, team_id=request.team_id, user_id=request.user_id)


async def _open_scheduled_cancel(request: HomeRequest) -> None:
    target = _broadcast_target(request)
    if not await _allowed(request, action="broadcast.schedule.cancel", target=target):
        return
    item = await _scheduled(request)
    if item is None:
        return
    await request.client.views_open(
        trigger_id=request.trigger_id, view=scheduled_cancel_modal(item)
    )


async def _cancel_scheduled(request: HomeRequest) -> None:
    # Checked again on submit, because the person's rights may have changed since the modal opened.
    target = _broadcast_target(request)
    if not await _allowed(request, action="broadcast.schedule.cancel", target=target):
        return
    item = await _scheduled(request)
    if item is None:
        return
    await cancel_scheduled(request.services.scheduled, item.id, user_id=request.user_id)
    await publish_home(
        request.client, request.services, team_id=request.team_id, user_id=request.user_id
    )
