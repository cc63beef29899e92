"""Settings read from the environment, validated once at start-up.

Every entry point (CLI, server) builds one `Settings` and passes its values down, so no module
below `bot/` reads the environment itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from segments.errors import UserFacingError

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_PLANHAT_API_URL = "https://api.planhat.com"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./segment-bot.db"
DEFAULT_CHANNEL_TEMPLATE = "customer-{slug}"


class ConfigError(UserFacingError):
    """A setting is missing or invalid. The message names the setting and the fix."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    planhat_api_token: str | None = field(default=None, repr=False)
    planhat_api_url: str = DEFAULT_PLANHAT_API_URL
    planhat_page_size: int = 5000
    planhat_channel_field: str | None = None
    channel_name_template: str = DEFAULT_CHANNEL_TEMPLATE
    timezone: str = "UTC"
    segment_admins: tuple[str, ...] = ()
    database_url: str = DEFAULT_DATABASE_URL
    port: int = 3000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise ConfigError naming the first invalid one."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        timezone = text("SEGMENT_TIMEZONE") or "UTC"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f'SEGMENT_TIMEZONE "{timezone}" is not a known IANA time zone; '
                'use a name such as "UTC" or "Europe/Stockholm".'
            ) from exc

        for url_name in ("SLACK_API_URL", "PLANHAT_API_URL"):
            url = text(url_name)
            if url is not None and not url.startswith(("https://", "http://")):
                raise ConfigError(f'{url_name} "{url}" must start with https:// or http://.')

        template = text("CHANNEL_NAME_TEMPLATE") or DEFAULT_CHANNEL_TEMPLATE
        if "{slug}" not in template:
            raise ConfigError(
                f'CHANNEL_NAME_TEMPLATE "{template}" has no {{slug}} placeholder; '
                'use a template such as "customer-{slug}".'
            )

        admins = tuple(
            user_id.strip() for user_id in (text("SEGMENT_ADMINS") or "").split(",") if user_id.strip()
        )
        return cls(
            slack_bot_token=text("SLACK_BOT_TOKEN"),
            slack_signing_secret=text("SLACK_SIGNING_SECRET"),
            slack_app_token=text("SLACK_APP_TOKEN"),
            slack_api_url=_with_trailing_slash(text("SLACK_API_URL") or DEFAULT_SLACK_API_URL),
            planhat_api_token=text("PLANHAT_API_TOKEN"),
            planhat_api_url=(text("PLANHAT_API_URL") or DEFAULT_PLANHAT_API_URL).rstrip("/"),
            planhat_page_size=_positive_int(env, "PLANHAT_PAGE_SIZE", default=5000, maximum=5000),
            planhat_channel_field=text("PLANHAT_CHANNEL_FIELD"),
            channel_name_template=template,
            timezone=timezone,
            segment_admins=admins,
            database_url=text("DATABASE_URL") or DEFAULT_DATABASE_URL,
            port=_positive_int(env, "PORT", default=3000, maximum=65535),
        )

    def require(self, *names: str) -> None:
        """Raise ConfigError for the first of `names` (environment variable names) that is unset."""
        for name in names:
            if getattr(self, _REQUIRABLE[name]) is None:
                raise ConfigError(f"{name} is not set. Export it before running this command.")


# The settings that have no default, by environment variable name.
_REQUIRABLE = {
    "SLACK_BOT_TOKEN": "slack_bot_token",
    "SLACK_SIGNING_SECRET": "slack_signing_secret",
    "SLACK_APP_TOKEN": "slack_app_token",
    "PLANHAT_API_TOKEN": "planhat_api_token",
    "PLANHAT_CHANNEL_FIELD": "planhat_channel_field",
}


def _with_trailing_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _positive_int(env: Mapping[str, str], name: str, *, default: int, maximum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f'{name} must be a whole number, not "{raw}".') from exc
    if not 1 <= value <= maximum:
        raise ConfigError(f"{name} must be between 1 and {maximum}, not {value}.")
    return value
