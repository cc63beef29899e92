"""The loopback Slack Web API: each method's responses, paging, rate limits, scripted failures, records."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from loopback.server import RunningServer, start_server
from loopback.slack_server import SlackState, create_slack_app
from tests.fakes import ManualClock, slack_channel

TOKEN = "xoxb-test-token"


class SlackCaller:
    """Send raw Web API requests to a loopback server and return (HTTP status, headers, JSON body)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __call__(
        self, method: str, params: dict[str, Any] | None = None, *, token: str | None = TOKEN, as_json: bool = False
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session:
            if as_json:
                request = session.post(f"{self.url}/api/{method}", json=params or {}, headers=headers)
            else:
                request = session.post(f"{self.url}/api/{method}", data=params or {}, headers=headers)
            async with request as response:
                return response.status, dict(response.headers), await response.json()


ServeSlack = Callable[[SlackState], Awaitable[SlackCaller]]


@pytest.fixture
async def serve() -> AsyncIterator[ServeSlack]:
    servers: list[RunningServer] = []

    async def start(state: SlackState) -> SlackCaller:
        server = await start_server(create_slack_app(state))
        servers.append(server)
        return SlackCaller(server.url)

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _workspace(**switches: Any) -> SlackState:
    channels = [
        slack_channel("C0PUBLIC1", "customer-acme"),
        slack_channel("C0OUTSIDE", "customer-globex", is_member=False),
        slack_channel("G0PRIVIN1", "customer-initech", is_private=True),
        slack_channel("G0PRIVOUT", "customer-hooli", is_private=True, is_member=False),
        slack_channel("C0ARCHIVE", "customer-old", is_archived=True),
        slack_channel("C0RESTRIC", "announcements", restricted=True),
        slack_channel("C0SHARED1", "customer-umbrella", is_ext_shared=True),
    ]
    return SlackState(channels=channels, bot_token=TOKEN, **switches)


async def test_auth_test_returns_identity_and_scopes(serve: ServeSlack) -> None:
    state = _workspace(scopes=("chat:write", "channels:read"))
    call = await serve(state)

    status, headers, body = await call("auth.test")

    assert status == 200
    assert body["ok"] is True
    assert body["team_id"] == "T0SEGMENT"
    assert body["user_id"] == state.bot_user_id
    assert headers["x-oauth-scopes"] == "chat:write,channels:read"


async def test_auth_test_through_slack_sdk_client(serve: ServeSlack) -> None:
    call = await serve(_workspace())
    client = AsyncWebClient(token=TOKEN, base_url=f"{call.url}/api/", retry_handlers=[])

    response = await client.auth_test()

    assert response["bot_id"] == "B0SEGBOT"
    assert "chat:write" in response.headers["x-oauth-scopes"]


@pytest.mark.parametrize("token", ["xoxb-wrong", None])
async def test_bad_or_missing_token_is_invalid_auth(serve: ServeSlack, token: str | None) -> None:
    state = _workspace()
    call = await serve(state)

    status, _, body = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "hi"}, token=token)

    assert status == 200
    assert body == {"ok": False, "error": "invalid_auth"}
    assert state.posts_in("C0PUBLIC1") == []


async def test_token_in_form_field_is_accepted(serve: ServeSlack) -> None:
    call = await serve(_workspace())

    _, _, body = await call("auth.test", {"token": TOKEN}, token=None)

    assert body["ok"] is True


async def test_form_and_json_bodies_both_post(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]

    _, _, form_body = await call("chat.postMessage", {"channel": "C0PUBLIC1", "blocks": json.dumps(blocks)})
    _, _, json_body = await call("chat.postMessage", {"channel": "G0PRIVIN1", "blocks": blocks}, as_json=True)

    assert form_body["ok"] is True
    assert json_body["ok"] is True
    assert state.posts_in("C0PUBLIC1")[0]["blocks"] == blocks
    assert state.posts_in("G0PRIVIN1")[0]["blocks"] == blocks


