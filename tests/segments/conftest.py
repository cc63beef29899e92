"""Fixtures for channel and sending tests: loopback Slack servers, clients on them, a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from loopback.server import RunningServer, start_server
from loopback.slack_server import SlackState, create_slack_app
from tests.fakes import InMemoryDeliveryLog, ManualClock, SlackStarter


@pytest.fixture
async def start_slack() -> AsyncIterator[SlackStarter]:
    """Start a loopback Slack server for a state and return a retry-free client pointed at it."""
    servers: list[RunningServer] = []

    async def start(state: SlackState) -> AsyncWebClient:
        server = await start_server(create_slack_app(state))
        servers.append(server)
        return AsyncWebClient(token=state.bot_token, base_url=f"{server.url}/api/", retry_handlers=[])

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def delivery_log() -> InMemoryDeliveryLog:
    return InMemoryDeliveryLog()
