"""PlanhatClient against the loopback Planhat API: paging, retries, errors and parsing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import generate_custom_fields
from loopback.server import RunningServer, start_server
from planhat.client import PlanhatClient, parse_retry_after, select_fields
from planhat.errors import (
    PlanhatAuthError,
    PlanhatMalformedResponseError,
    PlanhatNotFoundError,
    PlanhatRateLimitedError,
    PlanhatServerError,
    PlanhatUnavailableError,
)

ClientFactory = Callable[..., PlanhatClient]

BACKOFF_BASE_SECONDS = 0.01


class RecordingSleep:
    """Stands in for asyncio.sleep: records each requested wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_companies(count: int) -> list[dict[str, Any]]:
    return [
        {"_id": f"{index:024x}", "name": f"Company {index}", "h": index % 11, "phase": "Adoption"}
        for index in range(count)
    ]


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def make_client(
    planhat_server: RunningServer, planhat_token: str, sleeps: RecordingSleep
) -> AsyncIterator[ClientFactory]:
    """Return a factory of clients on the loopback server with recorded, instant retry waits."""
    clients: list[PlanhatClient] = []

    def factory(**overrides: Any) -> PlanhatClient:
        options: dict[str, Any] = {
            "base_url": planhat_server.url,
            "token": planhat_token,
            "backoff_base_seconds": BACKOFF_BASE_SECONDS,
            "sleep": sleeps,
        }
        options.update(overrides)
        client = PlanhatClient(**options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


def company_offsets(state: PlanhatState) -> list[int]:
    return [int(request.query["offset"]) for request in state.requests_to("/companies")]


# Paging


@pytest.mark.parametrize(
    ("company_count", "expected_pages"),
    [(0, 1), (4_999, 1), (5_000, 2), (5_001, 2)],
)
async def test_fetch_pages_until_short_page(
    planhat_state: PlanhatState,
    make_client: ClientFactory,
    company_count: int,
    expected_pages: int,
) -> None:
    planhat_state.companies = make_companies(company_count)
    client = make_client()

    snapshot = await client.fetch_companies(fields=["h"])

    assert len(planhat_state.requests_to("/companies")) == expected_pages
    assert snapshot.calls == expected_pages
    assert company_offsets(planhat_state) == [5000 * page for page in range(expected_pages)]
    returned_ids = [company.id for company in snapshot.companies]
    assert len(returned_ids) == company_count
    assert set(returned_ids) == {company["_id"] for company in planhat_state.companies}


async def test_fetch_uses_configured_page_size(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.companies = make_companies(5)
    client = make_client(page_size=2)

    snapshot = await client.fetch_companies(fields=[])

    assert company_offsets(planhat_state) == [0, 2, 4]
    assert {request.query["limit"] for request in planhat_state.requests_to("/companies")} == {"2"}
    assert len(snapshot.companies) == 5


async def test_fetch_sends_select_with_id_and_name(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    client = make_client()

    await client.fetch_companies(fields=["h", "custom.Seats Purchased", "phase", "h", "custom"])

    request = planhat_state.requests_to("/companies")[0]
    assert request.query["select"] == "_id,name,h,custom,phase"
    assert request.query["limit"] == "5000"
    assert request.query["offset"] == "0"


def test_select_fields_keeps_first_occurrence_order() -> None:
    assert select_fields(["name", "renewalDate", "lastTouchByType.email", ""]) == [
        "_id",
        "name",
        "renewalDate",
        "lastTouchByType",
    ]


async def test_fetch_drops_duplicate_ids_keeping_first(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.companies = [
        {"_id": "aaa", "name": "First copy"},
        {"_id": "bbb", "name": "Other"},
        {"_id": "aaa", "name": "Second copy"},
    ]
    client = make_client()

    snapshot = await client.fetch_companies(fields=[])

    assert [company.id for company in snapshot.companies] == ["aaa", "bbb"]
    assert snapshot.companies[0].name == "First copy"


def test_page_size_above_planhat_maximum_is_rejected() -> None:
    with pytest.raises(ValueError, match="page_size"):
        PlanhatClient(token="x", page_size=5001)


# Retries


async def test_rate_limit_then_success_waits_retry_after(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.companies = make_companies(3)
    planhat_state.rate_limit_next = 2
    planhat_state.rate_limit_retry_after = 0.25
    client = make_client()

    snapshot = await client.fetch_companies(fields=[])

    assert sleeps.waits == [0.25, 0.25]
    assert snapshot.calls == 3
    assert [request.status for request in planhat_state.requests] == [429, 429, 200]
    assert len(snapshot.companies) == 3


async def test_rate_limit_without_retry_after_uses_backoff(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.companies = make_companies(3)
    planhat_state.rate_limit_next = 3
    client = make_client(max_attempts=4)

    snapshot = await client.fetch_companies(fields=[])

    assert len(sleeps.waits) == 3
    for attempt, wait in enumerate(sleeps.waits, start=1):
        assert 0 <= wait <= BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)
    assert len(snapshot.companies) == 3


async def test_retried_page_repeats_same_offset(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.companies = make_companies(250)
    planhat_state.fail_on_page = 2
    planhat_state.fail_on_page_times = 1
    client = make_client(page_size=100)

    snapshot = await client.fetch_companies(fields=[])

    assert company_offsets(planhat_state) == [0, 100, 100, 200]
    assert [company.id for company in snapshot.companies] == [
        company["_id"] for company in planhat_state.companies
    ]


async def test_later_page_server_error_raises(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.companies = make_companies(250)
    planhat_state.fail_on_page = 2
    planhat_state.fail_status = 503
    client = make_client(page_size=100, max_attempts=3)

    with pytest.raises(PlanhatServerError) as raised:
        await client.fetch_companies(fields=[])

    assert raised.value.status_code == 503
    assert raised.value.attempts == 3
    assert "HTTP 503" in raised.value.user_message
    assert company_offsets(planhat_state) == [0, 100, 100, 100]
    assert len(sleeps.waits) == 2


async def test_total_retry_wait_is_bounded(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.rate_limit_next = 100
    planhat_state.rate_limit_retry_after = 0.4
    client = make_client(max_attempts=10, max_retry_seconds=1.0)

    with pytest.raises(PlanhatRateLimitedError) as raised:
        await client.fetch_companies(fields=[])

    # Two waits of 0.4 s fit in 1 s; a third would reach 1.2 s, so the client gives up at once.
    assert sleeps.waits == [0.4, 0.4]
    assert len(planhat_state.requests) == 3
    assert raised.value.attempts == 3


async def test_retry_bound_covers_all_pages_of_fetch(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.companies = make_companies(150)
    planhat_state.rate_limit_next = 1
    planhat_state.rate_limit_retry_after = 0.6
    planhat_state.fail_on_page = 2
    planhat_state.fail_status = 429
    planhat_state.fail_on_page_times = 1
    client = make_client(page_size=100, max_retry_seconds=1.0)

    with pytest.raises(PlanhatRateLimitedError):
        await client.fetch_companies(fields=[])

    # Page 1 waited 0.6 s, so page 2 cannot wait another 0.6 s within the 1 s bound.
    assert sleeps.waits == [0.6]
    assert company_offsets(planhat_state) == [0, 0, 100]


async def test_retry_after_beyond_bound_gives_up_at_once(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.rate_limit_next = 1
    planhat_state.rate_limit_retry_after = 120
    client = make_client(max_retry_seconds=60.0)

    with pytest.raises(PlanhatRateLimitedError) as raised:
        await client.fetch_companies(fields=[])

    assert sleeps.waits == []
    assert len(planhat_state.requests) == 1
    assert raised.value.retry_after_seconds == 120
    assert "HTTP 429" in raised.value.user_message


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


async def test_http_date_retry_after_header_is_honoured(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.rate_limit_next = 1
    planhat_state.rate_limit_retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"
    client = make_client()

    await client.fetch_companies(fields=[])

    # A date in the past requests no wait at all, so the random backoff is not used.
    assert sleeps.waits == [0.0]


# Errors that are not retried


async def test_wrong_token_raises_auth_error_with_fix(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    client = make_client(token="revoked-token")

    with pytest.raises(PlanhatAuthError) as raised:
        await client.fetch_companies(fields=[])

    error = raised.value
    assert error.status_code == 401
    assert error.user_message == (
        "Planhat rejected the API token (HTTP 401). Create a new token under "
        "Settings > Service Accounts and set PLANHAT_API_TOKEN."
    )
    assert "revoked-token" not in str(error)
    assert "revoked-token" not in error.url
    assert len(planhat_state.requests) == 1


async def test_wrong_base_path_raises_not_found(
    planhat_server: RunningServer, make_client: ClientFactory
) -> None:
    client = make_client(base_url=planhat_server.url + "/v1")

    with pytest.raises(PlanhatNotFoundError) as raised:
        await client.fetch_companies(fields=[])

    assert raised.value.status_code == 404
    assert "PLANHAT_API_URL" in raised.value.user_message
    assert raised.value.url.startswith(planhat_server.url + "/v1/companies?")


# Malformed bodies


async def test_malformed_body_is_retried_then_succeeds(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.companies = make_companies(2)
    planhat_state.malformed_next = 1
    client = make_client()

    snapshot = await client.fetch_companies(fields=[])

    assert snapshot.calls == 2
    assert len(snapshot.companies) == 2


async def test_malformed_body_raises_after_two_retries(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.malformed_next = 10
    client = make_client(max_attempts=6)

    with pytest.raises(PlanhatMalformedResponseError) as raised:
        await client.fetch_companies(fields=[])

    assert len(planhat_state.requests) == 3
    assert raised.value.status_code == 200
    assert "not an array" in str(raised.value)


async def test_non_json_body_raises_malformed(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.malformed_next = 3
    planhat_state.malformed_body = "<html>Service temporarily unavailable</html>"
    client = make_client()

    with pytest.raises(PlanhatMalformedResponseError) as raised:
        await client.fetch_companies(fields=[])

    assert "not JSON" in str(raised.value)


# Network failures


async def test_timeout_raises_unavailable(
    planhat_state: PlanhatState, make_client: ClientFactory, sleeps: RecordingSleep
) -> None:
    planhat_state.latency_seconds = 0.5
    client = make_client(timeout=0.05, max_attempts=2)

    with pytest.raises(PlanhatUnavailableError) as raised:
        await client.fetch_companies(fields=[])

    assert raised.value.status_code is None
    assert raised.value.attempts == 2
    assert "timed out" in raised.value.user_message
    assert len(sleeps.waits) == 1


async def test_refused_connection_raises_unavailable(sleeps: RecordingSleep) -> None:
    stopped = await start_server(create_planhat_app(PlanhatState()))
    await stopped.stop()
    client = PlanhatClient(
        base_url=stopped.url, token="x", max_attempts=2, backoff_base_seconds=0.01, sleep=sleeps
    )

    async with client:
        with pytest.raises(PlanhatUnavailableError) as raised:
            await client.fetch_companies(fields=[])

    assert stopped.url in raised.value.user_message
    assert "PLANHAT_API_URL" in raised.value.user_message
    assert len(sleeps.waits) == 1


# Parsing


async def test_fetch_parses_records_tolerantly(
    planhat_state: PlanhatState, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    planhat_state.companies = [
        {"_id": "a1", "name": "Owner Object", "owner": {"_id": "u1", "nickName": "Alice"}},
        {"name": "No id"},
        {"_id": 42, "name": "Numeric id"},
        {"_id": "b2", "name": None, "owner": "u2"},
        {"_id": "c3"},
        {"_id": "d4", "name": "String numbers", "arr": "45000", "h": "7"},
    ]
    client = make_client()

    with caplog.at_level(logging.WARNING, logger="planhat.client"):
        snapshot = await client.fetch_companies(fields=["owner", "arr", "h"])

    by_id = {company.id: company for company in snapshot.companies}
    assert list(by_id) == ["a1", "b2", "c3", "d4"]
    assert by_id["a1"].get("owner") == "u1"
    assert by_id["b2"].get("owner") == "u2"
    assert by_id["b2"].name == ""
    assert by_id["c3"].name == ""
    assert by_id["d4"].get("arr") == "45000"
    assert by_id["d4"].get("h") == "7"
    skip_warnings = [
        record for record in caplog.records if "without a string _id" in record.getMessage()
    ]
    assert len(skip_warnings) == 1
    assert "Skipped 2 " in skip_warnings[0].getMessage()


async def test_fetch_logs_one_info_line_without_token(
    planhat_state: PlanhatState,
    planhat_token: str,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    planhat_state.companies = make_companies(3)
    planhat_state.rate_limit_next = 1
    client = make_client()

    with caplog.at_level(logging.DEBUG, logger="planhat.client"):
        await client.fetch_companies(fields=[])

    info_lines = [record for record in caplog.records if record.levelno == logging.INFO]
    retry_lines = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(info_lines) == 1
    assert "3 Planhat companies in 1 pages (2 calls" in info_lines[0].getMessage()
    assert len(retry_lines) == 1
    assert "retrying in" in retry_lines[0].getMessage()
    assert planhat_token not in caplog.text


# Custom fields


async def test_custom_fields_keep_company_definitions(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.custom_fields = [
        *generate_custom_fields(),
        {"_id": "nameless", "type": "text", "parent": "company"},
        {"_id": "no-parent", "name": "Orphan", "type": "text"},
    ]
    client = make_client()

    definitions = await client.fetch_custom_fields()

    by_name = {definition.name: definition for definition in definitions}
    assert "Job Title" not in by_name
    assert "Orphan" not in by_name
    assert by_name["Seats Purchased"].type == "number"
    assert by_name["Plan"].list_values == ("Starter", "Professional", "Enterprise")
    assert by_name["Executive Sponsor"].type == "team member"
    assert by_name["Renewal Notes"].list_values == ()
    assert len(definitions) == 10


async def test_custom_fields_page_by_2000(
    planhat_state: PlanhatState, make_client: ClientFactory
) -> None:
    planhat_state.custom_fields = [
        {"_id": f"cf{index}", "name": f"Field {index}", "type": "text", "parent": "company"}
        for index in range(2500)
    ]
    client = make_client()

    definitions = await client.fetch_custom_fields()

    requests = planhat_state.requests_to("/customfields")
    assert [(request.query["limit"], request.query["offset"]) for request in requests] == [
        ("2000", "0"),
        ("2000", "2000"),
    ]
    assert len(definitions) == 2500
