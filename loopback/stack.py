"""A whole segment-bot over HTTP on 127.0.0.1: the app, plus loopback Planhat and Slack servers.

Scenario tests and the ack benchmark start one of these and talk to it only through HTTP, with
requests signed as Slack signs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bot.app import build_app
from bot.config import Settings
from bot.server import EVENTS_PATH, create_web_app
from bot.services import Services, build_services
from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import SampleData, generate_sample
from loopback.server import RunningServer, start_server
from loopback.slack_requests import ADMIN_ID, SlackSimulator
from loopback.slack_server import SlackState, create_slack_app

SIGNING_SECRET = "loopback-signing-secret"
PLANHAT_TOKEN = "loopback-planhat-token"
SLACK_TOKEN = "xoxb-loopback-token"


@dataclass
class Stack:
    sample: SampleData
    planhat: PlanhatState
    slack: SlackState
    services: Services
    app_url: str
    slack_url: str
    planhat_url: str
    sim: SlackSimulator
    servers: list[RunningServer]

    async def stop(self) -> None:
        await self.sim.aclose()
        await self.services.tasks.drain(timeout=10)
        for server in reversed(self.servers):
            await server.stop()
        await self.services.close()


async def start_stack(*, database_path: Path, today: date, company_count: int = 400) -> Stack:
    """Start both loopback servers with generated sample data, then the app wired to them."""
    sample = generate_sample(today=today, company_count=company_count)
    planhat = PlanhatState(companies=sample.companies, custom_fields=sample.custom_fields, token=PLANHAT_TOKEN)
    slack = SlackState(channels=sample.channels, bot_token=SLACK_TOKEN)
    servers = [await start_server(create_planhat_app(planhat))]
    servers.append(await start_server(create_slack_app(slack)))
    planhat_url, slack_url = servers[0].url, servers[1].url
    settings = Settings(
        slack_bot_token=SLACK_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=f"{slack_url}/api/",
        planhat_api_token=PLANHAT_TOKEN,
        planhat_api_url=planhat_url,
        planhat_channel_field="custom.Slack Channel",
        database_url=f"sqlite+aiosqlite:///{database_path}",
        segment_admins=(ADMIN_ID,),
    )
    services = await build_services(settings)
    servers.append(await start_server(create_web_app(build_app(services), services)))
    app_url = servers[2].url
    sim = SlackSimulator(events_url=f"{app_url}{EVENTS_PATH}", signing_secret=SIGNING_SECRET, slack_url=slack_url)
    return Stack(
        sample=sample,
        planhat=planhat,
        slack=slack,
        services=services,
        app_url=app_url,
        slack_url=slack_url,
        planhat_url=planhat_url,
        sim=sim,
        servers=servers,
    )
