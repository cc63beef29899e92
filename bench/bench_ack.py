"""Benchmark: ack latency of 50 concurrent /segment commands while Planhat takes 5 s per request.

Slack shows the user an error when an app does not ack within 3 seconds, so every command must
answer before its slow work (Planhat, conversations.list) is done.

Run: .venv/bin/python -m bench.bench_ack [--commands 50] [--planhat-latency 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.machine import describe_machine
from loopback.stack import start_stack

# A mix of what people type: previews (the slowest work behind the ack), modals, lists, help.
COMMANDS = [
    "preview Health Score less than 4 AND ARR greater than 50000",
    'preview Lifecycle Stage equals "Onboarding"',
    "new Renewal Date within 60 days",
    "list",
    "help",
]


async def run(command_count: int, planhat_latency: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        stack = await start_stack(database_path=Path(folder) / "bench.db", today=date.today())
        try:
            stack.planhat.latency_seconds = planhat_latency
            texts = [COMMANDS[index % len(COMMANDS)] for index in range(command_count)]
            started = time.perf_counter()
            responses = await asyncio.gather(*(stack.sim.command(text) for text in texts))
            wall = time.perf_counter() - started
            drain_started = time.perf_counter()
            await stack.services.tasks.drain(timeout=120)
            drained = time.perf_counter() - drain_started
        finally:
            await stack.stop()

    latencies = sorted(response.seconds for response in responses)
    statuses = sorted({response.status for response in responses})
    print(f"machine: {describe_machine()}")
    print(f"commands: {command_count} concurrent, Planhat latency {planhat_latency:.1f} s per request")
    print(f"HTTP statuses: {statuses}; over 3 s: {sum(latency > 3 for latency in latencies)}")
    print(
        "ack latency: "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p90 {latencies[int(0.9 * (len(latencies) - 1))] * 1000:.0f} ms, "
        f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; all {command_count} answered within {wall:.2f} s"
    )
    print(f"slow work after the acks finished {drained:.1f} s later")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--planhat-latency", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run(args.commands, args.planhat_latency))


if __name__ == "__main__":
    main()
