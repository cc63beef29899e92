"""Pacer on virtual time: rate changes, pauses, channel spacing, fairness and cancellation.

`VirtualTime` replaces the clock and `asyncio.sleep`: time moves only when a test advances it, and
sleepers wake in deadline order. No test waits in real time or asserts on wall-clock timings.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segments.pacing import DEFAULT_INCREASE_PER_SUCCESS, Pacer

START = 100.0


@dataclass
class VirtualTime:
    """A clock and a sleep function on simulated time, advanced only by `advance`."""

    now: float = START
    _timers: list[tuple[float, int, asyncio.Future[None]]] = field(default_factory=list)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(seconds, 0.0), next(self._sequence), wake))
        await wake

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each sleeper at its deadline in order."""
        target = self.now + seconds
        while True:
            await _let_tasks_run()
            while self._timers and self._timers[0][2].cancelled():
                heapq.heappop(self._timers)
            if not self._timers or self._timers[0][0] > target:
                break
            deadline, _, wake = heapq.heappop(self._timers)
            self.now = max(self.now, deadline)
            wake.set_result(None)
        self.now = target
        await _let_tasks_run()


async def _let_tasks_run() -> None:
    # Enough loop turns for a grant to reach its waiter and for the waiter to record it.
    for _ in range(20):
        await asyncio.sleep(0)


@dataclass
class Grants:
    """Records which channel was granted at which virtual time, in grant order."""

    time: VirtualTime
    log: list[tuple[str, float]] = field(default_factory=list)

    def start(self, pacer: Pacer, channel_id: str) -> asyncio.Task[None]:
        async def wait() -> None:
            await pacer.acquire(channel_id)
            self.log.append((channel_id, self.time.now))

        return asyncio.get_running_loop().create_task(wait())

    def channels(self) -> list[str]:
        return [channel_id for channel_id, _ in self.log]

    def time_of(self, channel_id: str) -> float:
        return next(at for granted, at in self.log if granted == channel_id)


@pytest.fixture
def vtime() -> VirtualTime:
    return VirtualTime()


def _pacer(
    vtime: VirtualTime,
    *,
    initial_rate: float = 20.0,
    min_rate: float = 0.5,
    max_rate: float = 50.0,
    channel_interval: float = 1.1,
    increase_per_success: float = DEFAULT_INCREASE_PER_SUCCESS,
) -> Pacer:
    return Pacer(
        initial_rate=initial_rate,
        min_rate=min_rate,
        max_rate=max_rate,
        channel_interval=channel_interval,
        increase_per_success=increase_per_success,
        clock=vtime,
        sleep=vtime.sleep,
    )


async def test_burst_capacity_is_one_second_of_posts(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=10.0)
    grants = Grants(vtime)

    for index in range(11):
        grants.start(pacer, f"C{index:02d}")
    await vtime.advance(0)
    burst = list(grants.log)
    await vtime.advance(0.1)

    assert len(burst) == 10
    assert all(at == START for _, at in burst)
    assert grants.time_of("C10") == pytest.approx(START + 0.1)


async def test_tokens_refill_at_rate(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=4.0)
    grants = Grants(vtime)

    for index in range(8):
        grants.start(pacer, f"C{index}")
    await vtime.advance(1.0)

    after_burst = [at for _, at in grants.log[4:]]
    assert after_burst == pytest.approx([START + 0.25, START + 0.5, START + 0.75, START + 1.0])


async def test_rate_limited_halves_rate(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=20.0)

    pacer.on_rate_limited(1.0)

    assert pacer.rate == 10.0


async def test_rate_limited_floors_at_min_rate(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=8.0, min_rate=1.5)
    rates = []

    for _ in range(5):
        pacer.on_rate_limited(1.0)
        rates.append(pacer.rate)
        await vtime.advance(1.0)

    assert rates == [4.0, 2.0, 1.5, 1.5, 1.5]


async def test_rate_limited_during_pause_halves_once(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=16.0)
    grants = Grants(vtime)

    pacer.on_rate_limited(1.0)
    await vtime.advance(0.5)
    pacer.on_rate_limited(2.0)
    grants.start(pacer, "C1")
    await vtime.advance(1.9)
    granted_during_pause = list(grants.log)
    await vtime.advance(0.1)

    assert pacer.rate == 8.0
    assert granted_during_pause == []
    assert grants.time_of("C1") == pytest.approx(START + 2.5)