async def test_conversations_list_pages_with_cursor(serve: ServeSlack) -> None:
    channels = [slack_channel(f"C{index:08d}", f"channel-{index}") for index in range(250)]
    call = await serve(SlackState(channels=channels, bot_token=TOKEN))

    pages = []
    cursor = ""
    while True:
        _, _, body = await call(
            "conversations.list", {"limit": "100", "cursor": cursor, "types": "public_channel"}
        )
        pages.append([channel["id"] for channel in body["channels"]])
        cursor = body["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert [len(page) for page in pages] == [100, 100, 50]
    assert [channel_id for page in pages for channel_id in page] == [channel["id"] for channel in channels]


async def test_conversations_list_default_limit_is_100(serve: ServeSlack) -> None:
    channels = [slack_channel(f"C{index:08d}", f"channel-{index}") for index in range(150)]
    call = await serve(SlackState(channels=channels, bot_token=TOKEN))

    _, _, body = await call("conversations.list")

    assert len(body["channels"]) == 100
    assert body["response_metadata"]["next_cursor"] != ""


@pytest.mark.parametrize("limit", ["0", "1000"])
async def test_conversations_list_rejects_limit_out_of_range(serve: ServeSlack, limit: str) -> None:
    call = await serve(_workspace())

    _, _, body = await call("conversations.list", {"limit": limit})

    assert body == {"ok": False, "error": "invalid_limit"}


async def test_conversations_list_rejects_unknown_cursor(serve: ServeSlack) -> None:
    call = await serve(_workspace())

    _, _, body = await call("conversations.list", {"cursor": "not-a-cursor"})

    assert body == {"ok": False, "error": "invalid_cursor"}


async def test_conversations_list_hides_private_channels_without_bot(serve: ServeSlack) -> None:
    call = await serve(_workspace())

    _, _, body = await call("conversations.list", {"types": "public_channel,private_channel"})

    ids = {channel["id"] for channel in body["channels"]}
    assert "G0PRIVIN1" in ids
    assert "G0PRIVOUT" not in ids
    assert "C0ARCHIVE" in ids
    assert "restricted" not in body["channels"][0]


async def test_conversations_list_filters_types_and_archived(serve: ServeSlack) -> None:
    call = await serve(_workspace())

    _, _, public_only = await call("conversations.list")
    _, _, unarchived = await call(
        "conversations.list", {"types": "public_channel,private_channel", "exclude_archived": "true"}
    )

    assert all(not channel["is_private"] for channel in public_only["channels"])
    assert "C0ARCHIVE" not in {channel["id"] for channel in unarchived["channels"]}
    assert "G0PRIVIN1" in {channel["id"] for channel in unarchived["channels"]}


async def test_conversations_list_rejects_unknown_types(serve: ServeSlack) -> None:
    call = await serve(_workspace())

    _, _, body = await call("conversations.list", {"types": "public_channel,shared_drive"})

    assert body == {"ok": False, "error": "invalid_types"}


async def test_short_pages_can_be_empty_while_more_remain(serve: ServeSlack) -> None:
    channels = [
        *[slack_channel(f"C1{index:07d}", f"first-{index}") for index in range(3)],
        *[slack_channel(f"G2{index:07d}", f"hidden-{index}", is_private=True, is_member=False) for index in range(4)],
        *[slack_channel(f"C3{index:07d}", f"last-{index}") for index in range(3)],
    ]
    call = await serve(SlackState(channels=channels, bot_token=TOKEN, short_pages=True))

    pages = []
    cursors = []
    cursor = ""
    while True:
        _, _, body = await call(
            "conversations.list", {"limit": "3", "cursor": cursor, "types": "public_channel,private_channel"}
        )
        pages.append([channel["id"] for channel in body["channels"]])
        cursor = body["response_metadata"]["next_cursor"]
        cursors.append(cursor)
        if not cursor:
            break

    assert [len(page) for page in pages] == [3, 0, 2, 1]
    assert all(cursors[:-1])
    assert sum(pages, []) == [channel["id"] for channel in channels if not channel["id"].startswith("G2")]


async def test_conversations_info_hides_private_without_bot(serve: ServeSlack) -> None:
    call = await serve(_workspace())

    _, _, visible = await call("conversations.info", {"channel": "C0SHARED1"})
    _, _, hidden = await call("conversations.info", {"channel": "G0PRIVOUT"})

    assert visible["channel"]["is_ext_shared"] is True
    assert hidden == {"ok": False, "error": "channel_not_found"}


async def test_conversations_join_public_channel(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)

    _, _, first = await call("conversations.join", {"channel": "C0OUTSIDE"})
    _, _, second = await call("conversations.join", {"channel": "C0OUTSIDE"})

    assert first["ok"] is True
    assert "warning" not in first
    assert state.channel("C0OUTSIDE")["is_member"] is True  # type: ignore[index]
    assert second["ok"] is True
    assert second["warning"] == "already_in_channel"


@pytest.mark.parametrize(
    ("channel_id", "error"),
    [
        ("G0PRIVOUT", "method_not_supported_for_channel_type"),
        ("C0ARCHIVE", "is_archived"),
        ("C0MISSING", "channel_not_found"),
    ],
)
async def test_conversations_join_errors(serve: ServeSlack, channel_id: str, error: str) -> None:
    call = await serve(_workspace())

    _, _, body = await call("conversations.join", {"channel": channel_id})

    assert body == {"ok": False, "error": error}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"channel": "C0MISSING", "text": "hi"}, "channel_not_found"),
        ({"channel": "G0PRIVOUT", "text": "hi"}, "channel_not_found"),
        ({"channel": "C0ARCHIVE", "text": "hi"}, "is_archived"),
        ({"channel": "C0OUTSIDE", "text": "hi"}, "not_in_channel"),
        ({"channel": "C0RESTRIC", "text": "hi"}, "restricted_action"),
        ({"channel": "C0PUBLIC1", "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": "C0PUBLIC1"}, "no_text"),
        ({"channel": "C0PUBLIC1", "blocks": '[{"text": "no type"}]'}, "invalid_blocks"),
    ],
)
async def test_post_message_errors(serve: ServeSlack, params: dict[str, Any], error: str) -> None:
    state = _workspace()
    call = await serve(state)

    status, _, body = await call("chat.postMessage", params)

    assert status == 200
    assert body == {"ok": False, "error": error}
    assert sum(len(messages) for messages in state.messages.values()) == 0


