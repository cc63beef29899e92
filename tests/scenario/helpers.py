"""Polling for scenario tests: listeners keep running after the ack, so effects appear later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | None], timeout: float = 5.0, *, interval: float = 0.02
) -> T:
    """Call `check` until it returns a truthy value, and return that value.

    Raise AssertionError naming the last falsy value, or re-raise the last AssertionError from
    `check`, when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"condition still false after {timeout}s: last result {result!r}"
                )
        await asyncio.sleep(interval)
