"""Kill `segment-bot serve` with SIGKILL again and again during a broadcast: every channel gets it once.

The broadcast is inserted with `SqlDeliveryLog.create_broadcast` into the database the process
uses, and the process's resume on start picks it up, so each restart exercises the same path a
crash in production would. The loopback Slack server runs in the test process, so it outlives
every kill and keeps the true record of what was posted. It answers after 50 ms, allows one post
per second per channel, and stores some posts before answering HTTP 500, so the history lookup
runs too.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.stores import SqlDeliveryLog
from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.server import RunningServer, start_server
from loopback.slack_server import DEFAULT_BOT_SCOPES, SlackState, create_slack_app
from segments.ports import (
    BroadcastRecord,
    BroadcastStatus,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
    QualifyingCompany,
)
from segments.sending import METADATA_EVENT_TYPE
from tests.fakes import slack_channel

SEED = 20251204
REACHABLE_CHANNELS = 300
KILLS = 10
BOT_TOKEN = "xoxb-sigkill"
PLANHAT_TOKEN = "p-sigkill"
# Seconds to wait for one process to start, and for the whole broadcast to finish after the
# last restart. Both are ceilings, not expectations.
START_TIMEOUT = 60.0
FINISH_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _channels() -> tuple[list[dict[str, Any]], set[str]]:
    reachable = [
        slack_channel(f"C{index:08d}", f"customer-{index:03d}") for index in range(REACHABLE_CHANNELS)
    ]
    unreachable = [
        slack_channel("C0ARCHIVE1", "customer-archived", is_archived=True),
        slack_channel("G0PRIVATE1", "customer-private", is_private=True, is_member=False),
        slack_channel("C0RESTRICT", "customer-restricted", restricted=True),
    ]
    return reachable + unreachable, {channel["id"] for channel in unreachable}


@dataclass
class Fixture:
    slack: SlackState
    env: dict[str, str]
    log: SqlDeliveryLog
    unreachable: set[str]
    # Every `serve` process appends its stderr here, so a failure can show what the processes logged.
    serve_log: Path


@pytest.fixture
async def fixture(tmp_path: Path) -> AsyncIterator[Fixture]:
    channels, unreachable = _channels()
    slack = SlackState(
        channels=channels,
        bot_token=BOT_TOKEN,
        scopes=(*DEFAULT_BOT_SCOPES, "channels:history", "groups:history"),
        latency_seconds=0.05,
        workspace_posts_per_second=50.0,
        fail_rate_500_after_store=0.02,
        seed=SEED,
    )
    planhat = PlanhatState(companies=[], custom_fields=[], token=PLANHAT_TOKEN)
    servers: list[RunningServer] = [
        await start_server(create_slack_app(slack)),
        await start_server(create_planhat_app(planhat)),
    ]
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sigkill.db'}"
    engine = create_engine(database_url)
    await upgrade_database(engine)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_API_URL": f"{servers[0].url}/api/",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "sigkill-secret",
        "PLANHAT_API_URL": servers[1].url,
        "PLANHAT_API_TOKEN": PLANHAT_TOKEN,
        "DATABASE_URL": database_url,
        "PORT": str(_free_port()),
    }
    try:
        yield Fixture(
            slack=slack,
            env=env,
            log=SqlDeliveryLog(create_session_factory(engine)),
            unreachable=unreachable,
            serve_log=tmp_path / "serve.log",
        )
    finally:
        await engine.dispose()
        for server in servers:
            await server.stop()


def _broadcast(channels: list[dict[str, Any]]) -> NewBroadcast:
    return NewBroadcast(
        team_id="T0SEGMENT",
        segment_id=None,
        segment_name="Everyone",
        rules_text="all companies",
        message_text="Our offices are closed on Friday.",
        message_blocks=None,
        sent_by="U0SENDER1",
        targets=[
            DeliveryTarget(
                channel_id=channel["id"],
                channel_name=channel["name"],
                is_private=bool(channel["is_private"]),
                companies=[QualifyingCompany(company_id=channel["id"], company_name=channel["name"])],
            )
            for channel in channels
        ],
    )


async def _start(env: dict[str, str], serve_log: Path) -> asyncio.subprocess.Process:
    with serve_log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            "--host",
            "127.0.0.1",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


def _tail(serve_log: Path, lines: int = 40) -> str:
    """Return the last lines the `serve` processes wrote to stderr, for assertion messages."""
    if not serve_log.exists():
        return "(no serve output)"
    return "\n".join(serve_log.read_text(errors="replace").splitlines()[-lines:])


async def _wait_healthy(
    env: dict[str, str], process: asyncio.subprocess.Process, serve_log: Path
) -> None:
    url = f"http://127.0.0.1:{env['PORT']}/healthz"
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, (
                f"serve exited with {process.returncode} during start:\n{_tail(serve_log)}"
            )
            try:
                response = await http.get(url, timeout=1.0)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"serve did not answer {url} within {START_TIMEOUT:.0f} s:\n{_tail(serve_log)}")


async def _wait_finished(log: SqlDeliveryLog, broadcast_id: int, serve_log: Path) -> BroadcastRecord:
    deadline = time.monotonic() + FINISH_TIMEOUT
    while time.monotonic() < deadline:
        record = await log.get_broadcast(broadcast_id)
        assert record is not None
        if record.status not in (BroadcastStatus.RESOLVING, BroadcastStatus.SENDING):
            return record
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"broadcast {broadcast_id} did not finish within {FINISH_TIMEOUT:.0f} s:\n{_tail(serve_log)}"
    )


def _posts_of(slack: SlackState, channel_id: str, broadcast_id: int) -> list[dict[str, Any]]:
    return [
        message
        for message in slack.posts_in(channel_id)
        if (message.get("metadata") or {}).get("event_type") == METADATA_EVENT_TYPE
        and message["metadata"]["event_payload"]["broadcast_id"] == broadcast_id
    ]


async def test_sigkill_during_broadcast_delivers_each_channel_once(fixture: Fixture) -> None:
    chooser = random.Random(SEED)
    # Copied now, because the server adds the sender's DM conversation to its channel list.
    channel_ids = [channel["id"] for channel in fixture.slack.channels]
    record = await fixture.log.create_broadcast(_broadcast(fixture.slack.channels))
    posts_before_last_kill = 0

    for _ in range(KILLS):
        process = await _start(fixture.env, fixture.serve_log)
        await _wait_healthy(fixture.env, process, fixture.serve_log)
        await asyncio.sleep(chooser.uniform(0.2, 1.5))
        process.send_signal(signal.SIGKILL)
        await process.wait()
        posts_before_last_kill = len(fixture.slack.calls_to("chat.postMessage"))
    process = await _start(fixture.env, fixture.serve_log)
    try:
        await _wait_healthy(fixture.env, process, fixture.serve_log)
        finished = await _wait_finished(fixture.log, record.id, fixture.serve_log)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=60)

    reachable = [cid for cid in channel_ids if cid not in fixture.unreachable]
    duplicated = [cid for cid in reachable if len(_posts_of(fixture.slack, cid, record.id)) > 1]
    missing = [cid for cid in reachable if not _posts_of(fixture.slack, cid, record.id)]
    leaked = [cid for cid in fixture.unreachable if fixture.slack.posts_in(cid)]
    statuses = {delivery.channel_id: delivery.status for delivery in finished.deliveries}
    log_tail = _tail(fixture.serve_log)
    assert posts_before_last_kill > 0, "no post was made before the last kill; kill later"
    assert duplicated == [], log_tail
    assert missing == [], log_tail
    assert leaked == [], log_tail
    assert finished.status == BroadcastStatus.PARTIALLY_SENT, log_tail
    assert {statuses[cid] for cid in reachable} == {DeliveryStatus.SENT}, log_tail
    assert {statuses[cid] for cid in fixture.unreachable} == {DeliveryStatus.FAILED}, log_tail