async def test_success_raises_rate_additively(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=8.0, max_rate=50.0)
    pacer.on_rate_limited(1.0)
    await vtime.advance(1.0)

    for _ in range(6):
        pacer.on_success()

    assert pacer.rate == pytest.approx(4.0 + 6 * DEFAULT_INCREASE_PER_SUCCESS)


async def test_success_adds_configured_step(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=4.0, increase_per_success=2.0)

    pacer.on_success()
    pacer.on_success()

    assert pacer.rate == 8.0


async def test_success_recovers_to_max_rate_and_stops(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=2.0, min_rate=0.5, max_rate=5.0)
    for _ in range(3):
        pacer.on_rate_limited(0.0)
    steps_to_max = round((5.0 - 0.5) / DEFAULT_INCREASE_PER_SUCCESS)

    for _ in range(steps_to_max - 1):
        pacer.on_success()
    below_max = pacer.rate
    for _ in range(10):
        pacer.on_success()

    assert below_max == pytest.approx(5.0 - DEFAULT_INCREASE_PER_SUCCESS)
    assert pacer.rate == 5.0


async def test_success_during_pause_keeps_rate(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=10.0)

    pacer.on_rate_limited(2.0)
    await vtime.advance(1.0)
    pacer.on_success()

    assert pacer.rate == 5.0


async def test_pause_delays_every_waiter_until_retry_after(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=10.0)
    grants = Grants(vtime)

    pacer.on_rate_limited(2.0)
    for channel_id in ("C1", "C2", "C3"):
        grants.start(pacer, channel_id)
    await vtime.advance(1.9)
    granted_during_pause = list(grants.log)
    await vtime.advance(0.1)

    assert granted_during_pause == []
    assert grants.channels() == ["C1", "C2", "C3"]
    assert all(at == pytest.approx(START + 2.0) for _, at in grants.log)


async def test_pause_delays_waiters_already_queued(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=1.0)
    grants = Grants(vtime)
    await pacer.acquire("C0")

    grants.start(pacer, "C1")
    await vtime.advance(0.5)
    pacer.on_rate_limited(3.0)
    await vtime.advance(3.0)

    assert grants.time_of("C1") == pytest.approx(START + 3.5)


async def test_pause_without_retry_after_lasts_one_second(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=10.0)
    grants = Grants(vtime)

    pacer.on_rate_limited(None)
    grants.start(pacer, "C1")
    await vtime.advance(2.0)

    assert grants.time_of("C1") == pytest.approx(START + 1.0)


async def test_posts_to_one_channel_are_spaced_by_interval(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=50.0, channel_interval=1.1)
    grants = Grants(vtime)

    for _ in range(3):
        grants.start(pacer, "C1")
    await vtime.advance(3.0)

    times = [at for _, at in grants.log]
    assert times == pytest.approx([START, START + 1.1, START + 2.2])


async def test_busy_channel_does_not_delay_others(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=50.0, channel_interval=1.1)
    grants = Grants(vtime)

    grants.start(pacer, "C1")
    grants.start(pacer, "C1")
    grants.start(pacer, "C2")
    await vtime.advance(0.5)

    assert grants.log == [("C1", START), ("C2", START)]


async def test_waiters_are_granted_first_in_first_out(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=1.0)
    grants = Grants(vtime)
    await pacer.acquire("C0")
    order = ["C5", "C3", "C1", "C4", "C2"]

    for channel_id in order:
        grants.start(pacer, channel_id)
        await asyncio.sleep(0)
    await vtime.advance(5.0)

    assert grants.channels() == order
    assert [at for _, at in grants.log] == pytest.approx([START + step for step in range(1, 6)])


async def test_cancelled_waiter_takes_no_token(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=1.0)
    grants = Grants(vtime)
    await pacer.acquire("C0")

    grants.start(pacer, "C1")
    cancelled = grants.start(pacer, "C2")
    grants.start(pacer, "C3")
    await vtime.advance(0.5)
    cancelled.cancel()
    await vtime.advance(1.5)

    assert cancelled.cancelled()
    assert grants.log == [("C1", pytest.approx(START + 1.0)), ("C3", pytest.approx(START + 2.0))]


