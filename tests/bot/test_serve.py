"""`segment-bot serve` as a process: start-up checks, health, a signed command, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import generate_sample
from loopback.server import RunningServer, start_server
from loopback.slack_requests import SlackSimulator
from loopback.slack_server import SlackState, create_slack_app

SECRET = "serve-test-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    sample = generate_sample(today=date(2026, 12, 4), company_count=100)
    planhat = PlanhatState(companies=sample.companies, custom_fields=sample.custom_fields, token="p-token")
    slack = SlackState(channels=sample.channels, bot_token="xoxb-serve")
    servers: list[RunningServer] = [
        await start_server(create_planhat_app(planhat)),
        await start_server(create_slack_app(slack)),
    ]
    try:
        yield {
            "PATH": os.environ.get("PATH", ""),
            "PLANHAT_API_URL": servers[0].url,
            "PLANHAT_API_TOKEN": "p-token",
            "SLACK_API_URL": f"{servers[1].url}/api/",
            "SLACK_BOT_TOKEN": "xoxb-serve",
            "SLACK_SIGNING_SECRET": SECRET,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
            "PORT": str(free_port()),
            "SLACK_URL": servers[1].url,
        }
    finally:
        for server in servers:
            await server.stop()


async def start_serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def test_serve_answers_health_and_commands_then_stops_on_sigterm(env: dict[str, str]) -> None:
    process = await start_serve(env)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    base = f"http://127.0.0.1:{env['PORT']}"
    sim = SlackSimulator(events_url=f"{base}/slack/events", signing_secret=SECRET, slack_url=env["SLACK_URL"])

    async with httpx.AsyncClient() as http:
        health = await http.get(f"{base}/healthz")
    command = await sim.command("help")
    await sim.aclose()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), timeout=60)

    assert b"listening" in line
    assert health.status_code == 200
    assert health.json()["ok"] is True
    assert command.status == 200
    assert code == 0


@pytest.mark.parametrize("missing", ["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "PLANHAT_API_TOKEN"])
async def test_serve_refuses_to_start_without_required_setting(env: dict[str, str], missing: str) -> None:
    process = await start_serve({**env, missing: ""})
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 2
    assert f"{missing} is not set" in stderr.decode()
