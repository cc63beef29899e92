"""Send to segment: the global and message shortcuts, the send modal, confirmation and the send.

Flow: a shortcut or `/segment send NAME` opens the send modal. Its submission is checked inline,
then the modal turns into "Checking…" and, after the ack, into a confirmation that lists the
channels of a fresh audience (and DMs a test when asked). Confirming closes the modal and starts
`segments.broadcasts.BroadcastRun` in the background, which resolves the segment again and
reports progress in a DM to the sender. With "Send later", confirming stores a scheduled broadcast
instead, wakes the scheduler and DMs the sender the time. The scheduler sends it at that time.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from db.scheduled import NewScheduledBroadcast
from handlers.common import error_text, segment_not_found, team_and_user, tell_user
from handlers.views import send as views
from segments.broadcasts import BroadcastRequest, BroadcastRun, LiveMessage
from segments.permissions import NOT_ALLOWED
from segments.personalize import (
    MessageRenderer,
    TemplateError,
    find_missing_values,
    join_split_variables,
    sample_company,
    sample_target,
)
from segments.ports import SegmentRecord
from segments.rules import rules_from_json
from segments.scheduling import (
    PastSendTime,
    check_future,
    format_send_time,
    schedule_broadcast,
    utc_clock,
)
from segments.slack_text import escape_mrkdwn

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

SEND_ACTION = "broadcast.send"
# How long a confirmation stays valid, and how many may wait at once in this process.
DRAFT_SECONDS = 60 * 60.0
MAX_DRAFTS = 1000
# Slack accepts a trigger id once, within 3 seconds of the click.
_TRIGGER_ERRORS = frozenset({"expired_trigger_id", "exchanged_trigger_id", "invalid_trigger_id"})
TRIGGER_EXPIRED = (
    "The send window could not open because Slack allows 3 seconds to open it and that time "
    "ran out. Run the shortcut or `/segment send` again."
)


@dataclass
class Draft:
    """A submitted send modal waiting for confirmation. The message may be too big for metadata."""

    team_id: str
    user_id: str
    segment_id: int
    segment_name: str
    message: dict[str, Any]
    message_text: str
    created_at: float
    # Channels shown in the confirmation, set once the audience is resolved.
    channel_ids: frozenset[str] | None = None
    # The send-later fields as chosen and their UTC instant. Both are None to send now.
    schedule: views.ScheduleFields | None = None
    send_at: datetime | None = None


@dataclass
class DraftStore:
    """Drafts by the key stored in the confirmation view's `private_metadata`.

    NOTE: drafts live in this process only, so a restart, or a confirmation that reaches another
    instance, finds none and the sender is asked to start again.
    """

    max_age_seconds: float = DRAFT_SECONDS
    max_size: int = MAX_DRAFTS
    _drafts: OrderedDict[str, Draft] = field(default_factory=OrderedDict)

    def add(self, draft: Draft) -> str:
        self._expire()
        key = uuid.uuid4().hex
        self._drafts[key] = draft
        while len(self._drafts) > self.max_size:
            self._drafts.popitem(last=False)
        return key

    def get(self, key: str) -> Draft | None:
        self._expire()
        return self._drafts.get(key)

    def pop(self, key: str) -> Draft | None:
        self._expire()
        return self._drafts.pop(key, None)

    def _expire(self) -> None:
        oldest_allowed = time.monotonic() - self.max_age_seconds
        while self._drafts:
            key, draft = next(iter(self._drafts.items()))
            if draft.created_at >= oldest_allowed:
                return
            del self._drafts[key]


async def open_send_modal(
    *,
    client: AsyncWebClient,
    services: Services,
    trigger_id: str,
    team_id: str,
    user_id: str,
    channel_id: str | None = None,
    segment_name: str | None = None,
    message: dict[str, Any] | None = None,
) -> None:
    """Open the send modal, with `segment_name` pre-selected and `message` pre-filled when given.

    Reads only the database before `views.open`, so the trigger id is used well within 3 s. An
    unknown `segment_name` opens the modal with a line saying so. A failure to open is sent
    to the user as an ephemeral message in `channel_id`, or by DM.
    """
    segments = await services.segments.list(team_id=team_id)
    selected: SegmentRecord | None = None
    notice: str | None = None
    if segment_name:
        selected = _find_by_name(segments, segment_name)
        if selected is None:
            notice = escape_mrkdwn(
                str(segment_not_found(segment_name, [segment.name for segment in segments]))
            )
    initial = views.message_to_rich_text(message) if message else None
    saved = await services.settings_for(team_id)
    view = views.send_modal(
        segments=segments,
        selected=selected,
        notice=notice,
        initial_message=initial,
        message_notice=views.message_extras_notice(message) if message else None,
        timezone=saved.timezone,
    )
    try:
        await client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        error = exc.response.get("error")
        logger.warning("views.open of the send modal failed for user %s: %s", user_id, error)
        text = TRIGGER_EXPIRED if error in _TRIGGER_ERRORS else error_text(exc)
        await tell_user(client, user_id=user_id, channel_id=channel_id, text=text)
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("views.open of the send modal failed for user %s: %r", user_id, exc)
        await tell_user(client, user_id=user_id, channel_id=channel_id, text=error_text(exc))


def register(app: AsyncApp, services: Services) -> None:
    drafts = DraftStore()

    @app.shortcut(views.GLOBAL_SHORTCUT_CALLBACK)
    async def open_from_global_shortcut(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        team_id, user_id = team_and_user(body)
        await open_send_modal(
            client=client,
            services=services,
            trigger_id=body["trigger_id"],
            team_id=team_id,
            user_id=user_id,
        )

    @app.shortcut(views.MESSAGE_SHORTCUT_CALLBACK)
    async def open_from_message_shortcut(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        team_id, user_id = team_and_user(body)
        channel = body.get("channel") or {}
        await open_send_modal(
            client=client,
            services=services,
            trigger_id=body["trigger_id"],
            team_id=team_id,
            user_id=user_id,
            channel_id=channel.get("id"),
            message=body.get("message") or {},
        )

    @app.options(views.SEGMENT_ACTION)
    async def suggest_segments(ack: AsyncAck, body: dict[str, Any]) -> None:
        team_id, _ = team_and_user(body)
        segments = await services.segments.list(team_id=team_id)
        await ack(options=views.segment_options(segments, str(body.get("value") or "")))

    @app.view(views.SEND_CALLBACK)
    async def submit_send_modal(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        team_id, user_id = team_and_user(body)
        form = views.read_send_form(body["view"]["state"]["values"])
        message = join_split_variables(form.message) if form.message else None
        message_text = views.rich_text_to_mrkdwn(message) if message else ""
        errors = views.send_form_errors(form, message_text=message_text)
        if errors or form.segment_id is None or message is None:
            await ack(response_action="errors", errors=errors)
            return
        segment = await services.segments.get(form.segment_id)
        if segment is None or segment.team_id != team_id:
            await ack(
                response_action="errors",
                errors={views.SEGMENT_BLOCK: "This segment was deleted. Choose another one."},
            )
            return
        allowed = await services.permissions.check(
            team_id=team_id, user_id=user_id, action=SEND_ACTION, target=f"segment:{segment.id}"
        )
        if not allowed:
            await ack(response_action="errors", errors={views.SEGMENT_BLOCK: NOT_ALLOWED})
            return

        draft = Draft(
            team_id=team_id,
            user_id=user_id,
            segment_id=segment.id,
            segment_name=segment.name,
            message=message,
            message_text=message_text,
            created_at=time.monotonic(),
            schedule=form.schedule,
            send_at=views.scheduled_instant(form.schedule) if form.schedule else None,
        )
        key = drafts.add(draft)
        await ack(response_action="update", view=views.checking_view(segment.name))
        await _show_confirmation(
            client=client,
            services=services,
            view_id=body["view"]["id"],
            draft=draft,
            key=key,
            test_first=form.test_first,
        )

    @app.view(views.CONFIRM_CALLBACK)
    async def confirm_send(ack: AsyncAck, body: dict[str, Any]) -> None:
        team_id, user_id = team_and_user(body)
        draft = drafts.pop(str(body["view"].get("private_metadata") or ""))
        if draft is None or draft.user_id != user_id or draft.channel_ids is None:
            await ack(response_action="update", view=views.message_view(views.EXPIRED))
            return
        allowed = await services.permissions.check(
            team_id=team_id,
            user_id=user_id,
            action=SEND_ACTION,
            target=f"segment:{draft.segment_id}",
        )
        if not allowed:
            await ack(response_action="update", view=views.message_view(NOT_ALLOWED))
            return
        if draft.send_at is not None:
            try:
                check_future(draft.send_at, now=utc_clock())
            except PastSendTime as exc:
                # The confirmation stayed open past the chosen time, and it has no inputs to mark.
                logger.info(
                    "Scheduling segment %d by user %s rejected: %s passed while confirming",
                    draft.segment_id,
                    user_id,
                    draft.send_at.isoformat(),
                )
                await ack(response_action="update", view=views.message_view(f"{exc} {_START_AGAIN}"))
                return
            await ack()
            services.tasks.start(
                _schedule(services, draft), name=f"schedule-{team_id}-{draft.segment_id}"
            )
            return
        await ack()
        request = BroadcastRequest(
            team_id=draft.team_id,
            user_id=draft.user_id,
            segment_id=draft.segment_id,
            message_text=draft.message_text,
            message_blocks=[draft.message],
            confirmed_channel_ids=draft.channel_ids,
        )
        services.tasks.start(
            _broadcast(services, request), name=f"broadcast-{team_id}-{draft.segment_id}"
        )


async def _show_confirmation(
    *,
    client: AsyncWebClient,
    services: Services,
    view_id: str,
    draft: Draft,
    key: str,
    test_first: bool,
) -> None:
    """Resolve the audience fresh and replace the "Checking…" view with the confirmation.

    A message whose variables do not fit Planhat's fields, or that lacks values for some
    companies, turns the view back into the send modal with the message and the problem.
    """
    try:
        segment = await services.segments.get(draft.segment_id)
        if segment is None:
            raise segment_not_found(draft.segment_name, [])
        mapping, timezone = await services.mapping_for(draft.team_id)
        catalog = await services.resolver.catalog()
        renderer = MessageRenderer(
            message_text=draft.message_text, message_blocks=[draft.message], catalog=catalog
        )
        audience = await services.resolver.resolve(
            rules_from_json(segment.rules),
            catalog=catalog,
            fresh=True,
            mapping=mapping,
            timezone=timezone,
            template=renderer.template,
        )
    except TemplateError as exc:
        # The error quotes what the sender typed, and the notice is mrkdwn.
        problem = escape_mrkdwn(str(exc))
        await _return_to_send_modal(
            client, services=services, view_id=view_id, draft=draft, problem=problem
        )
        return
    except Exception as exc:  # noqa: BLE001 - the person waiting in the modal must see any failure
        view = views.message_view(error_text(exc))
        await _update_view(client, view_id=view_id, view=view, user_id=draft.user_id)
        return

    missing = find_missing_values(audience.targets, renderer.template)
    if missing is not None:
        await _return_to_send_modal(
            client, services=services, view_id=view_id, draft=draft, problem=missing.describe()
        )
        return

    draft.channel_ids = frozenset(target.channel_id for target in audience.targets)
    preview = _Preview(message=draft.message, text=draft.message_text)
    target = sample_target(audience.targets)
    if renderer.is_personalized and target is not None:
        rendered = renderer.render_for(target.companies)
        company = sample_company(target.companies)
        preview = _Preview(
            message=rendered.blocks[0] if rendered.blocks else draft.message,
            text=rendered.text,
            note=views.preview_note(
                target=target,
                company_name=company.company_name if company is not None else "",
                targets=audience.targets,
            ),
        )
    test_note = None
    if test_first and audience.targets:
        test_note = await _send_test(
            services, draft=draft, preview=preview, channel_count=len(audience.targets)
        )
    send_at = _send_at_text(draft)
    capped: Mapping[str, str] = {}
    if send_at is None:
        # A scheduled send applies the cap when it goes out; an immediate one shows it now.
        capped = await services.deliveries.frequency_capped(
            team_id=draft.team_id, channel_ids=[target.channel_id for target in audience.targets]
        )
    view = views.confirmation_view(
        segment_name=segment.name,
        audience=audience,
        message=preview.message,
        test_note=test_note,
        metadata=key,
        preview_note=preview.note,
        send_at=send_at,
        capped=capped,
    )
    await _update_view(client, view_id=view_id, view=view, user_id=draft.user_id)


@dataclass(frozen=True)
class _Preview:
    """The message as the sample channel will see it, and which channel and company that is."""

    message: Mapping[str, Any]
    text: str
    note: str | None = None


async def _return_to_send_modal(
    client: AsyncWebClient, *, services: Services, view_id: str, draft: Draft, problem: str
) -> None:
    """Show the send modal again with the draft's segment and message, and `problem` under it."""
    logger.info(
        "Send to segment %d by user %s returned to the send modal: %s",
        draft.segment_id,
        draft.user_id,
        problem,
    )
    segments = await services.segments.list(team_id=draft.team_id)
    selected = next((segment for segment in segments if segment.id == draft.segment_id), None)
    saved = await services.settings_for(draft.team_id)
    view = views.send_modal(
        segments=segments,
        selected=selected,
        initial_message=draft.message,
        message_notice=f":warning: {problem}",
        timezone=saved.timezone,
        schedule=draft.schedule,
    )
    await _update_view(client, view_id=view_id, view=view, user_id=draft.user_id)


