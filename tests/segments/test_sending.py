"""BroadcastSender against the loopback Slack server through a real AsyncWebClient.

Most tests share one ManualClock between the server and the sender, so rate limits, Retry-After
waits and per-channel pacing run without real waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from loopback.server import start_server
from loopback.slack_server import SlackState, create_slack_app
from segments.ports import DeliveryRecord, DeliveryStatus, DeliveryTarget, NewBroadcast, QualifyingCompany
from segments.sending import MAX_ATTEMPTS, BroadcastSender
from tests.fakes import InMemoryDeliveryLog, ManualClock, SlackStarter, slack_channel

TOKEN = "xoxb-test"
PENDING, SENDING, SENT, FAILED, UNCONFIRMED = (
    DeliveryStatus.PENDING,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.UNCONFIRMED,
)


def _broadcast(
    channels: Sequence[dict[str, Any]], *, text: str = "Office hours on Thursday", blocks: list[Any] | None = None
) -> NewBroadcast:
    targets = [
        DeliveryTarget(
            channel_id=channel["id"],
            channel_name=channel["name"],
            is_private=bool(channel.get("is_private", False)),
            companies=[QualifyingCompany(company_id=f"co-{channel['id']}", company_name=channel["name"])],
        )
        for channel in channels
    ]
    return NewBroadcast(
        team_id="T0SEGMENT",
        segment_id=1,
        segment_name="Onboarding",
        rules_text='Lifecycle Stage equals "Onboarding"',
        message_text=text,
        message_blocks=blocks,
        sent_by="U0SENDER",
        targets=targets,
    )


def _sender(
    client: AsyncWebClient, log: InMemoryDeliveryLog, clock: ManualClock, **options: Any
) -> BroadcastSender:
    return BroadcastSender(client=client, log=log, sleep=clock.sleep, clock=clock, **options)


def _by_channel(deliveries: Sequence[DeliveryRecord]) -> dict[str, DeliveryRecord]:
    return {delivery.channel_id: delivery for delivery in deliveries}


def _post_calls(state: SlackState, channel_id: str) -> list[Any]:
    return [call for call in state.calls_to("chat.postMessage") if call.params.get("channel") == channel_id]


async def test_send_posts_once_per_channel(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [
        slack_channel("C0ACME001", "customer-acme"),
        slack_channel("C0GLOBEX1", "customer-globex", is_ext_shared=True),
        slack_channel("G0INITECH", "customer-initech", is_private=True),
        *[slack_channel(f"C0MORE{index:03d}", f"customer-more-{index}") for index in range(9)],
    ]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    assert record.status == "sent"
    assert len(state.calls_to("chat.postMessage")) == len(channels)
    for delivery in record.deliveries:
        stored = state.posts_in(delivery.channel_id)
        assert len(stored) == 1, delivery.channel_name
        assert stored[0]["text"] == "Office hours on Thursday"
        assert delivery.status == SENT
        assert delivery.ts == stored[0]["ts"]
        assert delivery.attempts == 1


async def test_send_under_workspace_limit_delivers_each_once(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel(f"C0LIMIT{index:02d}", f"customer-{index}") for index in range(12)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock, workspace_posts_per_second=3)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock, concurrency=8).send(_broadcast(channels))

    post_calls = state.calls_to("chat.postMessage")
    assert any(call.status == 429 for call in post_calls), "the limit never triggered, so the test proves nothing"
    assert record.status == "sent"
    assert sum(call.status == 200 for call in post_calls) == len(channels)
    assert all(len(state.posts_in(channel["id"])) == 1 for channel in channels)
    assert sum(delivery.attempts for delivery in record.deliveries) == len(post_calls)


async def test_rate_limit_pauses_every_worker(start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog) -> None:
    # Real time, because a manual clock moves for every worker whenever one of them sleeps.
    channels = [slack_channel(f"C0PAUSE{index:02d}", f"customer-{index}") for index in range(6)]
    state = SlackState(channels=channels, bot_token=TOKEN, fail_next={"chat.postMessage": [(429, "ratelimited")]})
    client = await start_slack(state)

    await BroadcastSender(client=client, log=delivery_log, concurrency=2).send(_broadcast(channels))

    [limited] = [call for call in state.calls if call.status == 429]
    during_pause = [
        call for call in state.calls_to("chat.postMessage") if call.status == 200 and call.at < limited.at + 0.5
    ]
    # Retry-After is one second. The other worker's post may already be in flight, and it may
    # start one more before it notices the pause. Without a pause it would post all five at once.
    assert len(during_pause) <= 2
    assert all(len(state.posts_in(channel["id"])) == 1 for channel in channels)


async def test_not_in_channel_joins_then_posts(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0OUTSIDE", "customer-umbrella", is_member=False)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    [delivery] = record.deliveries
    assert [(call.method, call.error) for call in state.calls] == [
        ("chat.postMessage", "not_in_channel"),
        ("conversations.join", None),
        ("chat.postMessage", None),
    ]
    assert state.calls[2].at - state.calls[0].at >= 1.0
    assert delivery.status == SENT
    assert delivery.attempts == 2
    assert len(state.posts_in("C0OUTSIDE")) == 1
    assert delivery_log.statuses_of(delivery.id) == [PENDING, SENDING, SENDING, SENT]


async def test_private_not_in_channel_fails_with_invite(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("G0INITECH", "customer-initech", is_private=True)]
    state = SlackState(
        channels=channels, bot_token=TOKEN, clock=clock, fail_next={"chat.postMessage": [(200, "not_in_channel")]}
    )
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    [delivery] = record.deliveries
    assert state.calls_to("conversations.join") == []
    assert delivery.status == FAILED
    assert delivery.error == "not_in_channel"
    assert delivery.reason is not None
    assert "Invite @segment-bot to #customer-initech" in delivery.reason


async def test_join_error_is_recorded(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0OUTSIDE", "customer-umbrella", is_member=False)]
    state = SlackState(
        channels=channels,
        bot_token=TOKEN,
        clock=clock,
        fail_next={"conversations.join": [(200, "channel_is_limited_access")]},
    )
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    [delivery] = record.deliveries
    assert len(state.calls_to("chat.postMessage")) == 1
    assert delivery.error == "channel_is_limited_access"
    assert delivery.reason == (
        "Slack returned the error channel_is_limited_access for #customer-umbrella. Check the channel, then resend."
    )


async def test_channel_errors_fail_with_reasons_and_others_deliver(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [
        slack_channel("C0ARCHIVE", "customer-oldco", is_archived=True),
        slack_channel("C0ACME001", "customer-acme"),
        slack_channel("C0RESTRIC", "customer-readonly", restricted=True),
        slack_channel("G0REMOVED", "customer-hooli", is_private=True, is_member=False),
        slack_channel("C0GLOBEX1", "customer-globex"),
    ]
    deleted = slack_channel("C0DELETED", "customer-gone")
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast([*channels, deleted]))

    deliveries = _by_channel(record.deliveries)
    assert record.status == "partially_sent"
    assert deliveries["C0ACME001"].status == SENT
    assert deliveries["C0GLOBEX1"].status == SENT
    expected = {
        "C0ARCHIVE": ("is_archived", "#customer-oldco is archived. Unarchive it, then resend."),
        "C0RESTRIC": ("restricted_action", "Posting in #customer-readonly is restricted"),
        "G0REMOVED": ("channel_not_found", "#customer-hooli was not found."),
        "C0DELETED": ("channel_not_found", "#customer-gone was not found."),
    }
    for channel_id, (error, reason_start) in expected.items():
        delivery = deliveries[channel_id]
        assert delivery.status == FAILED, channel_id
        assert delivery.error == error, channel_id
        assert delivery.reason is not None and delivery.reason.startswith(reason_start), delivery.reason
        assert delivery.attempts == 1, channel_id


async def test_every_delivery_is_recorded_before_and_after_posting(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme"), slack_channel("C0ARCHIVE", "customer-oldco", is_archived=True)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    deliveries = _by_channel(record.deliveries)
    assert delivery_log.statuses_of(deliveries["C0ACME001"].id) == [PENDING, SENDING, SENT]
    assert delivery_log.statuses_of(deliveries["C0ARCHIVE"].id) == [PENDING, SENDING, FAILED]


async def test_metadata_and_blocks_are_attached(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme")]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Office hours* on Thursday"}}]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels, blocks=blocks))

    [delivery] = record.deliveries
    [stored] = state.posts_in("C0ACME001")
    assert stored["metadata"] == {
        "event_type": "segment_broadcast",
        "event_payload": {"broadcast_id": record.id, "delivery_id": delivery.id},
    }
    assert stored["blocks"] == blocks
    assert state.calls_to("chat.postMessage")[0].params["unfurl_links"] is False


@pytest.mark.parametrize(("status", "error"), [(500, "internal_error"), (503, "service_unavailable"), (200, "fatal_error")])
async def test_unknown_outcome_without_history_scope_is_unconfirmed(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock, status: int, error: str
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme"), slack_channel("C0GLOBEX1", "customer-globex")]
    state = SlackState(
        channels=channels,
        bot_token=TOKEN,
        clock=clock,
        fail_next={"chat.postMessage": [(status, error)]},
        store_post_on_server_error=True,
    )
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock, concurrency=1).send(_broadcast(channels))

    deliveries = _by_channel(record.deliveries)
    unconfirmed = deliveries["C0ACME001"]
    assert len(_post_calls(state, "C0ACME001")) == 1
    assert state.calls_to("conversations.history") == []
    assert unconfirmed.status == UNCONFIRMED
    assert unconfirmed.error == "unknown_outcome"
    assert unconfirmed.reason == (
        "Slack did not confirm the post, and segment-bot cannot read #customer-acme's history to "
        "check, so it was not posted again. Check #customer-acme."
    )
    assert deliveries["C0GLOBEX1"].status == SENT


async def test_server_error_leaves_at_most_one_message(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme")]
    state = SlackState(
        channels=channels,
        bot_token=TOKEN,
        clock=clock,
        fail_next={"chat.postMessage": [(500, "internal_error")]},
        store_post_on_server_error=True,
    )
    client = await start_slack(state)

    await _sender(client, delivery_log, clock).send(_broadcast(channels))

    assert len(state.posts_in("C0ACME001")) == 1


async def test_timeout_is_unknown_outcome(start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog) -> None:
    # Real time: slack-sdk's smallest timeout is one second, so the server responds after two.
    channels = [slack_channel("C0ACME001", "customer-acme")]
    state = SlackState(channels=channels, bot_token=TOKEN, latency_seconds=2.0)
    started = await start_slack(state)
    client = AsyncWebClient(token=TOKEN, base_url=started.base_url, timeout=1, retry_handlers=[])

    record = await BroadcastSender(client=client, log=delivery_log).send(_broadcast(channels))

    [delivery] = record.deliveries
    assert delivery.status == UNCONFIRMED
    assert delivery.error == "unknown_outcome"
    assert delivery.attempts == 1


async def test_connection_refused_fails_without_posting(delivery_log: InMemoryDeliveryLog, clock: ManualClock) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme")]
    state = SlackState(channels=channels, bot_token=TOKEN)
    server = await start_server(create_slack_app(state))
    await server.stop()
    client = AsyncWebClient(token=TOKEN, base_url=f"{server.url}/api/", retry_handlers=[])

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    [delivery] = record.deliveries
    assert delivery.error == "connection_failed"
    assert delivery.reason == "Could not connect to Slack, so nothing was posted to #customer-acme. Resend later."


async def test_persistent_rate_limit_gives_up_after_max_attempts(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme")]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock, fail_rate_429=1.0)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast(channels))

    [delivery] = record.deliveries
    assert len(state.calls_to("chat.postMessage")) == MAX_ATTEMPTS
    assert delivery.attempts == MAX_ATTEMPTS
    assert delivery.error == "ratelimited"
    assert state.posts_in("C0ACME001") == []


async def test_rejected_token_stops_later_posts(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel(f"C0TOKEN{index:02d}", f"customer-{index}") for index in range(3)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    started = await start_slack(state)
    client = AsyncWebClient(token="xoxb-revoked", base_url=started.base_url, retry_handlers=[])

    record = await _sender(client, delivery_log, clock, concurrency=1).send(_broadcast(channels))

    assert len(state.calls_to("chat.postMessage")) == 1
    assert {delivery.error for delivery in record.deliveries} == {"invalid_auth"}
    assert record.status == "failed"


async def test_channel_pacing_spans_sends(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme")]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)
    sender = _sender(client, delivery_log, clock)

    await sender.send(_broadcast(channels, text="first"))
    await sender.send(_broadcast(channels, text="second"))

    first, second = state.calls_to("chat.postMessage")
    assert second.status == 200
    assert second.at - first.at >= 1.0
    assert [message["text"] for message in state.posts_in("C0ACME001")] == ["first", "second"]


async def test_progress_reports_each_change(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme"), slack_channel("C0ARCHIVE", "customer-oldco", is_archived=True)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)
    updates: list[DeliveryRecord] = []

    await _sender(client, delivery_log, clock, on_progress=updates.append).send(_broadcast(channels))

    by_channel = {
        channel["id"]: [update.status for update in updates if update.channel_id == channel["id"]] for channel in channels
    }
    assert by_channel == {"C0ACME001": [SENDING, SENT], "C0ARCHIVE": [SENDING, FAILED]}
    assert updates[-1].reason is not None or updates[-1].ts is not None


async def test_failing_progress_callback_does_not_stop_delivery(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channels = [slack_channel("C0ACME001", "customer-acme")]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    def broken(update: DeliveryRecord) -> None:
        raise RuntimeError("display closed")

    record = await _sender(client, delivery_log, clock, on_progress=broken).send(_broadcast(channels))

    assert record.status == "sent"


async def test_duplicate_targets_are_rejected_before_recording(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    channel = slack_channel("C0ACME001", "customer-acme")
    state = SlackState(channels=[channel], bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    with pytest.raises(ValueError) as raised:
        await _sender(client, delivery_log, clock).send(_broadcast([channel, channel]))

    assert "#customer-acme (C0ACME001)" in str(raised.value)
    assert delivery_log.created == []
    assert state.calls == []


def test_client_with_retry_handlers_is_rejected(delivery_log: InMemoryDeliveryLog) -> None:
    client = AsyncWebClient(token=TOKEN)

    with pytest.raises(ValueError) as raised:
        BroadcastSender(client=client, log=delivery_log)

    assert "retry_handlers=[]" in str(raised.value)


async def test_empty_broadcast_finishes_without_posts(
    start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog, clock: ManualClock
) -> None:
    state = SlackState(channels=[], bot_token=TOKEN, clock=clock)
    client = await start_slack(state)

    record = await _sender(client, delivery_log, clock).send(_broadcast([]))

    assert record.deliveries == ()
    assert state.calls == []


class StorageDown(Exception):
    pass


class FailingAfterPostLog(InMemoryDeliveryLog):
    """A log whose `mark_sent` fails, as when the database goes away in the middle of a send."""

    async def mark_sent(self, delivery_id: int, *, ts: str) -> None:
        raise StorageDown("database is unavailable")


async def test_log_failure_stops_later_deliveries(start_slack: SlackStarter, clock: ManualClock) -> None:
    channels = [slack_channel(f"C0STOP{index:03d}", f"customer-{index}") for index in range(5)]
    state = SlackState(channels=channels, bot_token=TOKEN, clock=clock)
    client = await start_slack(state)
    log = FailingAfterPostLog()

    with pytest.raises(StorageDown):
        await _sender(client, log, clock, concurrency=1).send(_broadcast(channels))

    assert len(state.calls_to("chat.postMessage")) == 1
    statuses = [log.delivery(delivery_id).status for delivery_id in range(1, 6)]
    assert statuses == [SENDING, PENDING, PENDING, PENDING, PENDING]
