"""A small in-memory cache whose entries expire a fixed time after they were stored.

The Planhat client keeps recent company lists in it so that repeated previews within a minute
do not refetch every company. Sends bypass it, so membership at send time is always live.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Entries that expire `ttl_seconds` after `put`, evicting the oldest beyond `max_entries`.

    `clock` returns seconds on a monotonic scale; tests pass a fake one. A TTL of 0 or less
    disables the cache: `get` then always returns None. Not safe across threads, which is fine
    for one asyncio event loop because no method awaits.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_seconds

    def get(self, key: K) -> V | None:
        """Return the value stored under `key`, or None when it is missing or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None

        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value` under `key`, replacing any older entry and restarting its TTL."""
        if self._ttl_seconds <= 0:
            return

        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self._ttl_seconds, value)
        # Each value can be a whole company list, so cap the number kept alive at once.
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