async def test_post_message_at_max_length_is_stored(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)

    _, _, body = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "x" * 40_000})

    assert body["ok"] is True
    assert len(state.posts_in("C0PUBLIC1")) == 1


async def test_public_scope_allows_posting_without_membership(serve: ServeSlack) -> None:
    state = _workspace(scopes=("chat:write", "chat:write.public"))
    call = await serve(state)

    _, _, body = await call("chat.postMessage", {"channel": "C0OUTSIDE", "text": "hi"})

    assert body["ok"] is True


async def test_post_message_stores_unique_ts_and_metadata(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)
    metadata = {"event_type": "segment_broadcast", "event_payload": {"broadcast_id": 7, "delivery_id": 9}}

    _, _, first = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "one", "metadata": metadata}, as_json=True)
    _, _, second = await call("chat.postMessage", {"channel": "G0PRIVIN1", "text": "two"})

    assert first["ts"] != second["ts"]
    assert state.posts_in("C0PUBLIC1")[0]["metadata"] == metadata
    assert state.posts_in("C0PUBLIC1")[0]["ts"] == first["ts"]
    assert "metadata" not in state.posts_in("G0PRIVIN1")[0]


async def test_history_includes_metadata_only_when_asked(serve: ServeSlack, clock: ManualClock) -> None:
    state = _workspace(clock=clock)
    call = await serve(state)
    metadata = {"event_type": "segment_broadcast", "event_payload": {"broadcast_id": 1, "delivery_id": 2}}
    await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "older", "metadata": metadata}, as_json=True)
    clock.advance(1.0)
    await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "newer"})

    _, _, plain = await call("conversations.history", {"channel": "C0PUBLIC1"})
    _, _, with_metadata = await call(
        "conversations.history", {"channel": "C0PUBLIC1", "include_all_metadata": "true"}
    )

    assert [message["text"] for message in plain["messages"]] == ["newer", "older"]
    assert all("metadata" not in message for message in plain["messages"])
    assert with_metadata["messages"][1]["metadata"] == metadata


async def test_history_pages_with_limit(serve: ServeSlack, clock: ManualClock) -> None:
    state = _workspace(clock=clock)
    call = await serve(state)
    for index in range(3):
        await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": f"message {index}"})
        clock.advance(1.0)

    _, _, first = await call("conversations.history", {"channel": "C0PUBLIC1", "limit": "2"})
    _, _, rest = await call(
        "conversations.history",
        {"channel": "C0PUBLIC1", "limit": "2", "cursor": first["response_metadata"]["next_cursor"]},
    )

    assert [message["text"] for message in first["messages"]] == ["message 2", "message 1"]
    assert first["has_more"] is True
    assert [message["text"] for message in rest["messages"]] == ["message 0"]
    assert rest["has_more"] is False


async def test_update_and_delete_change_stored_message(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)
    _, _, posted = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "draft"})

    _, _, updated = await call("chat.update", {"channel": "C0PUBLIC1", "ts": posted["ts"], "text": "final"})
    text_after_update = state.posts_in("C0PUBLIC1")[0]["text"]
    _, _, deleted = await call("chat.delete", {"channel": "C0PUBLIC1", "ts": posted["ts"]})
    _, _, missing = await call("chat.delete", {"channel": "C0PUBLIC1", "ts": posted["ts"]})

    assert updated["ok"] is True
    assert text_after_update == "final"
    assert deleted["ok"] is True
    assert state.posts_in("C0PUBLIC1") == []
    assert missing == {"ok": False, "error": "message_not_found"}