async def test_cancel_after_grant_returns_token_and_slot(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=4.0, channel_interval=1.1)
    grants = Grants(vtime)
    pacer.on_rate_limited(1.0)
    # The pause lets the bucket fill to 2 tokens, so C1 and C2 are granted in the same step.
    # C1's waiter then cancels C2 before C2 resumes, as a caller cancelling a batch would.
    to_cancel: list[asyncio.Task[None]] = []

    async def first() -> None:
        await pacer.acquire("C1")
        to_cancel[0].cancel()

    asyncio.get_running_loop().create_task(first())
    await asyncio.sleep(0)
    to_cancel.append(grants.start(pacer, "C2"))
    await asyncio.sleep(0)
    grants.start(pacer, "C3")
    await vtime.advance(1.0)
    c3_granted = grants.time_of("C3")
    await vtime.advance(0.5)
    grants.start(pacer, "C2")
    await vtime.advance(0)

    assert to_cancel[0].cancelled()
    assert c3_granted == pytest.approx(START + 1.0)
    assert grants.time_of("C2") == pytest.approx(START + 1.5)


async def test_rate_increase_wakes_waiter_sooner(vtime: VirtualTime) -> None:
    pacer = _pacer(vtime, initial_rate=1.0, max_rate=2.0)
    grants = Grants(vtime)
    await pacer.acquire("C0")

    grants.start(pacer, "C1")
    await vtime.advance(0.1)
    pacer.on_success()
    pacer.on_success()
    await vtime.advance(1.0)

    # Tokens earned so far keep their value: 0.1 at 1/s, then 0.9 more at 2/s takes 0.45 s.
    assert grants.time_of("C1") == pytest.approx(START + 0.55)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_rate": 0.0}, "0 < min_rate"),
        ({"initial_rate": 60.0, "max_rate": 50.0}, "initial_rate=60.0"),
        ({"initial_rate": 0.2, "min_rate": 0.5}, "initial_rate=0.2"),
        ({"channel_interval": -1.0}, "channel_interval"),
        ({"increase_per_success": -0.5}, "increase_per_success"),
    ],
)
def test_invalid_settings_raise(options: dict[str, float], message: str) -> None:
    values = {
        "initial_rate": 20.0,
        "min_rate": 0.5,
        "max_rate": 50.0,
        "channel_interval": 1.1,
        "increase_per_success": 0.5,
        **options,
    }

    with pytest.raises(ValueError, match=message):
        Pacer(
            initial_rate=values["initial_rate"],
            min_rate=values["min_rate"],
            max_rate=values["max_rate"],
            channel_interval=values["channel_interval"],
            increase_per_success=values["increase_per_success"],
        )


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([1.0, 2.5, 10.0]),
    arrivals=st.lists(
        st.tuples(
            st.sampled_from(["C1", "C2", "C3", "C4"]), st.floats(min_value=0.0, max_value=3.0)
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_grants_stay_within_bucket_and_channel_limits(
    rate: float, arrivals: list[tuple[str, float]]
) -> None:
    grants = asyncio.run(_grant_times(rate=rate, arrivals=arrivals))

    assert len(grants) == len(arrivals)
    times = sorted(at for _, at in grants)
    capacity = max(1.0, rate)
    for first, last in itertools.combinations(range(len(times)), 2):
        assert last - first + 1 <= capacity + rate * (times[last] - times[first]) + 1e-6
    for channel_id in {channel for channel, _ in grants}:
        channel_times = sorted(at for granted, at in grants if granted == channel_id)
        for earlier, later in itertools.pairwise(channel_times):
            assert later - earlier >= 1.1 - 1e-6


async def _grant_times(
    *, rate: float, arrivals: list[tuple[str, float]]
) -> list[tuple[str, float]]:
    vtime = VirtualTime()
    pacer = _pacer(vtime, initial_rate=rate, max_rate=rate, channel_interval=1.1)
    grants = Grants(vtime)
    for channel_id, delay in sorted(arrivals, key=lambda arrival: arrival[1]):
        await vtime.advance(START + delay - vtime.now)
        grants.start(pacer, channel_id)
    await vtime.advance(len(arrivals) * 2.0)
    return grants.log
