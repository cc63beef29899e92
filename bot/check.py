"""`segment-bot check`: try each connection and setting, and report what to fix.

Each check runs even when an earlier one failed, so one run lists every problem at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rich.console import Console

from bot.config import Settings
from segments.errors import describe_error
from bot.wiring import reading_slack_client
from planhat.client import PlanhatClient
from segments.channels import load_channel_directory

# Bot scopes the app uses, and why; manifest.yml requests the same set.
REQUIRED_SCOPES = {
    "commands": "the /segment command and the shortcuts",
    "chat:write": "posting broadcasts and reports",
    "channels:read": "listing public channels to map companies",
    "groups:read": "listing private channels the app was invited to",
    "channels:join": "joining a public channel before posting to it",
    "users:read": "telling workspace admins, who may manage segments, from other members",
}
# Bot scopes the app works without, each with what is lost when it is missing. manifest.yml
# requests them too.
OPTIONAL_SCOPES = {
    "channels:history": "without channels:history, posts to public channels whose outcome is "
    "unknown are reported as unconfirmed instead of being checked",
    "groups:history": "without groups:history, posts to private channels whose outcome is "
    "unknown are reported as unconfirmed instead of being checked",
}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    summary: str


async def run_check(settings: Settings, *, console: Console) -> int:
    """Print one line per check; return 0 when all pass, 1 otherwise."""
    checks: list[tuple[str, Callable[[Settings], Awaitable[CheckResult]]]] = [
        ("Signing secret", _check_signing_secret),
        ("Planhat token", _check_planhat),
        ("Channel field", _check_channel_field),
        ("Slack token and scopes", _check_slack),
        ("Slack channels", _check_channels),
    ]
    failures = 0
    for title, check in checks:
        try:
            result = await check(settings)
        except Exception as exc:  # noqa: BLE001 - every failure is reported and the next check runs
            message = describe_error(exc)
            if message is None:
                raise
            result = CheckResult(ok=False, summary=message)
        failures += not result.ok
        mark = "[green]ok[/green]    " if result.ok else "[red]failed[/red]"
        console.print(f"{mark} {title}: {result.summary}", highlight=False)
    if failures:
        console.print(f"{failures} check{'s' if failures > 1 else ''} failed.")
        return 1
    console.print("All checks passed.")
    return 0


async def _check_signing_secret(settings: Settings) -> CheckResult:
    if settings.slack_signing_secret or settings.slack_app_token:
        return CheckResult(True, "set, so `serve` can verify requests from Slack.")
    return CheckResult(
        False, "SLACK_SIGNING_SECRET is not set; `serve` needs it. Copy it from the app's Basic Information page."
    )


async def _check_planhat(settings: Settings) -> CheckResult:
    if not settings.planhat_api_token:
        return CheckResult(False, "PLANHAT_API_TOKEN is not set. Create a token under Settings > Service Accounts in Planhat.")
    async with PlanhatClient(base_url=settings.planhat_api_url, token=settings.planhat_api_token) as client:
        fields = await client.fetch_custom_fields()
    return CheckResult(True, f"{settings.planhat_api_url} accepted the token ({len(fields)} company custom fields).")


async def _check_channel_field(settings: Settings) -> CheckResult:
    field = settings.planhat_channel_field
    template = settings.channel_name_template
    if not field:
        return CheckResult(True, f'PLANHAT_CHANNEL_FIELD is not set, so channels are found by the name template "{template}".')
    if not settings.planhat_api_token:
        return CheckResult(False, "cannot check the field without PLANHAT_API_TOKEN.")
    async with PlanhatClient(base_url=settings.planhat_api_url, token=settings.planhat_api_token) as client:
        names = [definition.name for definition in await client.fetch_custom_fields()]
    if not field.startswith("custom."):
        if field in names:
            return CheckResult(
                False, f'"{field}" is a custom field, so write it as "custom.{field}" in PLANHAT_CHANNEL_FIELD.'
            )
        return CheckResult(True, f'using the Planhat field "{field}", then the template "{template}".')
    field_name = field.removeprefix("custom.")
    if field_name in names:
        return CheckResult(True, f'"{field_name}" is a company custom field; companies without it use "{template}".')
    closest = difflib.get_close_matches(field_name, names, n=1)
    hint = f' Did you mean "custom.{closest[0]}"?' if closest else ""
    return CheckResult(False, f'Planhat has no company custom field named "{field_name}".{hint} Fix PLANHAT_CHANNEL_FIELD.')


async def _check_slack(settings: Settings) -> CheckResult:
    if not settings.slack_bot_token:
        return CheckResult(False, "SLACK_BOT_TOKEN is not set. Copy the Bot User OAuth Token (xoxb-...) from the app's settings.")
    client = reading_slack_client(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    response = await client.auth_test()
    granted = {scope.strip() for scope in response.headers.get("x-oauth-scopes", "").split(",") if scope.strip()}
    missing = [scope for scope in REQUIRED_SCOPES if scope not in granted]
    identity = f'workspace "{response.get("team")}" as @{response.get("user")}'
    if missing:
        reasons = "; ".join(f"{scope} ({REQUIRED_SCOPES[scope]})" for scope in missing)
        return CheckResult(False, f"{identity}, but scopes are missing: {reasons}. Add them from manifest.yml and reinstall.")
    optional_missing = [scope for scope in OPTIONAL_SCOPES if scope not in granted]
    if optional_missing:
        consequences = "; ".join(OPTIONAL_SCOPES[scope] for scope in optional_missing)
        return CheckResult(
            True,
            f"{identity} with every required scope. Optional scopes are missing: {consequences}. "
            "Add them from manifest.yml and reinstall to fix this.",
        )
    return CheckResult(True, f"{identity} with every scope the app needs.")


async def _check_channels(settings: Settings) -> CheckResult:
    if not settings.slack_bot_token:
        return CheckResult(False, "skipped because SLACK_BOT_TOKEN is not set.")
    client = reading_slack_client(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    directory = await load_channel_directory(client)
    channels = list(directory.channels())
    archived = sum(channel.is_archived for channel in channels)
    private = sum(channel.is_private for channel in channels)
    return CheckResult(
        True, f"{len(channels):,} channels visible ({private:,} private, {archived:,} archived)."
    )
