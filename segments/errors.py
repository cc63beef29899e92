"""Turn expected failures from Planhat, Slack, rules and settings into one sentence for a person.

The CLI and the Slack handlers both report failures through `describe_error`, so the same problem
reads the same way everywhere.
"""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError

from planhat.errors import PlanhatError
from segments.rules import RuleError

# Slack error codes seen from conversations.list and auth.test, with what to do about them.
_SLACK_FIXES = {
    "invalid_auth": "Slack rejected SLACK_BOT_TOKEN (invalid_auth). Copy the Bot User OAuth Token "
    "(xoxb-...) from the app's OAuth & Permissions page.",
    "not_authed": "No Slack token was sent. Set SLACK_BOT_TOKEN.",
    "account_inactive": "The Slack token belongs to a deactivated app or workspace. Reinstall the app "
    "and update SLACK_BOT_TOKEN.",
    "token_revoked": "The Slack token was revoked. Reinstall the app and update SLACK_BOT_TOKEN.",
    "missing_scope": "The Slack app lacks a scope it needs (channels:read and groups:read list "
    "channels). Add the scopes from manifest.yml and reinstall the app.",
    "ratelimited": "Slack is rate limiting the app right now. Wait a minute and try again.",
}


class UserFacingError(Exception):
    """A failure already phrased for a person, such as an invalid setting or a missing segment."""


def describe_error(exc: BaseException) -> str | None:
    """Return one sentence with the fix for an expected failure, or None for an unexpected one."""
    if isinstance(exc, (RuleError, UserFacingError)):
        return str(exc)
    if isinstance(exc, PlanhatError):
        return exc.user_message
    if isinstance(exc, SlackApiError):
        data = exc.response.data if exc.response is not None else None
        if not isinstance(data, dict):
            # A non-JSON body means the URL does not point at a Slack Web API.
            return "The Slack Web API answered with something other than JSON. Check SLACK_API_URL (it ends in /api/)."
        error = str(data.get("error", ""))
        return _SLACK_FIXES.get(
            error, f"Slack answered with the error \"{error or 'unknown'}\". Check SLACK_BOT_TOKEN and SLACK_API_URL."
        )
    if isinstance(exc, (aiohttp.ClientConnectionError, TimeoutError)):
        return "Could not reach the Slack Web API. Check SLACK_API_URL and the network, then try again."
    return None