async def _send_test(
    services: Services, *, draft: Draft, preview: _Preview, channel_count: int
) -> str:
    text, blocks = views.build_test_dm(
        message=preview.message,
        message_text=preview.text,
        segment_name=draft.segment_name,
        channel_count=channel_count,
        preview_note=preview.note,
    )
    try:
        await services.poster.chat_postMessage(
            channel=draft.user_id, text=text, blocks=blocks, unfurl_links=False
        )
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        logger.warning("Test message to user %s failed: %r", draft.user_id, exc)
        return views.describe_failed_test(error_text(exc))
    return views.TEST_SENT


async def _update_view(
    client: AsyncWebClient, *, view_id: str, view: Mapping[str, Any], user_id: str
) -> None:
    try:
        await client.views_update(view_id=view_id, view=dict(view))
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        # The modal may be closed or unreachable, and the person must not wait on "Checking…".
        logger.warning("Updating send view %s for user %s failed: %r", view_id, user_id, exc)
        text = (
            f"The send confirmation could not be shown: {error_text(exc)} Open {views.TITLE} again."
        )
        await tell_user(client, user_id=user_id, text=text)


async def _broadcast(services: Services, request: BroadcastRequest) -> None:
    dm = LiveMessage(client=services.reader, user_id=request.user_id)
    run = BroadcastRun(
        resolver=services.resolver,
        segments=services.segments,
        log=services.deliveries,
        poster=services.poster,
        dm=dm,
    )
    try:
        mapping, timezone = await services.mapping_for(request.team_id)
        await run.run(request, mapping=mapping, timezone=timezone)
    except Exception as exc:  # noqa: BLE001 - whatever stops a broadcast must reach its sender
        text = error_text(exc)
        if run.sending_started:
            text += (
                " Some channels may already have the message, so check the latest broadcast in "
                "segment-bot's App Home before sending again."
            )
        await dm.show(text)