async def test_post_ephemeral_is_stored_apart(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)

    _, _, body = await call("chat.postEphemeral", {"channel": "C0PUBLIC1", "user": "U0ALICE", "text": "only you"})

    assert body["ok"] is True
    assert state.ephemeral_messages[0]["user"] == "U0ALICE"
    assert state.ephemeral_messages[0]["ts"] == body["message_ts"]
    assert state.posts_in("C0PUBLIC1") == []


async def test_users_info_reads_admin_flags(serve: ServeSlack) -> None:
    call = await serve(_workspace(users={"U0ADMIN": {"is_admin": True}, "U0MEMBER": {}}))

    _, _, admin = await call("users.info", {"user": "U0ADMIN"})
    _, _, member = await call("users.info", {"user": "U0MEMBER"})
    _, _, unknown = await call("users.info", {"user": "U0NOBODY"})

    assert admin["user"]["is_admin"] is True
    assert admin["user"]["is_owner"] is False
    assert member["user"]["is_admin"] is False
    assert unknown == {"ok": False, "error": "user_not_found"}


async def test_unknown_method_is_recorded_and_ok(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)

    _, _, body = await call("pins.add", {"channel": "C1", "timestamp": "123.456"})

    assert body == {"ok": True}
    recorded = state.calls_to("pins.add")
    assert len(recorded) == 1
    assert recorded[0].params["timestamp"] == "123.456"


async def test_views_update_rejects_stale_hash(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)
    modal = json.dumps({"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": []})

    _, _, opened = await call("views.open", {"trigger_id": "1.2", "view": modal})
    view_id, first_hash = opened["view"]["id"], opened["view"]["hash"]
    _, _, updated = await call("views.update", {"view_id": view_id, "hash": first_hash, "view": modal})
    _, _, stale = await call("views.update", {"view_id": view_id, "hash": first_hash, "view": modal})
    _, _, no_trigger = await call("views.open", {"view": modal})

    assert updated["ok"] is True
    assert updated["view"]["hash"] != first_hash
    assert stale == {"ok": False, "error": "hash_conflict"}
    assert no_trigger == {"ok": False, "error": "invalid_trigger_id"}


async def test_post_to_user_id_lands_in_direct_message(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)

    _, _, posted = await call("chat.postMessage", {"channel": "U0ALICE", "text": "report"})
    _, _, listed = await call("conversations.list", {"types": "public_channel,private_channel"})

    assert posted["ok"] is True
    assert posted["channel"] == "D0ALICE"
    assert [message["text"] for message in state.dm_messages("U0ALICE")] == ["report"]
    assert "D0ALICE" not in [channel["id"] for channel in listed["channels"]]


async def test_views_publish_stores_home_per_user(serve: ServeSlack) -> None:
    state = _workspace()
    call = await serve(state)
    home = json.dumps({"type": "home", "blocks": [{"type": "divider"}]})

    _, _, published = await call("views.publish", {"user_id": "U0ALICE", "view": home})

    assert published["ok"] is True
    assert state.home_views["U0ALICE"]["blocks"] == [{"type": "divider"}]


async def test_calls_are_recorded_without_token(serve: ServeSlack, clock: ManualClock) -> None:
    state = _workspace(clock=clock)
    call = await serve(state)

    await call("chat.postMessage", {"channel": "C0ARCHIVE", "text": "hi", "token": TOKEN}, token=None)

    [recorded] = state.calls
    assert recorded.method == "chat.postMessage"
    assert recorded.params == {"channel": "C0ARCHIVE", "text": "hi"}
    assert recorded.status == 200
    assert recorded.error == "is_archived"
    assert recorded.at == clock.now


async def test_channel_rate_limit_returns_429(serve: ServeSlack, clock: ManualClock) -> None:
    state = _workspace(clock=clock)
    call = await serve(state)
    await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "first"})

    status, headers, body = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "too soon"})
    _, _, other_channel = await call("chat.postMessage", {"channel": "G0PRIVIN1", "text": "elsewhere"})
    clock.advance(1.0)
    _, _, later = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "later"})

    assert status == 429
    assert headers["Retry-After"] == "1"
    assert body == {"ok": False, "error": "ratelimited"}
    assert other_channel["ok"] is True
    assert later["ok"] is True
    assert [message["text"] for message in state.posts_in("C0PUBLIC1")] == ["first", "later"]


