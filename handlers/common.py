"""Helpers every Slack surface uses: who is asking, and how to tell them something."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from segments.errors import UserFacingError, describe_error

logger = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on our side and it has been logged. Try again in a minute."


def team_and_user(body: Mapping[str, Any]) -> tuple[str, str]:
    """Return the team id and user id of a command, shortcut, action or view payload."""
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, Mapping) else body.get("user_id")
    view = body.get("view")
    # In Slack Connect channels the user's team differs from the workspace that installed the app.
    team_id = view.get("app_installed_team_id") if isinstance(view, Mapping) else None
    if not team_id:
        team = body.get("team")
        team_id = team.get("id") if isinstance(team, Mapping) else body.get("team_id")
    return str(team_id or ""), str(user_id or "")


def error_text(exc: BaseException) -> str:
    """Return the sentence to show a person for `exc`; unexpected errors are logged here."""
    message = describe_error(exc)
    if message is None:
        logger.exception("Unexpected error while handling a Slack request", exc_info=exc)
        return UNEXPECTED
    return message


def segment_not_found(name: str, existing: Sequence[str]) -> UserFacingError:
    """Return the error for an unknown segment name, suggesting the closest saved one."""
    closest = difflib.get_close_matches(name.casefold(), [known.casefold() for known in existing], n=1)
    hint = ""
    if closest:
        original = next(known for known in existing if known.casefold() == closest[0])
        hint = f' Did you mean "{original}"?'
    return UserFacingError(f'No segment is named "{name}".{hint} Type `/segment list` to see them all.')


async def tell_user(
    client: AsyncWebClient,
    *,
    user_id: str,
    text: str,
    channel_id: str | None = None,
    blocks: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Show `text` to one user: ephemeral in `channel_id` when possible, otherwise as a DM."""
    if channel_id:
        try:
            await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text, blocks=blocks)
            return
        except SlackApiError as exc:
            # The app may not be in that channel (or it is a DM with someone else); fall back to a DM.
            logger.info("Ephemeral message to %s in %s failed (%s); sending a DM", user_id, channel_id, exc.response.get("error"))
    await client.chat_postMessage(channel=user_id, text=text, blocks=blocks)
