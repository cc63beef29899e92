"""Every surface acks before its slow work: Planhat here answers each request after 2 seconds."""

from __future__ import annotations

from loopback.slack_requests import ADMIN_ID, SlackSimulator
from loopback.stack import Stack
from segments.rules import rules_to_json
from segments.text import parse_rules
from tests.scenario.helpers import eventually

PLANHAT_LATENCY = 2.0


def planhat_answered(world: Stack) -> int:
    return len(world.planhat.requests_to("/companies"))


async def test_preview_command_acks_before_planhat_answers(world: Stack) -> None:
    world.planhat.latency_seconds = PLANHAT_LATENCY
    response_url = world.sim.response_url()

    response = await world.sim.command("preview ARR greater than 10000", response_url=response_url)
    responses_at_ack = world.slack.responses_to(response_url)
    final = await eventually(lambda: len(world.slack.responses_to(response_url)) >= 1, timeout=30)

    assert response.status == 200
    assert responses_at_ack == []
    assert final


async def test_global_shortcut_opens_modal_while_planhat_is_slow(world: Stack) -> None:
    world.planhat.latency_seconds = PLANHAT_LATENCY

    response = await world.sim.interact(
        {
            "type": "shortcut",
            "callback_id": "send_to_segment",
            "trigger_id": "trigger-ack-first",
            "user": SlackSimulator.user(ADMIN_ID),
            "action_ts": "1.2",
        }
    )
    opened = await eventually(lambda: world.slack.calls_to("views.open"), timeout=5)

    assert response.status == 200
    assert opened


async def test_send_submit_acks_before_audience_is_resolved(world: Stack) -> None:
    catalog = await world.services.resolver.catalog()
    await world.services.segments.create(
        team_id="T0SEGMENT",
        name="Big accounts",
        rules=rules_to_json(parse_rules("ARR greater than 100000", catalog)),
        user_id=ADMIN_ID,
    )
    world.planhat.latency_seconds = PLANHAT_LATENCY
    before = planhat_answered(world)

    response = await world.sim.command("send Big accounts")

    opened = await eventually(lambda: world.slack.calls_to("views.open"), timeout=5)

    assert response.status == 200
    assert opened
    # Opening the send modal reads only the database; Planhat is asked after the submit.
    assert planhat_answered(world) == before
