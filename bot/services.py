"""Everything a Slack handler needs, built once from `Settings` when the app starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.tasks import BackgroundTasks
from bot.wiring import posting_slack_client, reading_slack_client
from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.records import WorkspaceSettings
from db.scheduled import SqlScheduledBroadcasts
from db.stores import SqlAuditLog, SqlDeliveryLog, SqlSegmentStore, SqlSettingsStore
from planhat.client import PlanhatClient
from segments.audience import AudienceResolver
from segments.channels import ChannelMapping
from segments.permissions import Permissions


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    planhat: PlanhatClient
    reader: AsyncWebClient
    poster: AsyncWebClient
    resolver: AudienceResolver
    segments: SqlSegmentStore
    deliveries: SqlDeliveryLog
    workspace_settings: SqlSettingsStore
    audit: SqlAuditLog
    permissions: Permissions
    tasks: BackgroundTasks
    scheduled: SqlScheduledBroadcasts
    # Starts the scheduler's next round at once. `serve` sets it to the running scheduler's
    # `wake`, and without a scheduler in this process it does nothing.
    wake_scheduler: Callable[[], None] = lambda: None

    async def settings_for(self, team_id: str) -> WorkspaceSettings:
        """Return the workspace's saved settings, with the environment's values as defaults."""
        return await self.workspace_settings.get(team_id)

    async def mapping_for(self, team_id: str) -> tuple[ChannelMapping, str]:
        """Return the workspace's channel mapping and time zone name."""
        saved = await self.settings_for(team_id)
        return ChannelMapping(field=saved.channel_field, template=saved.channel_template), saved.timezone

    async def close(self) -> None:
        await self.planhat.aclose()
        await self.engine.dispose()


async def build_services(settings: Settings) -> Services:
    """Open the database (migrating it to the latest schema) and build the clients."""
    engine = create_engine(settings.database_url)
    await upgrade_database(engine)
    sessions = create_session_factory(engine)
    planhat = PlanhatClient(
        base_url=settings.planhat_api_url,
        token=settings.planhat_api_token or "",
        page_size=settings.planhat_page_size,
    )
    reader = reading_slack_client(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    mapping = ChannelMapping(field=settings.planhat_channel_field, template=settings.channel_name_template)
    workspace_settings = SqlSettingsStore(
        sessions,
        default_channel_field=settings.planhat_channel_field,
        default_channel_template=settings.channel_name_template,
        default_timezone=settings.timezone,
    )
    audit = SqlAuditLog(sessions)
    return Services(
        settings=settings,
        engine=engine,
        planhat=planhat,
        reader=reader,
        poster=posting_slack_client(token=settings.slack_bot_token, base_url=settings.slack_api_url),
        resolver=AudienceResolver(source=planhat, slack=reader, mapping=mapping, timezone=settings.timezone),
        segments=SqlSegmentStore(sessions),
        deliveries=SqlDeliveryLog(sessions),
        workspace_settings=workspace_settings,
        audit=audit,
        permissions=Permissions(
            client=reader, admins=settings.segment_admins, settings=workspace_settings, audit=audit
        ),
        tasks=BackgroundTasks(),
        scheduled=SqlScheduledBroadcasts(sessions),
    )
