"""Pace Slack posts for one workspace: a token bucket for the workspace and a slot per channel.

`Pacer.acquire` waits until a post may go out, and the caller reports each outcome with
`on_success` or `on_rate_limited`. The workspace rate adapts by additive increase and
multiplicative decrease (AIMD, as in TCP congestion control), because Slack does not publish the
limit it enforces. One `Pacer` serves every concurrent sender of a workspace and belongs to the
event loop it first waits on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# NOTE: Slack does not publish the workspace-wide limit of chat.postMessage. Its rate-limit guide
# (https://docs.slack.dev/apis/web-api/rate-limits) puts the method in the "special" tier: about one
# post per second per channel, short bursts allowed, and an unstated limit per workspace. The
# default initial and maximum rates are estimates to tune, and the adaptive rate keeps 429s rare.
DEFAULT_INITIAL_RATE = 20.0
DEFAULT_MIN_RATE = 0.5
DEFAULT_MAX_RATE = 50.0
# Slack allows about one post per second per channel. The extra tenth of a second keeps network
# jitter from bringing two posts closer than a second when they reach Slack.
DEFAULT_CHANNEL_INTERVAL = 1.1
# Slack's 429 responses carry Retry-After. Without it, posting resumes after one second.
DEFAULT_RETRY_AFTER = 1.0
# Rate added per confirmed post, in posts per second. See `Pacer.on_success` for why the increase
# counts posts rather than seconds, and docs/benchmarks.md for measurements of other steps.
DEFAULT_INCREASE_PER_SUCCESS = 0.5
# Float slack in token and slot comparisons, so a refill computed as 0.9999999 tokens still counts.
_EPSILON = 1e-9
# Past channel slots are dropped once this many are stored. Only about rate * channel_interval
# slots are in the future at any time, so the table stays small.
_MAX_STORED_SLOTS = 1024

Sleep = Callable[[float], Awaitable[Any]]


@dataclass(eq=False)
class _Waiter:
    channel_id: str
    granted: asyncio.Future[None]
    # The channel's earlier slot and the one this grant set, so a cancelled grant can be undone.
    previous_slot: float | None = None
    granted_slot: float = field(default=0.0)


class Pacer:
    """Decide when each Slack post of one workspace may go out.

    The workspace rate is a token bucket that refills at `rate` posts per second and stores about
    one second of posts, so short bursts go out at once. Posts to one channel are at least
    `channel_interval` seconds apart. `acquire` serves waiters first in, first out, except that a
    waiter whose channel slot is not free yet lets later waiters for other channels go first.
    `clock` and `sleep` are injectable so tests can run on virtual time.
    """

    def __init__(
        self,
        *,
        initial_rate: float = DEFAULT_INITIAL_RATE,
        min_rate: float = DEFAULT_MIN_RATE,
        max_rate: float = DEFAULT_MAX_RATE,
        channel_interval: float = DEFAULT_CHANNEL_INTERVAL,
        increase_per_success: float = DEFAULT_INCREASE_PER_SUCCESS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 0 < min_rate <= initial_rate <= max_rate:
            raise ValueError(
                "Rates must satisfy 0 < min_rate <= initial_rate <= max_rate, got "
                f"min_rate={min_rate}, initial_rate={initial_rate}, max_rate={max_rate}."
            )
        if channel_interval < 0:
            raise ValueError(f"channel_interval must be 0 or more seconds, got {channel_interval}.")
        if increase_per_success < 0:
            raise ValueError(
                "increase_per_success must be 0 or more posts per second, "
                f"got {increase_per_success}."
            )
        self._min_rate = min_rate
        self._max_rate = max_rate
        self._channel_interval = channel_interval
        self._increase_per_success = increase_per_success
        self._clock = clock
        self._sleep = sleep

        self._rate = initial_rate
        self._tokens = _capacity(initial_rate)
        self._refilled_at = clock()
        self._paused_until = float("-inf")
        # Earliest time of the next post per channel.
        self._channel_slots: dict[str, float] = {}
        self._waiters: deque[_Waiter] = deque()
        self._dispatcher: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    @property
    def rate(self) -> float:
        """Current workspace rate, in posts per second."""
        return self._rate

    async def acquire(self, channel_id: str) -> None:
        """Wait for a workspace token and the channel's slot, then take both.

        Cancelling a waiter takes nothing: a token or slot granted just before the cancellation
        is given back.
        """
        if not self._waiters and self._can_post_now(channel_id):
            self._take(channel_id)
            return

        waiter = _Waiter(channel_id=channel_id, granted=asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._notify()
        try:
            await waiter.granted
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Halve the rate (not below `min_rate`) and pause every waiter for `retry_after` seconds.

        Nothing is granted during a pause, so a 429 that arrives while paused is the response to
        a post sent before the last decrease. It extends the pause but does not halve the rate
        again, so one overload seen by several concurrent posts halves the rate only once.
        """
        now = self._clock()
        seconds = DEFAULT_RETRY_AFTER if retry_after is None else max(retry_after, 0.0)
        self._refill(now)
        if now >= self._paused_until:
            previous = self._rate
            self._set_rate(max(self._min_rate, self._rate / 2))
            logger.info(
                "Slack responded with HTTP 429: posts paused for %.1f s, "
                "rate lowered from %.1f to %.1f posts/s",
                seconds,
                previous,
                self._rate,
            )
        self._paused_until = max(self._paused_until, now + seconds)
        self._notify()

    def on_success(self) -> None:
        """Raise the rate by `increase_per_success` posts per second, up to `max_rate`.

        The increase counts confirmed posts rather than seconds. A 429 does not say whether the
        workspace limit or a channel limit was hit, so stray 429s halve the rate too. If a share
        p of posts gets a stray 429, the default step of 0.5 settles the rate near 2 * 0.5 / p
        (20 posts/s at p = 5%), whereas adding 1 post/s per second would settle near
        sqrt(2 / p), about 6 posts/s. Both are estimates from the AIMD balance of halving and
        increase. Successes during a pause are not counted, because those posts were sent at the
        old rate.
        """
        now = self._clock()
        if now < self._paused_until or self._rate >= self._max_rate:
            return
        self._refill(now)
        self._set_rate(min(self._max_rate, self._rate + self._increase_per_success))
        self._notify()

    def _can_post_now(self, channel_id: str) -> bool:
        now = self._clock()
        self._refill(now)
        return (
            now >= self._paused_until
            and self._tokens >= 1 - _EPSILON
            and self._slot_free(channel_id, now)
        )

    def _slot_free(self, channel_id: str, now: float) -> bool:
        slot = self._channel_slots.get(channel_id)
        return slot is None or slot <= now + _EPSILON

    def _take(self, channel_id: str) -> tuple[float | None, float]:
        """Take one token and the channel's slot, and return the channel's old and new slot."""
        previous = self._channel_slots.get(channel_id)
        slot = self._clock() + self._channel_interval
        self._tokens = max(0.0, self._tokens - 1)
        if len(self._channel_slots) >= _MAX_STORED_SLOTS:
            self._prune_slots()
        self._channel_slots[channel_id] = slot
        return previous, slot

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(_capacity(self._rate), self._tokens + elapsed * self._rate)
        self._refilled_at = now

    def _set_rate(self, rate: float) -> None:
        # Callers refill at the old rate first, so the tokens earned so far are kept.
        self._rate = rate
        self._tokens = min(self._tokens, _capacity(rate))

    def _withdraw(self, waiter: _Waiter) -> None:
        """Remove a cancelled waiter, giving back a grant it received but never used."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        elif (
            waiter.granted.done()
            and not waiter.granted.cancelled()
            and waiter.granted.exception() is None
        ):
            self._refill(self._clock())
            self._tokens = min(_capacity(self._rate), self._tokens + 1)
            # Give the slot back only if no later grant to the channel has replaced it.
            if self._channel_slots.get(waiter.channel_id) == waiter.granted_slot:
                if waiter.previous_slot is None:
                    del self._channel_slots[waiter.channel_id]
                else:
                    self._channel_slots[waiter.channel_id] = waiter.previous_slot
        self._notify()

    def _notify(self) -> None:
        """Wake the dispatcher so it reconsiders the queue, starting it when there are waiters."""
        if not self._waiters:
            return
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        self._wakeup.set()

    async def _dispatch(self) -> None:
        """Grant waiters as tokens and slots allow, sleeping until the next one can go."""
        try:
            while self._waiters:
                self._wakeup.clear()
                delay = self._grant_ready()
                if delay is None:
                    break
                await self._sleep_or_wake(delay)
        except BaseException as exc:
            # Fail the waiters rather than leave them waiting for a dispatcher that is gone.
            for waiter in self._waiters:
                if waiter.granted.done():
                    continue
                if isinstance(exc, Exception):
                    waiter.granted.set_exception(exc)
                else:
                    waiter.granted.cancel()
            self._waiters.clear()
            raise

    def _grant_ready(self) -> float | None:
        """Grant every waiter that can go now, and return the seconds until the next may go.

        Returns None when no waiter is left.
        """
        while self._waiters:
            # A cancelled waiter removes itself when it resumes, which may come after this step.
            self._waiters = deque(queued for queued in self._waiters if not queued.granted.done())
            if not self._waiters:
                return None
            now = self._clock()
            self._refill(now)
            if now < self._paused_until:
                return self._paused_until - now
            waiter = next(
                (queued for queued in self._waiters if self._slot_free(queued.channel_id, now)),
                None,
            )
            if waiter is None:
                return min(self._channel_slots[queued.channel_id] for queued in self._waiters) - now
            if self._tokens < 1 - _EPSILON:
                return (1 - self._tokens) / self._rate
            self._waiters.remove(waiter)
            waiter.previous_slot, waiter.granted_slot = self._take(waiter.channel_id)
            waiter.granted.set_result(None)
        return None

    async def _sleep_or_wake(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _prune_slots(self) -> None:
        now = self._clock()
        expired = [channel_id for channel_id, slot in self._channel_slots.items() if slot <= now]
        for channel_id in expired:
            del self._channel_slots[channel_id]


def _capacity(rate: float) -> float:
    """Return the bucket size: one second of posts, and at least one post."""
    return max(1.0, rate)
