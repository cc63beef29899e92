"""The permission policy for creating, editing, deleting and sending segments.

Workspace owners and admins may, and so may the users listed in `SEGMENT_ADMINS` or in the
workspace's saved settings. Everyone else is refused, and each refusal is written to the audit log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from db.records import AuditAction
from db.stores import SqlAuditLog, SqlSettingsStore

logger = logging.getLogger(__name__)

NOT_ALLOWED = (
    "You are not allowed to manage or send segments. Ask a workspace admin to add you to the "
    "segment managers in segment-bot's App Home settings."
)


class Permissions:
    def __init__(
        self,
        *,
        client: AsyncWebClient,
        admins: Iterable[str],
        settings: SqlSettingsStore,
        audit: SqlAuditLog,
        cache_seconds: float = 300.0,
    ) -> None:
        self._client = client
        self._admins = frozenset(admins)
        self._settings = settings
        self._audit = audit
        self._cache_seconds = cache_seconds
        self._workspace_admins: dict[str, tuple[bool, float]] = {}

    async def is_workspace_admin(self, user_id: str) -> bool:
        """Return whether Slack marks the user as a workspace owner or admin (cached for a while)."""
        cached = self._workspace_admins.get(user_id)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        try:
            response = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            logger.warning("users.info failed for %s: %s; treating the user as not an admin", user_id, exc.response.get("error"))
            return False
        user = response.get("user") or {}
        is_admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self._workspace_admins[user_id] = (is_admin, time.monotonic())
        return is_admin

    async def can_manage(self, *, team_id: str, user_id: str) -> bool:
        """Return whether the user may create, edit, delete and send segments in the workspace."""
        if user_id in self._admins:
            return True
        saved = await self._settings.get(team_id)
        if user_id in saved.managers:
            return True
        return await self.is_workspace_admin(user_id)

    async def check(self, *, team_id: str, user_id: str, action: str, target: str | None = None) -> bool:
        """Return `can_manage`, and audit and log a refusal of `action` (e.g. `segment.create`)."""
        if await self.can_manage(team_id=team_id, user_id=user_id):
            return True
        logger.warning("Refused %s on %s for user %s in team %s", action, target, user_id, team_id)
        await self._audit.record(
            team_id=team_id,
            user_id=user_id,
            action=AuditAction.PERMISSION_DENIED,
            target=target,
            details={"attempted": action},
        )
        return False
