"""The loopback Planhat API, exercised with plain httpx requests and as a command-line program."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback.planhat_server import PlanhatState
from loopback.server import RunningServer

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def make_companies(count: int) -> list[dict[str, Any]]:
    return [
        {"_id": f"{index:024x}", "name": f"Company {index}", "h": index % 11, "phase": "Adoption"}
        for index in range(count)
    ]


@pytest.fixture
async def http(
    planhat_server: RunningServer, planhat_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=planhat_server.url, headers={"Authorization": f"Bearer {planhat_token}"}
    ) as client:
        yield client


async def test_companies_default_limit_is_100(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(150)

    response = await http.get("/companies")

    assert response.status_code == 200
    assert len(response.json()) == 100


async def test_companies_limit_is_capped_at_5000(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(5100)

    response = await http.get("/companies", params={"limit": 10000})

    assert len(response.json()) == 5000


async def test_companies_offset_returns_next_slice(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(25)

    response = await http.get("/companies", params={"limit": 10, "offset": 20})

    assert [company["_id"] for company in response.json()] == [
        company["_id"] for company in planhat_state.companies[20:]
    ]


async def test_companies_select_returns_only_requested_fields(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = [{"_id": "a", "name": "A", "h": 3, "phase": "Adoption"}, {"_id": "b"}]

    response = await http.get("/companies", params={"select": "h,name"})

    assert response.json() == [{"_id": "a", "h": 3, "name": "A"}, {"_id": "b"}]


async def test_companies_without_select_returns_full_records(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(1)

    response = await http.get("/companies")

    assert response.json() == planhat_state.companies


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic abc"])
async def test_bad_token_returns_401(
    planhat_server: RunningServer, planhat_state: PlanhatState, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    async with httpx.AsyncClient(base_url=planhat_server.url, headers=headers) as client:
        response = await client.get("/companies")

    assert response.status_code == 401
    assert "error" in response.json()
    assert planhat_state.requests[0].status == 401


@pytest.mark.parametrize("limit", ["-1", "0", "many"])
async def test_invalid_limit_is_400(http: httpx.AsyncClient, limit: str) -> None:
    response = await http.get("/companies", params={"limit": limit})

    assert response.status_code == 400
    assert "limit" in response.json()["error"]


async def test_rate_limit_returns_429_with_retry_after(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.rate_limit_next = 1
    planhat_state.rate_limit_retry_after = 2.5

    limited = await http.get("/companies")
    after = await http.get("/companies")

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2.5"
    assert after.status_code == 200
    assert planhat_state.rate_limit_next == 0


async def test_rate_limit_without_retry_after_sends_no_header(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.rate_limit_next = 1

    response = await http.get("/companies")

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


async def test_fail_on_page_fails_only_that_page(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(30)
    planhat_state.fail_on_page = 2
    planhat_state.fail_status = 502

    statuses = [
        (await http.get("/companies", params={"limit": 10, "offset": offset})).status_code
        for offset in (0, 10, 10, 20)
    ]

    assert statuses == [200, 502, 502, 200]


async def test_fail_on_page_times_limits_failures(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(30)
    planhat_state.fail_on_page = 1
    planhat_state.fail_on_page_times = 1

    first = await http.get("/companies", params={"limit": 10})
    second = await http.get("/companies", params={"limit": 10})

    assert first.status_code == 500
    assert second.status_code == 200


async def test_malformed_returns_200_with_object(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.companies = make_companies(1)
    planhat_state.malformed_next = 1

    malformed = await http.get("/companies")
    normal = await http.get("/companies")

    assert malformed.status_code == 200
    assert isinstance(malformed.json(), dict)
    assert isinstance(normal.json(), list)


async def test_requests_are_recorded_with_query_and_status(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    await http.get("/companies", params={"limit": 5, "offset": 10, "select": "h"})
    await http.get("/customfields")
    await http.get("/users")

    assert [(request.path, request.status) for request in planhat_state.requests] == [
        ("/companies", 200),
        ("/customfields", 200),
        ("/users", 404),
    ]
    assert planhat_state.requests[0].query == {"limit": "5", "offset": "10", "select": "h"}
    assert len(planhat_state.requests_to("/companies")) == 1


async def test_custom_fields_page_with_limit_and_offset(
    planhat_state: PlanhatState, http: httpx.AsyncClient
) -> None:
    planhat_state.custom_fields = [
        {"_id": str(index), "name": f"Field {index}"} for index in range(2500)
    ]

    capped = await http.get("/customfields", params={"limit": 5000})
    rest = await http.get("/customfields", params={"limit": 2000, "offset": 2000})

    assert len(capped.json()) == 2000
    assert len(rest.json()) == 500


def test_command_line_serves_sample_data() -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    command = [
        sys.executable,
        "-m",
        "loopback.planhat_server",
        "--port",
        "0",
        "--today",
        "2026-12-04",
        "--companies",
        "120",
        "--token",
        "cli-token",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=environment, cwd=REPOSITORY_ROOT
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        url = first_line.split(" at ", 1)[1].split()[0]

        response = httpx.get(
            f"{url}/companies",
            params={"limit": 500},
            headers={"Authorization": "Bearer cli-token"},
            timeout=10,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert url.startswith("http://127.0.0.1:")
    assert response.status_code == 200
    assert len(response.json()) == 120
