"""A local stand-in for the Planhat REST API, for tests, benchmarks and the demo.

It serves `GET /companies` and `GET /customfields` the way the real API is documented and
observed: offset paging with `limit` and `offset`, a bare JSON array without a total, `select`
for top-level fields and a Bearer token check. Switches on `PlanhatState` inject latency, rate
limits, server errors and malformed bodies at run time, and every request is recorded.

Run `python -m loopback.planhat_server --port 0 --today 2026-12-04` to serve the sample data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web

from loopback.server import start_server

# Planhat's default and maximum `limit`, as its open-source clients describe them (not confirmed
# by an official page): default 100 everywhere, maximum 5,000 for companies and 2,000 otherwise.
DEFAULT_LIMIT = 100
MAX_COMPANY_LIMIT = 5000
MAX_OTHER_LIMIT = 2000

DEFAULT_TOKEN = "planhat-loopback-token"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, with the status it returned."""

    path: str
    query: Mapping[str, str]
    at: float
    status: int


@dataclass
class PlanhatState:
    """Data served by the loopback Planhat API, and switches that tests change at run time.

    Switches:
    - `latency_seconds`: delay before every response.
    - `rate_limit_next`: respond to the next N requests with 429. `rate_limit_retry_after` is the
      Retry-After header of every 429 (seconds, or a string such as an HTTP date), or None for
      no header.
    - `fail_on_page`: respond to requests for this 1-based page of `/companies` with `fail_status`.
      `fail_on_page_times` limits how many requests fail (None means every one).
    - `malformed_next`: respond to the next N requests with 200 and `malformed_body`.
    """

    companies: list[dict[str, Any]] = field(default_factory=list)
    custom_fields: list[dict[str, Any]] = field(default_factory=list)
    token: str = DEFAULT_TOKEN

    latency_seconds: float = 0.0
    rate_limit_next: int = 0
    rate_limit_retry_after: float | str | None = None
    fail_on_page: int | None = None
    fail_status: int = 500
    fail_on_page_times: int | None = None
    malformed_next: int = 0
    malformed_body: str = '{"error": "Something went wrong, please try again"}'

    requests: list[RecordedRequest] = field(default_factory=list)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Return the recorded requests for `path` (such as `/companies`), oldest first."""
        return [request for request in self.requests if request.path == path]


def create_planhat_app(state: PlanhatState) -> web.Application:
    """Build the aiohttp application that serves `state`."""
    app = web.Application(middlewares=[_record_request, _inject_failures])
    app[_STATE_KEY] = state
    app.router.add_get("/companies", _list_companies)
    app.router.add_get("/customfields", _list_custom_fields)
    return app


_STATE_KEY = web.AppKey("planhat_state", PlanhatState)


def _state(request: web.Request) -> PlanhatState:
    return request.app[_STATE_KEY]


@web.middleware
async def _record_request(request: web.Request, handler: Any) -> web.StreamResponse:
    state = _state(request)
    received_at = time.monotonic()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        state.requests.append(_recorded(request, at=received_at, status=exc.status))
        raise
    state.requests.append(_recorded(request, at=received_at, status=response.status))
    return response


def _recorded(request: web.Request, *, at: float, status: int) -> RecordedRequest:
    return RecordedRequest(path=request.path, query=dict(request.query), at=at, status=status)


@web.middleware
async def _inject_failures(request: web.Request, handler: Any) -> web.StreamResponse:
    """Apply latency, then the token check, then the failure switches, in that order."""
    state = _state(request)
    if state.latency_seconds > 0:
        await asyncio.sleep(state.latency_seconds)

    if request.headers.get("Authorization") != f"Bearer {state.token}":
        return web.json_response(
            {"error": "Unauthorized: invalid or missing API token"}, status=401
        )

    if state.rate_limit_next > 0:
        state.rate_limit_next -= 1
        return _error_response(state, status=429)

    if request.path == "/companies" and _should_fail_page(request, state):
        return _error_response(state, status=state.fail_status)

    if state.malformed_next > 0:
        state.malformed_next -= 1
        return web.Response(
            text=state.malformed_body, status=200, content_type="application/json"
        )

    return await handler(request)


def _error_response(state: PlanhatState, *, status: int) -> web.Response:
    headers = {}
    if status == 429 and state.rate_limit_retry_after is not None:
        headers["Retry-After"] = _format_retry_after(state.rate_limit_retry_after)
    message = "Too many requests" if status == 429 else "Internal server error"
    return web.json_response({"error": message}, status=status, headers=headers)


def _format_retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:g}"


def _should_fail_page(request: web.Request, state: PlanhatState) -> bool:
    if state.fail_on_page is None:
        return False
    try:
        limit = _read_limit(request, maximum=MAX_COMPANY_LIMIT)
        offset = _read_offset(request)
    except web.HTTPBadRequest:
        return False

    page = offset // limit + 1
    if page != state.fail_on_page:
        return False
    if state.fail_on_page_times is None:
        return True
    if state.fail_on_page_times <= 0:
        return False
    state.fail_on_page_times -= 1
    return True


async def _list_companies(request: web.Request) -> web.Response:
    state = _state(request)
    limit = _read_limit(request, maximum=MAX_COMPANY_LIMIT)
    offset = _read_offset(request)
    page = state.companies[offset : offset + limit]

    select = request.query.get("select")
    if select:
        # Planhat always returns `_id`; absent fields are left out, as a database projection does.
        keys = ["_id", *(name.strip() for name in select.split(",") if name.strip())]
        page = [{key: company[key] for key in keys if key in company} for company in page]
    return web.json_response(page)


async def _list_custom_fields(request: web.Request) -> web.Response:
    state = _state(request)
    limit = _read_limit(request, maximum=MAX_OTHER_LIMIT)
    offset = _read_offset(request)
    return web.json_response(state.custom_fields[offset : offset + limit])


def _read_limit(request: web.Request, *, maximum: int) -> int:
    """Return the page size, capped silently at `maximum` as Planhat is believed to do."""
    limit = _read_non_negative_int(request, "limit", default=DEFAULT_LIMIT)
    if limit == 0:
        raise _bad_request("limit must be at least 1")
    return min(limit, maximum)


def _read_offset(request: web.Request) -> int:
    return _read_non_negative_int(request, "offset", default=0)


def _read_non_negative_int(request: web.Request, name: str, *, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise _bad_request(f"{name} must not be negative, got {value}")
    return value


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": message}), content_type="application/json"
    )


def _load_state(args: argparse.Namespace) -> PlanhatState:
    if args.data is not None:
        companies = json.loads((args.data / "companies.json").read_text(encoding="utf-8"))
        custom_fields = json.loads((args.data / "customfields.json").read_text(encoding="utf-8"))
        return PlanhatState(companies=companies, custom_fields=custom_fields, token=args.token)

    # Imported here so that tests importing the server do not pay for the generator.
    from loopback.sample_data import generate_sample

    sample = generate_sample(seed=args.seed, today=args.today, company_count=args.companies)
    return PlanhatState(
        companies=sample.companies, custom_fields=sample.custom_fields, token=args.token
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loopback.planhat_server",
        description="Serve a fake Planhat API on 127.0.0.1 with generated or saved sample data.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one.")
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=date.today(),
        help="Date (YYYY-MM-DD) that generated renewal and touch dates are relative to.",
    )
    parser.add_argument("--seed", type=int, default=20261204, help="Seed for generated data.")
    parser.add_argument(
        "--companies", type=int, default=2000, help="Number of companies to generate."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="Folder with companies.json and customfields.json to serve instead of generating.",
    )
    parser.add_argument(
        "--token", default=DEFAULT_TOKEN, help="Bearer token that requests must send."
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    state = _load_state(args)
    server = await start_server(create_planhat_app(state), port=args.port)
    print(f"Planhat loopback API at {server.url} ({len(state.companies)} companies)", flush=True)
    print(f"PLANHAT_API_URL={server.url} PLANHAT_API_TOKEN={state.token}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
