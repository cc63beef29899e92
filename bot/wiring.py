"""Build the clients and services a command needs from `Settings`, and close them afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from planhat.client import PlanhatClient
from segments.audience import AudienceResolver
from segments.channels import ChannelMapping


def reading_slack_client(*, token: str | None, base_url: str) -> AsyncWebClient:
    """Return a client for idempotent reads, which may safely retry on 429 and dropped connections."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )


def posting_slack_client(*, token: str | None, base_url: str) -> AsyncWebClient:
    """Return a client with slack-sdk's retries off: a post retried blindly can appear twice."""
    return AsyncWebClient(token=token, base_url=base_url, retry_handlers=[])


def channel_mapping(settings: Settings) -> ChannelMapping:
    return ChannelMapping(field=settings.planhat_channel_field, template=settings.channel_name_template)


@asynccontextmanager
async def open_resolver(settings: Settings) -> AsyncIterator[AudienceResolver]:
    """Yield an AudienceResolver over the configured Planhat and Slack, closing both afterwards."""
    planhat = PlanhatClient(
        base_url=settings.planhat_api_url,
        token=settings.planhat_api_token or "",
        page_size=settings.planhat_page_size,
    )
    slack = reading_slack_client(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    try:
        yield AudienceResolver(
            source=planhat,
            slack=slack,
            mapping=channel_mapping(settings),
            timezone=settings.timezone,
        )
    finally:
        await planhat.aclose()
        if slack.session is not None:
            await slack.session.close()
