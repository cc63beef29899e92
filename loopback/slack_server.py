"""A fake Slack Web API for the demo, tests and benchmarks, served over real HTTP on loopback.

`create_slack_app(state)` serves `POST /api/<method>`, and `GET` for the list methods that
slack-sdk sends that way. It responds as Slack does to a bot token. That covers channel visibility,
membership, archived and restricted channels, rate limits as HTTP 429 with `Retry-After`, and
errors as HTTP 200 with `{"ok": false}`. `SlackState` contains the workspace, the switches that
inject latency and failures, and a record of every call and every stored message for assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from loopback.server import start_server

logger = logging.getLogger(__name__)

DEFAULT_BOT_SCOPES = (
    "commands",
    "chat:write",
    "channels:read",
    "groups:read",
    "channels:join",
    "users:read",
)
# Slack truncates text beyond 40,000 characters. The fake rejects longer text with msg_too_long,
# so tests can check the limit.
MAX_TEXT_LENGTH = 40_000
MAX_LIST_LIMIT = 999
DEFAULT_LIST_LIMIT = 100
# Slack allows about one chat.postMessage per second per channel.
CHANNEL_POST_INTERVAL_SECONDS = 1.0
KNOWN_CONVERSATION_TYPES = frozenset({"public_channel", "private_channel", "mpim", "im"})
_CHANNEL_DEFAULTS: dict[str, Any] = {
    "is_private": False,
    "is_archived": False,
    "is_member": False,
    "is_ext_shared": False,
    "restricted": False,
}


@dataclass(frozen=True)
class RecordedCall:
    """One Web API request: the method, its parameters without the token, and the reply."""

    method: str
    params: Mapping[str, Any]
    status: int
    error: str | None
    at: float


@dataclass
class _Reply:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        return None if self.body.get("ok") else str(self.body.get("error"))


@dataclass
class SlackState:
    """The fake workspace, its failure switches, and everything the server recorded.

    Channel dicts have the keys `id`, `name`, `is_private`, `is_archived`, `is_member`,
    `is_ext_shared` and `restricted` (posting blocked, as in an announcement-only channel). Missing
    flags default to False. The switches are plain attributes, so a test may change them between
    requests.
    """

    channels: list[dict[str, Any]]
    bot_token: str = "xoxb-loopback"
    # Other tokens the server accepts as the bot, such as the short-lived `bot_access_token` that
    # Slack puts in a `function_executed` event for completing a Workflow Builder step.
    extra_tokens: set[str] = field(default_factory=set)
    team_id: str = "T0SEGMENT"
    team_name: str = "Segment Loopback"
    bot_user_id: str = "U0SEGBOT"
    bot_id: str = "B0SEGBOT"
    bot_name: str = "segment-bot"
    scopes: tuple[str, ...] = DEFAULT_BOT_SCOPES
    # Partial Slack user objects by user id. `users.info` fills in the remaining flags.
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    # conversations.list cuts each page before it filters, as Slack does, so pages can be short
    # or empty while `next_cursor` is still set.
    short_pages: bool = False
    # Rate of the workspace-wide token bucket for chat.postMessage, in posts per second. None means
    # no workspace limit.
    workspace_posts_per_second: float | None = None
    latency_seconds: float = 0.0
    # Probabilities that the server responds to a chat.postMessage with 429 or 500 before checking it.
    fail_rate_429: float = 0.0
    fail_rate_500: float = 0.0
    seed: int = 0
    # Scripted failures per method, consumed in order: (HTTP status, Slack error code).
    fail_next: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # When True, a chat.postMessage that gets a 5xx scripted in `fail_next` is stored first, as when
    # Slack posts the message but the response is lost. Random 500s from `fail_rate_500` store nothing.
    store_post_on_server_error: bool = False
    # Probability that a chat.postMessage which would succeed is stored and then answered with
    # HTTP 500, as when Slack posts the message but the response is lost.
    fail_rate_500_after_store: float = 0.0
    clock: Callable[[], float] = time.monotonic

    calls: list[RecordedCall] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ephemeral_messages: list[dict[str, Any]] = field(default_factory=list)
    # Modal views by view id, App Home views by user id, and payloads posted to response URLs by
    # the path segment after /response/.
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    home_views: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for channel in self.channels:
            for key, default in _CHANNEL_DEFAULTS.items():
                channel.setdefault(key, default)
        self._channels_by_id = {channel["id"]: channel for channel in self.channels}
        self._random = random.Random(self.seed)
        self._last_post_at: dict[str, float] = {}
        self._bucket_tokens: float | None = None
        self._bucket_updated_at = 0.0
        self._last_ts_micros = 0

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    def posts_in(self, channel_id: str) -> list[dict[str, Any]]:
        """Return the messages stored in a channel, oldest first."""
        return list(self.messages.get(channel_id, []))

    def channel(self, channel_id: str) -> dict[str, Any] | None:
        return self._channels_by_id.get(channel_id)

    def open_dm(self, user_id: str) -> dict[str, Any]:
        """Return the direct-message conversation between the bot and `user_id`, creating it once."""
        dm_id = "D" + user_id.removeprefix("U")
        existing = self._channels_by_id.get(dm_id)
        if existing is not None:
            return existing
        dm = {**_CHANNEL_DEFAULTS, "id": dm_id, "name": "", "is_private": True, "is_member": True}
        dm.update({"is_im": True, "user": user_id})
        self.channels.append(dm)
        self._channels_by_id[dm_id] = dm
        return dm

    def dm_messages(self, user_id: str) -> list[dict[str, Any]]:
        """Return the messages the bot sent to `user_id` in a direct message, oldest first."""
        return self.posts_in("D" + user_id.removeprefix("U"))

    def responses_to(self, response_url: str) -> list[dict[str, Any]]:
        """Return the payloads posted to a response URL of this server, oldest first."""
        return list(self.responses.get(response_url.rstrip("/").rsplit("/", 1)[-1], []))

    def find_channel(self, reference: str) -> dict[str, Any] | None:
        """Look up a channel by id, or by name with or without `#`, as chat.postMessage accepts.

        A user id opens the direct message with that user, as Slack does for bot tokens.
        """
        if reference in self._channels_by_id:
            return self._channels_by_id[reference]
        if reference.startswith(("U", "W")) and reference[1:].isalnum():
            return self.open_dm(reference)
        name = reference.removeprefix("#")
        return next((channel for channel in self.channels if channel["name"] == name), None)

    def next_ts(self) -> str:
        """Return a message timestamp that is unique and increasing within this state.

        Like Slack's, it is the wall-clock time of the post, so a `conversations.history` lookup
        with `oldest` set from a real time finds the message.
        """
        micros = max(int(time.time() * 1_000_000), self._last_ts_micros + 1)
        self._last_ts_micros = micros
        seconds, fraction = divmod(micros, 1_000_000)
        return f"{seconds}.{fraction:06d}"

    def roll(self, probability: float) -> bool:
        return probability > 0 and self._random.random() < probability

    def take_channel_slot(self, channel_key: str) -> float | None:
        """Count a post to `channel_key` and return None, or the seconds to wait when it is too early.

        A post is too early when it comes less than a second after the previous one to that channel.
        """
        now = self.clock()
        last = self._last_post_at.get(channel_key)
        if last is not None and now - last < CHANNEL_POST_INTERVAL_SECONDS:
            return CHANNEL_POST_INTERVAL_SECONDS - (now - last)
        self._last_post_at[channel_key] = now
        return None

    def take_workspace_token(self) -> float | None:
        """Take one token from the workspace bucket and return None, or the seconds until one is free.

        The bucket has room for one second of posts (at least one), so short bursts pass, as with Slack.
        """
        rate = self.workspace_posts_per_second
        if rate is None:
            return None
        capacity = max(1.0, rate)
        now = self.clock()
        if self._bucket_tokens is None:
            self._bucket_tokens = capacity
        else:
            elapsed = max(0.0, now - self._bucket_updated_at)
            self._bucket_tokens = min(capacity, self._bucket_tokens + elapsed * rate)
        self._bucket_updated_at = now
        if self._bucket_tokens >= 1.0:
            self._bucket_tokens -= 1.0
            return None
        return (1.0 - self._bucket_tokens) / rate


def create_slack_app(state: SlackState) -> web.Application:
    """Build the aiohttp application that serves `state` under `/api/<method>`."""
    app = web.Application()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await _handle_call(state, request)

    async def respond(request: web.Request) -> web.Response:
        payload = await request.json()
        state.responses.setdefault(request.match_info["response_id"], []).append(payload)
        return web.Response(text="ok")

    app.router.add_route("POST", "/api/{method}", handle)
    app.router.add_route("GET", "/api/{method}", handle)
    # Stands in for the response_url that Slack puts in command and interaction payloads.
    app.router.add_route("POST", "/response/{response_id}", respond)
    return app


async def _handle_call(state: SlackState, request: web.Request) -> web.Response:
    method = request.match_info["method"]
    if state.latency_seconds > 0:
        await asyncio.sleep(state.latency_seconds)
    try:
        params = await _read_params(request)
    except ValueError:
        return _respond(state, method, {}, _Reply({"ok": False, "error": "invalid_json"}))

    token = _bearer_token(request) or params.pop("token", None)
    params.pop("token", None)
    if token != state.bot_token and token not in state.extra_tokens:
        return _respond(state, method, params, _error("invalid_auth"))

    scripted = state.fail_next.get(method)
    if scripted:
        status, error = scripted.pop(0)
        if status >= 500 and state.store_post_on_server_error and method == "chat.postMessage":
            _chat_post_message(state, params)
        return _respond(state, method, params, _failure(status, error))

    handler = _METHODS.get(method, _record_only)
    return _respond(state, method, params, handler(state, params))


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge query parameters with a form or JSON body. Raise ValueError on invalid JSON."""
    params: dict[str, Any] = dict(request.query)
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise ValueError("request body is not valid JSON") from exc
        if isinstance(body, dict):
            params.update(body)
    else:
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials.strip()