_START_AGAIN = f"Nothing was scheduled. Open {views.TITLE} again to pick a new time."


def _send_at_text(draft: Draft) -> str | None:
    if draft.send_at is None or draft.schedule is None:
        return None
    return format_send_time(draft.send_at, timezone=draft.schedule.timezone)


async def _schedule(services: Services, draft: Draft) -> None:
    """Store a confirmed send-later draft, wake the scheduler, and DM the sender the time."""
    assert draft.send_at is not None and draft.schedule is not None  # Only send-later drafts.
    when = format_send_time(draft.send_at, timezone=draft.schedule.timezone)
    try:
        scheduled = await schedule_broadcast(
            services.scheduled,
            NewScheduledBroadcast(
                team_id=draft.team_id,
                segment_id=draft.segment_id,
                segment_name=draft.segment_name,
                message_text=draft.message_text,
                message_blocks=[draft.message],
                sent_by=draft.user_id,
                scheduled_at=draft.send_at,
                timezone=draft.schedule.timezone,
                confirmed_channel_ids=draft.channel_ids or frozenset(),
            ),
            now=utc_clock(),
        )
    except Exception as exc:  # noqa: BLE001 - the sender must learn that nothing was scheduled
        # error_text logs unexpected errors with their traceback, and this line the expected ones.
        logger.warning(
            "Scheduling segment %d for user %s failed: %r", draft.segment_id, draft.user_id, exc
        )
        text = error_text(exc)
        if isinstance(exc, PastSendTime):
            text = f"{exc} {_START_AGAIN}"
        await tell_user(services.reader, user_id=draft.user_id, text=text)
        return
    services.wake_scheduler()
    logger.info(
        "User %s scheduled broadcast %d to segment %d for %s",
        draft.user_id,
        scheduled.id,
        draft.segment_id,
        scheduled.scheduled_at.isoformat(),
    )
    text = views.scheduled_dm_text(segment_name=draft.segment_name, send_at=when)
    await tell_user(services.reader, user_id=draft.user_id, text=text)


def _find_by_name(segments: Sequence[SegmentRecord], name: str) -> SegmentRecord | None:
    wanted = name.strip().casefold()
    return next((segment for segment in segments if segment.name.casefold() == wanted), None)
