"""TTLCache on its own, and the client's use of it for previews, sends and custom fields."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loopback.planhat_server import PlanhatState
from loopback.sample_data import generate_custom_fields
from loopback.server import RunningServer
from planhat.cache import TTLCache
from planhat.client import PlanhatClient

TTL_SECONDS = 60.0


class FakeClock:
    """A monotonic clock that moves only when a test calls `advance`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    planhat_state: PlanhatState,
    planhat_server: RunningServer,
    planhat_token: str,
    clock: FakeClock,
) -> AsyncIterator[PlanhatClient]:
    planhat_state.companies = [
        {"_id": f"{index:024x}", "name": f"Company {index}", "h": 5} for index in range(3)
    ]
    planhat_state.custom_fields = generate_custom_fields()
    async with PlanhatClient(
        base_url=planhat_server.url,
        token=planhat_token,
        cache_ttl_seconds=TTL_SECONDS,
        clock=clock,
    ) as client:
        yield client


# TTLCache


def test_cache_returns_value_within_ttl(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_seconds=10, clock=clock)
    cache.put("key", 1)

    clock.advance(9.9)

    assert cache.get("key") == 1


def test_cache_expires_value_at_ttl(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_seconds=10, clock=clock)
    cache.put("key", 1)

    clock.advance(10)

    assert cache.get("key") is None
    assert len(cache) == 0


def test_cache_put_restarts_ttl(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_seconds=10, clock=clock)
    cache.put("key", 1)
    clock.advance(8)
    cache.put("key", 2)

    clock.advance(8)

    assert cache.get("key") == 2


def test_cache_with_zero_ttl_stores_nothing(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_seconds=0, clock=clock)

    cache.put("key", 1)

    assert cache.get("key") is None


def test_cache_evicts_oldest_beyond_max_entries(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_seconds=10, max_entries=2, clock=clock)

    cache.put("first", 1)
    cache.put("second", 2)
    cache.put("third", 3)

    assert cache.get("first") is None
    assert cache.get("second") == 2
    assert cache.get("third") == 3


# PlanhatClient caching


async def test_preview_within_ttl_is_served_from_cache(
    client: PlanhatClient, planhat_state: PlanhatState, clock: FakeClock
) -> None:
    first = await client.fetch_companies(fields=["h"])
    clock.advance(TTL_SECONDS - 1)

    second = await client.fetch_companies(fields=["h"])

    assert second is first
    assert len(planhat_state.requests_to("/companies")) == 1


async def test_fresh_fetch_always_calls_planhat(
    client: PlanhatClient, planhat_state: PlanhatState
) -> None:
    await client.fetch_companies(fields=["h"])

    await client.fetch_companies(fields=["h"], fresh=True)
    await client.fetch_companies(fields=["h"], fresh=True)

    assert len(planhat_state.requests_to("/companies")) == 3


async def test_fresh_fetch_refreshes_cached_snapshot(
    client: PlanhatClient, planhat_state: PlanhatState
) -> None:
    await client.fetch_companies(fields=["h"])
    planhat_state.companies.append({"_id": "new0000000000000000000000", "name": "New", "h": 9})
    fresh = await client.fetch_companies(fields=["h"], fresh=True)

    preview = await client.fetch_companies(fields=["h"])

    assert preview is fresh
    assert len(preview.companies) == 4
    assert len(planhat_state.requests_to("/companies")) == 2


async def test_preview_after_ttl_fetches_again(
    client: PlanhatClient, planhat_state: PlanhatState, clock: FakeClock
) -> None:
    await client.fetch_companies(fields=["h"])
    clock.advance(TTL_SECONDS)

    await client.fetch_companies(fields=["h"])

    assert len(planhat_state.requests_to("/companies")) == 2


async def test_cache_is_keyed_by_selected_fields(
    client: PlanhatClient, planhat_state: PlanhatState
) -> None:
    await client.fetch_companies(fields=["h"])
    await client.fetch_companies(fields=["phase"])

    await client.fetch_companies(fields=["name", "h"])

    selects = [request.query["select"] for request in planhat_state.requests_to("/companies")]
    assert selects == ["_id,name,h", "_id,name,phase"]


async def test_custom_fields_cached_with_same_ttl(
    client: PlanhatClient, planhat_state: PlanhatState, clock: FakeClock
) -> None:
    await client.fetch_custom_fields()
    clock.advance(TTL_SECONDS - 1)
    cached = await client.fetch_custom_fields()
    calls_within_ttl = len(planhat_state.requests_to("/customfields"))
    clock.advance(1)

    await client.fetch_custom_fields()

    assert calls_within_ttl == 1
    assert len(planhat_state.requests_to("/customfields")) == 2
    assert len(cached) == 10
