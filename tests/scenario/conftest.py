"""A running segment-bot over HTTP, wired to loopback Planhat and Slack servers with sample data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from loopback.stack import Stack, start_stack

TODAY = date(2026, 12, 4)

# Scenario tests take `world`; the name reads well in assertions (world.slack.calls_to(...)).
World = Stack


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = await start_stack(database_path=tmp_path / "scenario.db", today=TODAY)
    try:
        yield stack
    finally:
        await stack.stop()