async def test_workspace_rate_limit_computes_retry_after(serve: ServeSlack, clock: ManualClock) -> None:
    # At 0.25 posts per second the bucket has room for one post and refills it every 4 seconds.
    state = _workspace(clock=clock, workspace_posts_per_second=0.25)
    call = await serve(state)
    await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "first"})

    status, headers, body = await call("chat.postMessage", {"channel": "G0PRIVIN1", "text": "second"})
    clock.advance(4.0)
    _, _, after_wait = await call("chat.postMessage", {"channel": "G0PRIVIN1", "text": "second again"})

    assert status == 429
    assert headers["Retry-After"] == "4"
    assert body["error"] == "ratelimited"
    assert after_wait["ok"] is True


async def test_workspace_bucket_allows_one_second_burst(serve: ServeSlack, clock: ManualClock) -> None:
    channels = [slack_channel(f"C{index:08d}", f"channel-{index}") for index in range(5)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock, workspace_posts_per_second=3)
    call = await serve(state)

    statuses = []
    for channel in channels:
        status, _, _ = await call("chat.postMessage", {"channel": channel["id"], "text": "hi"})
        statuses.append(status)

    assert statuses == [200, 200, 200, 429, 429]


async def test_fail_next_scripts_failures_in_order(serve: ServeSlack) -> None:
    state = _workspace(fail_next={"chat.postMessage": [(500, "internal_error"), (429, "ratelimited")]})
    call = await serve(state)

    first = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "hi"})
    second = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "hi"})
    third = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "hi"})

    assert (first[0], first[2]["error"]) == (500, "internal_error")
    assert (second[0], second[1]["Retry-After"]) == (429, "1")
    assert third[2]["ok"] is True
    assert len(state.posts_in("C0PUBLIC1")) == 1


async def test_server_error_can_store_post_first(serve: ServeSlack) -> None:
    state = _workspace(fail_next={"chat.postMessage": [(500, "internal_error")]}, store_post_on_server_error=True)
    call = await serve(state)

    status, _, _ = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "lost answer"})

    assert status == 500
    assert [message["text"] for message in state.posts_in("C0PUBLIC1")] == ["lost answer"]


@pytest.mark.parametrize(("switch", "status"), [("fail_rate_429", 429), ("fail_rate_500", 500)])
async def test_failure_rates_fail_posts(serve: ServeSlack, switch: str, status: int) -> None:
    state = _workspace(**{switch: 1.0})
    call = await serve(state)

    answered, _, _ = await call("chat.postMessage", {"channel": "C0PUBLIC1", "text": "hi"})

    assert answered == status
    assert state.posts_in("C0PUBLIC1") == []


async def test_failure_rate_is_repeatable_with_seed(serve: ServeSlack, clock: ManualClock) -> None:
    channels = [slack_channel(f"C{index:08d}", f"channel-{index}") for index in range(40)]
    outcomes = []
    for _ in range(2):
        state = SlackState(channels=channels, bot_token=TOKEN, clock=clock, fail_rate_429=0.5, seed=7)
        call = await serve(state)
        statuses = [
            (await call("chat.postMessage", {"channel": channel["id"], "text": "hi"}))[0] for channel in channels
        ]
        outcomes.append(statuses)

    assert outcomes[0] == outcomes[1]
    assert 200 in outcomes[0]
    assert 429 in outcomes[0]


async def test_module_runs_as_command(tmp_path: Path) -> None:
    channels_file = tmp_path / "channels.json"
    channels_file.write_text(json.dumps([slack_channel("C0CLI0001", "customer-cli")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loopback.slack_server",
        "--port",
        "0",
        "--channels",
        str(channels_file),
        "--token",
        TOKEN,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        base_url = next(word for word in line.split() if word.startswith("http://"))
        client = AsyncWebClient(token=TOKEN, base_url=base_url, retry_handlers=[])

        response = await client.conversations_list()

        assert [channel["name"] for channel in response["channels"]] == ["customer-cli"]
    finally:
        process.terminate()
        await process.wait()


async def test_sdk_client_raises_on_slack_errors(serve: ServeSlack) -> None:
    call = await serve(_workspace())
    client = AsyncWebClient(token=TOKEN, base_url=f"{call.url}/api/", retry_handlers=[])

    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C0ARCHIVE", text="hi")

    assert raised.value.response["error"] == "is_archived"
