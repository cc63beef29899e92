"""Benchmark: fetch 50,000 companies from the loopback Planhat server through PlanhatClient.

Run: .venv/bin/python -m bench.bench_fetch [--companies 50000] [--repeat 3] [--page-size 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import date

from bench.machine import describe_machine
from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import generate_companies, generate_sample
from loopback.server import start_server
from planhat.client import PlanhatClient

TOKEN = "bench-token"
TODAY = date(2026, 12, 4)
# The top-level fields the five-rule benchmark segment and the channel mapping need.
FIELDS = ["h", "arr", "renewalDate", "phase", "custom"]


async def run(companies: int, repeat: int, page_size: int) -> None:
    sample = generate_sample(today=TODAY, company_count=10)
    state = PlanhatState(
        companies=generate_companies(companies, seed=1, today=TODAY),
        custom_fields=sample.custom_fields,
        token=TOKEN,
    )
    server = await start_server(create_planhat_app(state))
    timings = []
    calls = []
    fetched = 0
    try:
        async with PlanhatClient(base_url=server.url, token=TOKEN, page_size=page_size) as client:
            for _ in range(repeat):
                state.requests.clear()
                started = time.perf_counter()
                snapshot = await client.fetch_companies(fields=FIELDS, fresh=True)
                timings.append(time.perf_counter() - started)
                calls.append(len(state.requests))
                fetched = len(snapshot.companies)
    finally:
        await server.stop()

    median = statistics.median(timings)
    print(f"machine: {describe_machine()}")
    print(f"companies: {fetched:,} fetched with page size {page_size:,}, select={','.join(FIELDS)}")
    print(
        f"fetch: median {median:.2f} s, min {min(timings):.2f} s, max {max(timings):.2f} s over {repeat} runs; "
        f"HTTP calls per fetch: {calls[0]} (client and server on the same machine, loopback)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(run(args.companies, args.repeat, args.page_size))


if __name__ == "__main__":
    main()
