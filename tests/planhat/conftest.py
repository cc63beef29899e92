"""Fixtures for the Planhat client tests: a loopback Planhat API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.server import RunningServer, start_server

PLANHAT_TOKEN = "test-planhat-token"


@pytest.fixture
def planhat_token() -> str:
    return PLANHAT_TOKEN


@pytest.fixture
def planhat_state(planhat_token: str) -> PlanhatState:
    return PlanhatState(companies=[], custom_fields=[], token=planhat_token)


@pytest.fixture
async def planhat_server(planhat_state: PlanhatState) -> AsyncIterator[RunningServer]:
    server = await start_server(create_planhat_app(planhat_state))
    yield server
    await server.stop()
