"""Request verification: only requests signed with the secret in the last 5 minutes run."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlencode

from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, TEAM_ID

# Slack rejects request timestamps more than 5 minutes from now, so 6 minutes is stale.
STALE_SECONDS = 6 * 60


def _list_command(response_url: str) -> str:
    return urlencode(
        {
            "team_id": TEAM_ID,
            "channel_id": "C0CSTEAM00",
            "user_id": ADMIN_ID,
            "command": "/segment",
            "text": "list",
            "response_url": response_url,
            "trigger_id": "trigger-security",
        }
    )


async def _assert_nothing_happened(world: World, response_url: str) -> None:
    # The listener would run after the response, so give it the time it would need.
    await asyncio.sleep(0.3)
    assert world.slack.responses_to(response_url) == []
    assert world.slack.calls == []


async def test_bad_signature_is_rejected(world: World) -> None:
    response_url = world.sim.response_url()

    response = await world.sim.post(_list_command(response_url), signature="v0=" + "0" * 64)

    assert response.status == 401
    await _assert_nothing_happened(world, response_url)


async def test_stale_timestamp_is_rejected(world: World) -> None:
    response_url = world.sim.response_url()

    response = await world.sim.post(
        _list_command(response_url), timestamp=int(time.time()) - STALE_SECONDS
    )

    assert response.status == 401
    await _assert_nothing_happened(world, response_url)


async def test_signed_request_is_handled(world: World) -> None:
    response_url = world.sim.response_url()

    response = await world.sim.post(_list_command(response_url))

    assert response.status == 200
    replies = await eventually(lambda: world.slack.responses_to(response_url))
    assert "/segment new" in replies[0]["blocks"][0]["text"]["text"]