def _respond(state: SlackState, method: str, params: dict[str, Any], reply: _Reply) -> web.Response:
    state.calls.append(
        RecordedCall(method=method, params=params, status=reply.status, error=reply.error, at=state.clock())
    )
    logger.debug("Slack loopback %s: HTTP %d, error %s", method, reply.status, reply.error)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def _error(code: str, **extra: Any) -> _Reply:
    return _Reply({"ok": False, "error": code, **extra})


def _failure(status: int, error: str) -> _Reply:
    if status == 429:
        return _rate_limited(1.0)
    return _Reply({"ok": False, "error": error}, status=status)


def _rate_limited(wait_seconds: float) -> _Reply:
    # Slack sends Retry-After in whole seconds.
    retry_after = max(1, math.ceil(wait_seconds))
    return _Reply({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)})


def _flag(params: Mapping[str, Any], name: str, *, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes"}


def _json_value(value: Any) -> Any:
    """Decode a form field that carries JSON (blocks, metadata). Values from a JSON body pass through."""
    if isinstance(value, str):
        return json.loads(value)
    return value


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    """Return the offset in `cursor`, or raise ValueError when this server did not issue it."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(cursor) from exc
    prefix, _, number = text.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise ValueError(cursor)
    return int(number)


def _read_limit(params: Mapping[str, Any]) -> int:
    """Return the page size, or raise ValueError when it is outside 1 to 999."""
    raw = params.get("limit")
    if raw in (None, ""):
        return DEFAULT_LIST_LIMIT
    limit = int(raw)
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(raw)
    return limit


def _is_visible(channel: Mapping[str, Any]) -> bool:
    # A bot token can list every public channel but only the private channels it is a member of.
    return not channel["is_private"] or bool(channel["is_member"])


def _channel_view(channel: Mapping[str, Any]) -> dict[str, Any]:
    """Return the conversation object Slack would send, without the fake's own `restricted` flag."""
    return {
        "id": channel["id"],
        "name": channel["name"],
        "name_normalized": channel["name"],
        "is_channel": not channel["is_private"],
        "is_group": bool(channel["is_private"]),
        "is_private": bool(channel["is_private"]),
        "is_archived": bool(channel["is_archived"]),
        "is_member": bool(channel["is_member"]),
        "is_shared": bool(channel["is_ext_shared"]),
        "is_ext_shared": bool(channel["is_ext_shared"]),
        "is_org_shared": False,
    }


def _visible_channel(state: SlackState, params: Mapping[str, Any]) -> dict[str, Any] | None:
    channel = state.find_channel(str(params.get("channel", "")))
    if channel is None or not _is_visible(channel):
        return None
    return channel


# Method handlers: each takes the state and the request parameters and returns the reply.


def _auth_test(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    body = {
        "ok": True,
        "url": "https://segment-loopback.slack.com/",
        "team": state.team_name,
        "user": state.bot_name,
        "team_id": state.team_id,
        "user_id": state.bot_user_id,
        "bot_id": state.bot_id,
        "is_enterprise_install": False,
    }
    return _Reply(body, headers={"x-oauth-scopes": ",".join(state.scopes)})


def _conversations_list(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    raw_types = params.get("types", "public_channel")
    if isinstance(raw_types, list):
        raw_types = ",".join(str(item) for item in raw_types)
    types = {item.strip() for item in str(raw_types).split(",") if item.strip()}
    if not types or not types <= KNOWN_CONVERSATION_TYPES:
        return _error("invalid_types")
    exclude_archived = _flag(params, "exclude_archived")
    try:
        limit = _read_limit(params)
    except ValueError:
        return _error("invalid_limit")
    cursor = str(params.get("cursor") or "")
    try:
        offset = _decode_cursor(cursor) if cursor else 0
    except ValueError:
        return _error("invalid_cursor")

    def listed(channel: Mapping[str, Any]) -> bool:
        if channel.get("is_im"):
            return False
        kind = "private_channel" if channel["is_private"] else "public_channel"
        if kind not in types or not _is_visible(channel):
            return False
        return not (exclude_archived and channel["is_archived"])

    if state.short_pages:
        window = state.channels[offset : offset + limit]
        page = [channel for channel in window if listed(channel)]
        total = len(state.channels)
    else:
        candidates = [channel for channel in state.channels if listed(channel)]
        page = candidates[offset : offset + limit]
        total = len(candidates)
    next_offset = offset + limit
    next_cursor = _encode_cursor(next_offset) if next_offset < total else ""
    return _Reply(
        {
            "ok": True,
            "channels": [_channel_view(channel) for channel in page],
            "response_metadata": {"next_cursor": next_cursor},
        }
    )


def _conversations_info(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    channel = _visible_channel(state, params)
    if channel is None:
        return _error("channel_not_found")
    return _Reply({"ok": True, "channel": _channel_view(channel)})


def _conversations_join(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    channel = state.channel(str(params.get("channel", "")))
    if channel is None:
        return _error("channel_not_found")
    if channel["is_archived"]:
        return _error("is_archived")
    if channel["is_private"]:
        return _error("method_not_supported_for_channel_type")
    if channel["is_member"]:
        return _Reply(
            {
                "ok": True,
                "channel": _channel_view(channel),
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        )
    channel["is_member"] = True
    return _Reply({"ok": True, "channel": _channel_view(channel)})


def _chat_post_message(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    channel_ref = str(params.get("channel", ""))
    if state.roll(state.fail_rate_429):
        return _rate_limited(1.0)
    if state.roll(state.fail_rate_500):
        return _failure(500, "internal_error")
    workspace_wait = state.take_workspace_token()
    if workspace_wait is not None:
        return _rate_limited(workspace_wait)
    channel_wait = state.take_channel_slot(channel_ref)
    if channel_wait is not None:
        return _rate_limited(channel_wait)

    channel = _visible_channel(state, params)
    if channel is None:
        return _error("channel_not_found")
    if channel["is_archived"]:
        return _error("is_archived")
    if not channel["is_member"] and "chat:write.public" not in state.scopes:
        return _error("not_in_channel")
    if channel["restricted"]:
        return _error("restricted_action")
    content = _message_content(params)
    if isinstance(content, _Reply):
        return content

    message = {
        "type": "message",
        "ts": state.next_ts(),
        "user": state.bot_user_id,
        "bot_id": state.bot_id,
        **content,
    }
    state.messages.setdefault(channel["id"], []).append(message)
    if state.roll(state.fail_rate_500_after_store):
        return _failure(500, "internal_error")
    return _Reply({"ok": True, "channel": channel["id"], "ts": message["ts"], "message": _public_message(message)})


def _message_content(params: Mapping[str, Any]) -> dict[str, Any] | _Reply:
    """Return the text, blocks and metadata of a post, or the error reply Slack would send."""
    text = params.get("text")
    text = None if text in (None, "") else str(text)
    try:
        blocks = _json_value(params.get("blocks"))
    except json.JSONDecodeError:
        return _error("invalid_blocks")
    if blocks in (None, "", []):
        blocks = None
    elif not isinstance(blocks, list) or not all(isinstance(block, dict) and "type" in block for block in blocks):
        return _error("invalid_blocks")
    if text is None and blocks is None and not params.get("attachments"):
        return _error("no_text")
    if text is not None and len(text) > MAX_TEXT_LENGTH:
        return _error("msg_too_long")
    try:
        metadata = _json_value(params.get("metadata"))
    except json.JSONDecodeError:
        return _error("invalid_metadata_format")
    if metadata is not None and not (isinstance(metadata, dict) and "event_type" in metadata):
        return _error("invalid_metadata_format")

    content: dict[str, Any] = {"text": text or ""}
    if blocks is not None:
        content["blocks"] = blocks
    if params.get("thread_ts"):
        content["thread_ts"] = str(params["thread_ts"])
    if metadata is not None:
        content["metadata"] = metadata
    return content


def _public_message(message: Mapping[str, Any], *, include_metadata: bool = True) -> dict[str, Any]:
    if include_metadata:
        return dict(message)
    return {key: value for key, value in message.items() if key != "metadata"}


def _chat_post_ephemeral(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    channel = _visible_channel(state, params)
    if channel is None:
        return _error("channel_not_found")
    user = str(params.get("user", ""))
    if not user:
        return _error("user_not_found")
    content = _message_content(params)
    if isinstance(content, _Reply):
        return content
    ts = state.next_ts()
    state.ephemeral_messages.append({"channel": channel["id"], "user": user, "ts": ts, **content})
    return _Reply({"ok": True, "message_ts": ts})


def _find_message(state: SlackState, params: Mapping[str, Any]) -> tuple[str, int] | _Reply:
    """Return the channel id and index of the message at `ts`, or the error reply."""
    channel = _visible_channel(state, params)
    if channel is None:
        return _error("channel_not_found")
    ts = str(params.get("ts", ""))
    stored = state.messages.get(channel["id"], [])
    for index, message in enumerate(stored):
        if message["ts"] == ts:
            return channel["id"], index
    return _error("message_not_found")


def _chat_update(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    found = _find_message(state, params)
    if isinstance(found, _Reply):
        return found
    channel_id, index = found
    content = _message_content(params)
    if isinstance(content, _Reply):
        return content
    message = state.messages[channel_id][index]
    message.pop("blocks", None)
    message.update(content)
    message["edited"] = {"user": state.bot_user_id, "ts": state.next_ts()}
    return _Reply(
        {"ok": True, "channel": channel_id, "ts": message["ts"], "text": message["text"], "message": dict(message)}
    )


def _chat_delete(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    found = _find_message(state, params)
    if isinstance(found, _Reply):
        return found
    channel_id, index = found
    removed = state.messages[channel_id].pop(index)
    return _Reply({"ok": True, "channel": channel_id, "ts": removed["ts"]})


def _conversations_history(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    channel = _visible_channel(state, params)
    if channel is None:
        return _error("channel_not_found")
    if not channel["is_member"]:
        return _error("not_in_channel")
    try:
        limit = _read_limit(params)
    except ValueError:
        return _error("invalid_limit")
    cursor = str(params.get("cursor") or "")
    try:
        offset = _decode_cursor(cursor) if cursor else 0
    except ValueError:
        return _error("invalid_cursor")
    inclusive = _flag(params, "inclusive")
    oldest = float(params.get("oldest") or 0)
    latest = float(params["latest"]) if params.get("latest") else math.inf

    def in_range(message: Mapping[str, Any]) -> bool:
        ts = float(message["ts"])
        if inclusive:
            return oldest <= ts <= latest
        return oldest < ts < latest

    # Slack returns history newest first.
    selected = [message for message in reversed(state.messages.get(channel["id"], [])) if in_range(message)]
    page = selected[offset : offset + limit]
    has_more = offset + limit < len(selected)
    include_metadata = _flag(params, "include_all_metadata")
    return _Reply(
        {
            "ok": True,
            "messages": [_public_message(message, include_metadata=include_metadata) for message in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": _encode_cursor(offset + limit) if has_more else ""},
        }
    )


def _conversations_replies(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    """Return a thread oldest first: the parent at `ts`, then the messages posted with its thread_ts."""
    channel = _visible_channel(state, params)
    if channel is None:
        return _error("channel_not_found")
    if not channel["is_member"]:
        return _error("not_in_channel")
    try:
        limit = _read_limit(params)
    except ValueError:
        return _error("invalid_limit")
    cursor = str(params.get("cursor") or "")
    try:
        offset = _decode_cursor(cursor) if cursor else 0
    except ValueError:
        return _error("invalid_cursor")
    parent_ts = str(params.get("ts") or "")
    stored = state.messages.get(channel["id"], [])
    parent = next((message for message in stored if message["ts"] == parent_ts), None)
    if parent is None:
        return _error("thread_not_found")
    thread = [parent, *(message for message in stored if message.get("thread_ts") == parent_ts)]
    page = thread[offset : offset + limit]
    has_more = offset + limit < len(thread)
    include_metadata = _flag(params, "include_all_metadata")
    return _Reply(
        {
            "ok": True,
            "messages": [_public_message(message, include_metadata=include_metadata) for message in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": _encode_cursor(offset + limit) if has_more else ""},
        }
    )


def _users_info(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    user_id = str(params.get("user", ""))
    if user_id not in state.users:
        return _error("user_not_found")
    user = {
        "id": user_id,
        "team_id": state.team_id,
        "name": user_id.lower(),
        "deleted": False,
        "is_admin": False,
        "is_owner": False,
        "is_primary_owner": False,
        "is_bot": False,
        **state.users[user_id],
    }
    return _Reply({"ok": True, "user": user})


def _record_only(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    return _Reply({"ok": True})


def _store_view(state: SlackState, view: Any, *, view_id: str | None = None) -> dict[str, Any] | _Reply:
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return _error("invalid_arguments")
    blocks = view.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 100:
        return _error("invalid_arguments", detail="a view holds at most 100 blocks")
    stored = {
        **view,
        "id": view_id or f"V{len(state.views) + len(state.home_views) + 1:010d}",
        "hash": f"{time.time():.6f}.{state.next_ts()}",
        "state": {"values": {}},
    }
    state.views[stored["id"]] = stored
    return stored


def _views_open(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    # Slack accepts each trigger_id once, within 3 seconds of the interaction.
    if not params.get("trigger_id"):
        return _error("invalid_trigger_id")
    stored = _store_view(state, _json_value(params.get("view")))
    return stored if isinstance(stored, _Reply) else _Reply({"ok": True, "view": stored})


def _views_update(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    view_id = str(params.get("view_id") or "")
    if not view_id:
        external_id = params.get("external_id")
        view_id = next((key for key, view in state.views.items() if view.get("external_id") == external_id), "")
    current = state.views.get(view_id)
    if current is None:
        return _error("not_found")
    if params.get("hash") and params["hash"] != current["hash"]:
        return _error("hash_conflict")
    stored = _store_view(state, _json_value(params.get("view")), view_id=view_id)
    return stored if isinstance(stored, _Reply) else _Reply({"ok": True, "view": stored})


def _views_publish(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    user_id = str(params.get("user_id") or "")
    if not user_id:
        return _error("invalid_arguments")
    stored = _store_view(state, _json_value(params.get("view")))
    if isinstance(stored, _Reply):
        return stored
    state.views.pop(stored["id"], None)
    state.home_views[user_id] = stored
    return _Reply({"ok": True, "view": stored})


def _conversations_open(state: SlackState, params: Mapping[str, Any]) -> _Reply:
    users = [user for user in str(params.get("users", "")).split(",") if user]
    if len(users) != 1:
        return _error("invalid_arguments")
    dm = state.open_dm(users[0])
    return _Reply({"ok": True, "channel": {"id": dm["id"], "is_im": True, "user": users[0]}})


_METHODS: dict[str, Callable[[SlackState, Mapping[str, Any]], _Reply]] = {
    "views.open": _views_open,
    "views.push": _views_open,
    "views.update": _views_update,
    "views.publish": _views_publish,
    "conversations.open": _conversations_open,
    "auth.test": _auth_test,
    "conversations.list": _conversations_list,
    "conversations.info": _conversations_info,
    "conversations.join": _conversations_join,
    "conversations.history": _conversations_history,
    "conversations.replies": _conversations_replies,
    "chat.postMessage": _chat_post_message,
    "chat.postEphemeral": _chat_post_ephemeral,
    "chat.update": _chat_update,
    "chat.delete": _chat_delete,
    "users.info": _users_info,
}


def _load_channels(path: Path) -> list[dict[str, Any]]:
    """Read a JSON list of channel dicts, or an object with a `channels` list."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("channels")
    if not isinstance(data, list) or not all(isinstance(item, dict) and "id" in item and "name" in item for item in data):
        raise SystemExit(f"{path}: expected a JSON list of channel objects with at least `id` and `name`.")
    return data


async def _serve(args: argparse.Namespace) -> None:
    if args.channels:
        channels = _load_channels(args.channels)
    else:
        # Lazy import: the sample generator is only needed when no channel file is given.
        from loopback.sample_data import generate_sample

        channels = generate_sample(seed=args.seed, today=args.today, company_count=args.companies).channels
    state = SlackState(
        channels=channels,
        bot_token=args.token,
        short_pages=args.short_pages,
        workspace_posts_per_second=args.workspace_posts_per_second,
        latency_seconds=args.latency,
    )
    server = await start_server(create_slack_app(state), port=args.port)
    print(f"Slack Web API on {server.url}/api/ ({len(channels)} channels, token {args.token})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
        logger.info("Slack loopback server stopped after %d calls", len(state.calls))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loopback.slack_server",
        description="Serve a fake Slack Web API on 127.0.0.1 for demos and manual tests.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port to listen on, or 0 for a free one (default 0)")
    parser.add_argument(
        "--channels",
        type=Path,
        help="JSON file with the workspace's channel objects (default: the channels of the generated sample)",
    )
    parser.add_argument("--seed", type=int, default=20261204, help="seed of the generated sample (default 20261204)")
    parser.add_argument(
        "--today", type=date.fromisoformat, default=date.today(), help="date the sample is generated for (YYYY-MM-DD)"
    )
    parser.add_argument("--companies", type=int, default=2000, help="companies in the generated sample (default 2000)")
    parser.add_argument("--token", default="xoxb-loopback", help="bot token the server accepts (default xoxb-loopback)")
    parser.add_argument(
        "--workspace-posts-per-second",
        type=float,
        help="workspace-wide chat.postMessage limit in posts per second (default: no limit)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="delay before each reply, in seconds (default 0)")
    parser.add_argument(
        "--short-pages", action="store_true", help="cut conversations.list pages before filtering, as Slack does"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
