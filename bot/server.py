"""`segment-bot serve`: run the Bolt app over HTTP (or Socket Mode) until SIGTERM or SIGINT.

HTTP mode serves `POST /slack/events` for slash commands, interactivity and options loads, and
`GET /healthz`. On start it resumes every broadcast a previous process left unfinished and starts
the scheduler loop that sends scheduled broadcasts at their time. On a stop signal the server
stops the scheduler and stops taking requests, lets broadcasts in flight finish for a grace period,
and cancels the rest, whose deliveries stay `pending` in the database for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from sqlalchemy import text

from bot.app import build_app
from bot.config import Settings
from bot.services import Services, build_services
from db.actions import SqlActionLog
from db.engine import create_session_factory
from db.records import StoredBroadcast
from db.scheduled import ScheduledBroadcast
from handlers.common import error_text
from segments.broadcasts import LiveMessage
from segments.followups import ActionKind, ActionRecord, continue_action, target_renderer
from segments.resume import resume_broadcast
from segments.scheduling import Clock, Scheduler, send_claimed, utc_clock

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# How long a stop signal waits for broadcasts in flight before cancelling them.
SHUTDOWN_GRACE_SECONDS = 25.0


def create_web_app(app: AsyncApp, services: Services) -> web.Application:
    """Return the aiohttp application that routes Slack requests to Bolt and answers health checks."""

    async def slack_events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def healthz(request: web.Request) -> web.Response:
        try:
            async with services.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure makes the instance unhealthy
            logger.warning("Health check failed: database unavailable: %s", exc)
            return web.json_response({"ok": False, "database": "unavailable"}, status=503)
        return web.json_response({"ok": True, "background_tasks": services.tasks.running})

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get("/healthz", healthz)
    return web_app


async def resume_unfinished_actions(services: Services) -> int:
    """Continue each edit, delete or follow-up a stopped process left `running`; return how many."""
    actions = SqlActionLog(create_session_factory(services.engine))
    unfinished = await actions.list_unfinished_actions()
    for action in unfinished:
        services.tasks.start(_continue_action(services, actions, action), name=f"resume-action-{action.id}")
    if unfinished:
        logger.info("Resuming %d unfinished broadcast actions", len(unfinished))
    return len(unfinished)


async def _continue_action(services: Services, actions: SqlActionLog, action: ActionRecord) -> None:
    stored = await services.deliveries.get_stored_broadcast(action.broadcast_id)
    if stored is None:
        logger.warning("Action %d belongs to broadcast %d, which no longer exists", action.id, action.broadcast_id)
        return
    try:
        render = None
        if action.kind != ActionKind.DELETE:
            render = target_renderer(
                text=action.text, blocks=action.blocks, stored=stored, catalog=await services.resolver.catalog()
            )
        await continue_action(
            action, actions=actions, stored=stored, poster=services.poster, reader=services.reader, render=render
        )
    except Exception as exc:  # noqa: BLE001 - whatever stops a resumed action must reach the sender
        logger.warning("Resuming action %d on broadcast %d failed: %r", action.id, action.broadcast_id, exc)
        await _tell_sender(services, stored=stored, text=error_text(exc))


async def resume_unfinished_broadcasts(services: Services) -> int:
    """Start a background task for each broadcast left `resolving` or `sending`; return how many."""
    unfinished = await services.deliveries.list_unfinished()
    for stored in unfinished:
        services.tasks.start(_resume(services, stored), name=f"resume-broadcast-{stored.record.id}")
    if unfinished:
        logger.info("Resuming %d unfinished broadcasts", len(unfinished))
    return len(unfinished)


async def _resume(services: Services, stored: StoredBroadcast) -> None:
    try:
        mapping, timezone = await services.mapping_for(stored.record.team_id)
        await resume_broadcast(
            stored,
            log=services.deliveries,
            resolver=services.resolver,
            poster=services.poster,
            reader=services.reader,
            mapping=mapping,
            timezone=timezone,
        )
    except Exception as exc:  # noqa: BLE001 - whatever stops a resumed broadcast must reach its sender
        logger.warning("Resuming broadcast %d failed: %r", stored.record.id, exc)
        await _tell_sender(services, stored=stored, text=error_text(exc))


def build_scheduler(services: Services, *, clock: Clock = utc_clock) -> Scheduler:
    """Return the scheduler that starts each due scheduled broadcast as a background task."""

    async def dispatch(scheduled: ScheduledBroadcast) -> None:
        services.tasks.start(
            _send_scheduled(services, scheduled), name=f"scheduled-broadcast-{scheduled.id}"
        )

    return Scheduler(
        store=services.scheduled,
        segments=services.segments,
        dispatch=dispatch,
        reader=services.reader,
        clock=clock,
    )


async def _send_scheduled(services: Services, scheduled: ScheduledBroadcast) -> None:
    try:
        mapping, timezone = await services.mapping_for(scheduled.team_id)
        await send_claimed(
            scheduled,
            segments=services.segments,
            log=services.deliveries,
            resolver=services.resolver,
            poster=services.poster,
            reader=services.reader,
            mapping=mapping,
            timezone=timezone,
        )
    except Exception as exc:  # noqa: BLE001 - whatever stops a scheduled broadcast must reach its sender
        logger.warning("Scheduled broadcast %d failed: %r", scheduled.id, exc)
        dm = LiveMessage(client=services.reader, user_id=scheduled.sent_by)
        await dm.show(error_text(exc))


async def _tell_sender(services: Services, *, stored: StoredBroadcast, text: str) -> None:
    dm = LiveMessage(
        client=services.reader,
        user_id=stored.sent_by,
        channel=stored.report_channel,
        ts=stored.report_ts,
    )
    await dm.show(text)


async def serve(settings: Settings, *, host: str = "0.0.0.0", ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT. `ready` is set once requests are being accepted."""
    settings.require("SLACK_BOT_TOKEN", "PLANHAT_API_TOKEN")
    if settings.slack_app_token is None:
        settings.require("SLACK_SIGNING_SECRET")
    services = await build_services(settings)
    app = build_app(services)
    # NOTE: each process resumes every unfinished broadcast, so run one `serve` per database.
    # Two processes resuming the same broadcast could both post a delivery left `sending`.
    await resume_unfinished_broadcasts(services)
    await resume_unfinished_actions(services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    runner = web.AppRunner(create_web_app(app, services), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, settings.port)
    await site.start()
    socket_handler = None
    scheduler = build_scheduler(services)
    services.wake_scheduler = scheduler.wake
    scheduler_task = asyncio.create_task(scheduler.run_forever(), name="scheduler")
    try:
        if settings.slack_app_token:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            socket_handler = AsyncSocketModeHandler(app, settings.slack_app_token)
            await socket_handler.connect_async()
            logger.info("Connected in Socket Mode; health checks on port %d", settings.port)
        else:
            logger.info("Listening on %s:%d (%s, /healthz)", host, settings.port, EVENTS_PATH)
        print(f"segment-bot is listening on http://{host}:{settings.port}{EVENTS_PATH}", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
        logger.info("Stop signal received; finishing work in flight")
    finally:
        # Stopped first, so no scheduled broadcast starts while the process shuts down.
        scheduler_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scheduler_task
        if socket_handler is not None:
            await socket_handler.close_async()
        await site.stop()
        await services.tasks.drain(timeout=SHUTDOWN_GRACE_SECONDS)
        await runner.cleanup()
        await services.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        logger.info("Stopped")
