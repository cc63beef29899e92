"""Benchmark: post one message to 1,000 channels through the loopback Slack server under failures.

The server responds to each request after 100 ms and enforces 1 post per second per channel and
20 posts per second for the workspace. It also responds to 5% of posts with HTTP 429 and 2% with
HTTP 500, half of those 500s after storing the post, as Slack sometimes does. Each sender gets a
fresh server, and the messages stored per channel are counted to find duplicates and losses.

Run: .venv/bin/python -m bench.bench_send [--channels 1000] [--senders NAME ...]
     [--increase-per-success 0.5] [--without-history-scope]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bench.machine import describe_machine
from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.stores import SqlDeliveryLog
from loopback.server import RunningServer, start_server
from loopback.slack_server import DEFAULT_BOT_SCOPES, SlackState, create_slack_app
from segments.pacing import DEFAULT_INCREASE_PER_SUCCESS, Pacer
from segments.ports import DeliveryStatus, DeliveryTarget, NewBroadcast, QualifyingCompany
from segments.sending import BroadcastSender

TOKEN = "xoxb-bench"
TEXT = "Release notes for March: the new usage dashboard is live."
LATENCY_SECONDS = 0.1
WORKSPACE_POSTS_PER_SECOND = 20.0
FAIL_RATE_429 = 0.05
# Half of the 500s come before the post is stored and half after, 2% of posts in all.
FAIL_RATE_500_BEFORE_STORE = 0.01
FAIL_RATE_500_AFTER_STORE = 0.01
# Workers of the naive concurrent loop, the same as BroadcastSender's default concurrency.
NAIVE_CONCURRENCY = 8
# History scopes let BroadcastSender check whether a post that got an HTTP 500 exists.
HISTORY_SCOPES = ("channels:history", "groups:history")


@dataclass
class ServerCounts:
    """Requests to chat.postMessage and the statuses of their responses, seen by a middleware."""

    attempts: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    stored_then_500: int = 0
    history_calls: int = 0


@dataclass(frozen=True)
class Outcome:
    name: str
    seconds: float
    attempts: int
    rate_limited: int
    server_errors: int
    stored_then_500: int
    duplicates: int
    losses: int
    reported_failed: int
    history_calls: int


@dataclass
class BenchServer:
    state: SlackState
    counts: ServerCounts
    server: RunningServer

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/api/"


@dataclass(frozen=True)
class BenchSettings:
    seed: int
    history_scope: bool
    increase_per_success: float


Sender = Callable[[BenchServer, list[str], BenchSettings], Awaitable[int]]


def _channels(count: int) -> list[dict[str, object]]:
    return [
        {"id": f"C{index:07d}", "name": f"customer-{index:04d}", "is_member": True}
        for index in range(count)
    ]


def _counting_middleware(counts: ServerCounts, *, rate: float, seed: int) -> Middleware:
    """Build a middleware that counts requests and statuses into `counts`.

    It also replaces the response to a share `rate` of stored posts with HTTP 500.
    """
    rolls = random.Random(seed)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.endswith("/conversations.history"):
            counts.history_calls += 1
        if not request.path.endswith("/chat.postMessage"):
            return await handler(request)
        counts.attempts += 1
        lose_response = rolls.random() < rate
        response = await handler(request)
        if lose_response and isinstance(response, web.Response) and response.status == 200:
            body = json.loads(response.body) if isinstance(response.body, bytes) else {}
            if body.get("ok"):
                counts.stored_then_500 += 1
                response = web.json_response({"ok": False, "error": "internal_error"}, status=500)
        counts.statuses[response.status] += 1
        return response

    return middleware


async def _start_server(channel_count: int, *, seed: int, history_scope: bool) -> BenchServer:
    scopes = DEFAULT_BOT_SCOPES + HISTORY_SCOPES if history_scope else DEFAULT_BOT_SCOPES
    state = SlackState(
        channels=_channels(channel_count),
        bot_token=TOKEN,
        scopes=scopes,
        workspace_posts_per_second=WORKSPACE_POSTS_PER_SECOND,
        latency_seconds=LATENCY_SECONDS,
        fail_rate_429=FAIL_RATE_429,
        fail_rate_500=FAIL_RATE_500_BEFORE_STORE,
        seed=seed,
    )
    counts = ServerCounts()
    app = create_slack_app(state)
    app.middlewares.append(
        _counting_middleware(counts, rate=FAIL_RATE_500_AFTER_STORE, seed=seed + 1)
    )
    return BenchServer(state=state, counts=counts, server=await start_server(app))


async def _send_with_broadcast_sender(
    bench: BenchServer, channel_ids: list[str], settings: BenchSettings
) -> int:
    """Send through BroadcastSender with a SQLite log, and return how many were not sent."""
    client = AsyncWebClient(token=TOKEN, base_url=bench.api_url, retry_handlers=[])
    broadcast = NewBroadcast(
        team_id=bench.state.team_id,
        segment_id=None,
        segment_name="Benchmark",
        rules_text="ARR greater than 0",
        message_text=TEXT,
        message_blocks=None,
        sent_by="U0BENCH",
        targets=[
            DeliveryTarget(
                channel_id=channel_id,
                channel_name=f"customer-{index:04d}",
                is_private=False,
                companies=[
                    QualifyingCompany(company_id=f"co-{index}", company_name=f"Company {index}")
                ],
            )
            for index, channel_id in enumerate(channel_ids)
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            await upgrade_database(engine)
            sender = BroadcastSender(
                client=client,
                log=SqlDeliveryLog(create_session_factory(engine)),
                pacer=Pacer(increase_per_success=settings.increase_per_success),
            )
            record = await sender.send(broadcast)
        finally:
            await engine.dispose()
    return sum(delivery.status != DeliveryStatus.SENT for delivery in record.deliveries)


def _sdk_client(bench: BenchServer) -> AsyncWebClient:
    # The default client retries connection errors. slack-sdk (3.48) also ships the two handlers
    # added here for 429 and 5xx. At their default max_retry_count of 1, a request is retried once.
    client = AsyncWebClient(token=TOKEN, base_url=bench.api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler())
    client.retry_handlers.append(AsyncServerErrorRetryHandler())
    return client


async def _sdk_loop(client: AsyncWebClient, channel_ids: Iterator[str]) -> int:
    failed = 0
    for channel_id in channel_ids:
        try:
            await client.chat_postMessage(channel=channel_id, text=TEXT)
        except SlackApiError:
            failed += 1
    return failed


async def _send_with_sdk_loop(
    bench: BenchServer, channel_ids: list[str], settings: BenchSettings
) -> int:
    return await _sdk_loop(_sdk_client(bench), iter(channel_ids))


async def _send_with_sdk_concurrent(
    bench: BenchServer, channel_ids: list[str], settings: BenchSettings
) -> int:
    client = _sdk_client(bench)
    # One shared iterator, so each channel is taken by exactly one worker.
    shared = iter(channel_ids)
    failures = await asyncio.gather(*(_sdk_loop(client, shared) for _ in range(NAIVE_CONCURRENCY)))
    return sum(failures)


SENDERS: dict[str, tuple[str, Sender]] = {
    "broadcast-sender": ("segment-bot BroadcastSender, SQLite log", _send_with_broadcast_sender),
    "sdk-loop": ("slack-sdk loop, retry handlers, 1 at a time", _send_with_sdk_loop),
    "sdk-concurrent": (
        f"slack-sdk loop, retry handlers, {NAIVE_CONCURRENCY} at a time",
        _send_with_sdk_concurrent,
    ),
}


async def _measure(name: str, channel_count: int, settings: BenchSettings) -> Outcome:
    label, send = SENDERS[name]
    bench = await _start_server(
        channel_count, seed=settings.seed, history_scope=settings.history_scope
    )
    channel_ids = [str(channel["id"]) for channel in bench.state.channels]
    try:
        started = time.perf_counter()
        reported_failed = await send(bench, channel_ids, settings)
        seconds = time.perf_counter() - started
    finally:
        await bench.server.stop()

    copies = [
        sum(message.get("text") == TEXT for message in bench.state.posts_in(channel_id))
        for channel_id in channel_ids
    ]
    statuses = bench.counts.statuses
    return Outcome(
        name=label,
        seconds=seconds,
        attempts=bench.counts.attempts,
        rate_limited=statuses[429],
        server_errors=sum(count for status, count in statuses.items() if status >= 500),
        stored_then_500=bench.counts.stored_then_500,
        duplicates=sum(count >= 2 for count in copies),
        losses=sum(count == 0 for count in copies),
        reported_failed=reported_failed,
        history_calls=bench.counts.history_calls,
    )


TABLE_HEADER = (
    "| Sender | Time | Posts attempted | 429s | 500s (stored first) "
    "| Duplicates | Losses | Reported not sent |"
)


def _print_table(outcomes: list[Outcome], *, floor_seconds: float) -> None:
    print(TABLE_HEADER)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for outcome in outcomes:
        cells = [
            outcome.name,
            f"{outcome.seconds:.1f} s ({outcome.seconds / floor_seconds:.2f}x floor)",
            f"{outcome.attempts:,}",
            str(outcome.rate_limited),
            f"{outcome.server_errors} ({outcome.stored_then_500})",
            str(outcome.duplicates),
            str(outcome.losses),
            str(outcome.reported_failed),
        ]
        print(f"| {' | '.join(cells)} |")


async def run(channel_count: int, *, names: list[str], settings: BenchSettings) -> None:
    # The workspace bucket starts full with one second of posts, so a sender can finish up to a
    # second under this floor.
    floor_seconds = channel_count / WORKSPACE_POSTS_PER_SECOND
    server_errors = FAIL_RATE_500_BEFORE_STORE + FAIL_RATE_500_AFTER_STORE
    print(f"machine: {describe_machine()}")
    print(
        f"channels: {channel_count:,}; server: {LATENCY_SECONDS * 1000:.0f} ms per request, "
        f"1 post/s per channel, {WORKSPACE_POSTS_PER_SECOND:.0f} posts/s per workspace, "
        f"{FAIL_RATE_429:.0%} 429, {server_errors:.0%} 500 (half after storing); "
        f"history scopes: {'yes' if settings.history_scope else 'no'}; seed {settings.seed}"
    )
    print(f"Pacer: rate increase {settings.increase_per_success} posts/s per confirmed post")
    print(
        f"floor: {floor_seconds:.0f} s "
        f"({channel_count:,} posts at {WORKSPACE_POSTS_PER_SECOND:.0f} per second)"
    )
    outcomes = []
    for name in names:
        outcome = await _measure(name, channel_count, settings)
        print(
            f"{outcome.name}: {outcome.seconds:.1f} s, "
            f"{outcome.history_calls} conversations.history calls",
            flush=True,
        )
        outcomes.append(outcome)
    _print_table(outcomes, floor_seconds=floor_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--channels", type=int, default=1000, help="channels to post to (default 1000)"
    )
    parser.add_argument(
        "--senders",
        nargs="+",
        choices=sorted(SENDERS),
        default=list(SENDERS),
        help="senders to measure, in order (default: all)",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the server's failure rolls (default 7)"
    )
    parser.add_argument(
        "--without-history-scope",
        action="store_true",
        help="leave out the history scopes, so BroadcastSender cannot check posts that got a 500",
    )
    parser.add_argument(
        "--increase-per-success",
        type=float,
        default=DEFAULT_INCREASE_PER_SUCCESS,
        help="posts per second that BroadcastSender's Pacer adds after each confirmed post "
        f"(default {DEFAULT_INCREASE_PER_SUCCESS})",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the senders' log lines (default: errors are hidden)",
    )
    args = parser.parse_args()
    # The senders log every failed delivery, dozens per run, and the table counts them.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    asyncio.run(
        run(
            args.channels,
            names=args.senders,
            settings=BenchSettings(
                seed=args.seed,
                history_scope=not args.without_history_scope,
                increase_per_success=args.increase_per_success,
            ),
        )
    )


if __name__ == "__main__":
    main()
