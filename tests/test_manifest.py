"""manifest.yml must agree with the code: scopes, command, shortcut callback ids and events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.check import OPTIONAL_SCOPES, REQUIRED_SCOPES
from handlers.views.send import GLOBAL_SHORTCUT_CALLBACK, MESSAGE_SHORTCUT_CALLBACK

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"


def load_manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def test_manifest_scopes_match_check() -> None:
    manifest = load_manifest()

    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(REQUIRED_SCOPES) | set(OPTIONAL_SCOPES)


def test_manifest_shortcuts_match_handlers() -> None:
    shortcuts = {item["callback_id"]: item["type"] for item in load_manifest()["features"]["shortcuts"]}

    assert shortcuts == {GLOBAL_SHORTCUT_CALLBACK: "global", MESSAGE_SHORTCUT_CALLBACK: "message"}


def test_manifest_routes_everything_to_one_path() -> None:
    manifest = load_manifest()
    command = manifest["features"]["slash_commands"][0]
    interactivity = manifest["settings"]["interactivity"]

    assert command["command"] == "/segment"
    assert command["url"].endswith("/slack/events")
    assert interactivity["request_url"].endswith("/slack/events")
    assert interactivity["message_menu_options_url"].endswith("/slack/events")
    assert manifest["settings"]["event_subscriptions"]["request_url"].endswith("/slack/events")


def test_manifest_enables_app_home_events() -> None:
    manifest = load_manifest()

    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]


def test_manifest_respects_slack_length_limits() -> None:
    manifest = load_manifest()

    assert len(manifest["display_information"]["name"]) <= 35
    assert len(manifest["display_information"]["description"]) <= 140
    for shortcut in manifest["features"]["shortcuts"]:
        assert len(shortcut["name"]) <= 24
        assert len(shortcut["description"]) <= 150
