"""Build the async Bolt app: one Web API client, request verification, and every handler module."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from handlers import register_all

logger = logging.getLogger(__name__)


def build_app(services: Services) -> AsyncApp:
    """Return the Bolt app. Listeners ack first and continue after the HTTP response is sent."""
    settings = services.settings
    app = AsyncApp(
        client=services.reader,
        signing_secret=settings.slack_signing_secret or "",
        # Socket Mode frames are authenticated by the app token, not by a signature.
        request_verification_enabled=settings.slack_app_token is None,
    )
    register_all(app, services)

    @app.error
    async def log_unexpected_error(error: Exception, body: dict[str, Any]) -> None:
        logger.exception(
            "Unhandled error in a listener (team %s, user %s, type %s)",
            _team_id(body),
            _user_id(body),
            body.get("type") or body.get("command"),
            exc_info=error,
        )

    return app


def _team_id(body: dict[str, Any]) -> str | None:
    team = body.get("team")
    return team.get("id") if isinstance(team, dict) else body.get("team_id")


def _user_id(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user.get("id") if isinstance(user, dict) else body.get("user_id")
