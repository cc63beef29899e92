"""Async client for the Planhat REST API: complete company lists and custom field definitions.

`PlanhatClient` implements `segments.ports.CompanySource`. It pages through `GET /companies` with
`limit`/`offset` until a short page, because Planhat returns a bare JSON array with no total.
It retries rate limits, server errors and network failures with capped exponential backoff, and
it returns every company or raises a `planhat.errors` error, never a partial list.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from planhat.cache import TTLCache
from planhat.errors import (
    TOKEN_HELP,
    PlanhatAuthError,
    PlanhatError,
    PlanhatMalformedResponseError,
    PlanhatNotFoundError,
    PlanhatRateLimitedError,
    PlanhatServerError,
    PlanhatUnavailableError,
)
from planhat.models import Company, CompanySnapshot, CustomFieldDefinition

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.planhat.com"

# Page-size caps used by Planhat's open-source clients (Airbyte, robocorp): 5,000 for companies
# and 2,000 for other models. A larger `limit` would be capped by the server, and the capped page
# would look short and end the paging loop early, so larger page sizes are rejected.
MAX_COMPANY_PAGE_SIZE = 5000
CUSTOM_FIELD_PAGE_SIZE = 2000

# Planhat sometimes returns 200 with an object such as {"error": ...} instead of the array, and
# a repeat of the same request usually succeeds. Such a body is retried at most twice (three
# attempts in all, fewer when max_attempts is lower) before PlanhatMalformedResponseError.
MALFORMED_BODY_RETRIES = 2

# Stops a server that ignores `offset` from keeping the paging loop busy forever. At 5,000 per
# page this allows 50 million companies.
MAX_PAGES = 10_000

_RETRYABLE_ERRORS = (
    PlanhatRateLimitedError,
    PlanhatServerError,
    PlanhatUnavailableError,
    PlanhatMalformedResponseError,
)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _FetchStats:
    """Counters shared by the pages of one fetch, so the retry-time bound covers the whole fetch."""

    calls: int = 0
    waited_seconds: float = 0.0


class PlanhatClient:
    """Planhat API client with paging, retries and a short-lived cache of recent fetches.

    `timeout` applies to each phase of one HTTP request (connect, read, write), in seconds.
    Each request is tried at most `max_attempts` times. `max_retry_seconds` caps the total time
    one fetch spends waiting between attempts: when the next wait would pass it, the fetch
    gives up at once. `transport`, `sleep` and `clock` are test seams.
    """

    def __init__(
        self,
        *,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        page_size: int = MAX_COMPANY_PAGE_SIZE,
        timeout: float = 30.0,
        max_attempts: int = 4,
        max_retry_seconds: float = 60.0,
        cache_ttl_seconds: float = 60.0,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= page_size <= MAX_COMPANY_PAGE_SIZE:
            raise ValueError(
                f"page_size must be between 1 and {MAX_COMPANY_PAGE_SIZE}, got {page_size}"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(
                f"PLANHAT_API_URL must start with https:// or http://, got {base_url!r}"
            )

        self._base_url = base_url.rstrip("/")
        self._page_size = page_size
        self._max_attempts = max_attempts
        self._max_retry_seconds = max_retry_seconds
        self._backoff_base_seconds = backoff_base_seconds
        self._backoff_max_seconds = backoff_max_seconds
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self._company_cache: TTLCache[frozenset[str], CompanySnapshot] = TTLCache(
            ttl_seconds=cache_ttl_seconds, clock=clock
        )
        self._custom_field_cache: TTLCache[str, tuple[CustomFieldDefinition, ...]] = TTLCache(
            ttl_seconds=cache_ttl_seconds, clock=clock
        )

    async def __aenter__(self) -> PlanhatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch_companies(
        self, *, fields: Sequence[str], fresh: bool = False
    ) -> CompanySnapshot:
        """Return every company with `_id`, `name` and the top-level fields behind `fields`.

        A path such as `custom.Seats Purchased` requests its top-level field, `custom`. With
        `fresh=False` a snapshot of the same field set younger than the cache TTL is returned
        as it was stored, with its original `fetched_at` and `calls`. `fresh=True` always
        fetches and replaces the cached snapshot. Raises a `PlanhatError` subclass when any
        page fails.
        """
        select = select_fields(fields)
        cache_key = frozenset(select)
        if not fresh:
            cached = self._company_cache.get(cache_key)
            if cached is not None:
                logger.debug("Serving %d Planhat companies from cache", len(cached.companies))
                return cached

        snapshot = await self._fetch_company_snapshot(select)
        self._company_cache.put(cache_key, snapshot)
        return snapshot

    async def fetch_custom_fields(self, *, fresh: bool = False) -> list[CustomFieldDefinition]:
        """Return the custom field definitions of the company model, cached like companies.

        Definitions without a name are skipped because company values are keyed by name.
        """
        if not fresh:
            cached = self._custom_field_cache.get("company")
            if cached is not None:
                return list(cached)

        stats = _FetchStats()
        records, pages = await self._fetch_all_pages(
            "/customfields", page_size=CUSTOM_FIELD_PAGE_SIZE, params={}, stats=stats
        )
        definitions = [
            definition
            for definition in (parse_custom_field(record) for record in records)
            if definition is not None and definition.is_company_field
        ]
        logger.info(
            "Fetched %d company custom fields from Planhat (%d definitions, %d pages, %d calls)",
            len(definitions),
            len(records),
            pages,
            stats.calls,
        )
        self._custom_field_cache.put("company", tuple(definitions))
        return definitions

    async def _fetch_company_snapshot(self, select: list[str]) -> CompanySnapshot:
        started = self._clock()
        stats = _FetchStats()
        records, pages = await self._fetch_all_pages(
            "/companies",
            page_size=self._page_size,
            params={"select": ",".join(select)},
            stats=stats,
        )
        parsed = parse_companies(records)
        if parsed.skipped:
            logger.warning(
                "Skipped %d Planhat company records without a string _id", parsed.skipped
            )

        logger.info(
            "Fetched %d Planhat companies in %d pages (%d calls, %d duplicates dropped, %.2f s)",
            len(parsed.companies),
            pages,
            stats.calls,
            parsed.duplicates,
            self._clock() - started,
        )
        return CompanySnapshot(
            companies=tuple(parsed.companies),
            fetched_at=datetime.now(UTC),
            calls=stats.calls,
        )

    async def _fetch_all_pages(
        self,
        path: str,
        *,
        page_size: int,
        params: Mapping[str, str],
        stats: _FetchStats,
    ) -> tuple[list[Any], int]:
        """Request pages of `page_size` until a short or empty page; return records and pages.

        Planhat sends no total, so a last page that happens to be full costs one more call
        that returns an empty page.
        """
        records: list[Any] = []
        offset = 0
        for pages in range(1, MAX_PAGES + 1):
            page_params = {"limit": str(page_size), "offset": str(offset), **params}
            page = await self._get_list_with_retries(path, params=page_params, stats=stats)
            records.extend(page)
            if len(page) < page_size:
                return records, pages
            offset += page_size

        raise PlanhatMalformedResponseError(
            f"Planhat {path} still returned full pages after {MAX_PAGES} pages",
            status_code=200,
            url=self._display_url(path, {}),
            user_message=(
                "Planhat kept returning full pages of companies without an end. Check that "
                "PLANHAT_API_URL points at the Planhat API, then try again."
            ),
        )

    async def _get_list_with_retries(
        self, path: str, *, params: Mapping[str, str], stats: _FetchStats
    ) -> list[Any]:
        """GET one page, retrying the same request (same offset) on transient failures."""
        malformed_bodies = 0
        for attempt in range(1, self._max_attempts + 1):
            stats.calls += 1
            try:
                return await self._get_list(path, params=params)
            except _RETRYABLE_ERRORS as error:
                error.attempts = attempt
                if isinstance(error, PlanhatMalformedResponseError):
                    malformed_bodies += 1
                    if malformed_bodies > MALFORMED_BODY_RETRIES:
                        self._log_give_up(path, params, error, reason="malformed bodies")
                        raise
                if attempt == self._max_attempts:
                    self._log_give_up(path, params, error, reason="attempts exhausted")
                    raise

                wait = self._retry_wait(error, attempt=attempt)
                if stats.waited_seconds + wait > self._max_retry_seconds:
                    self._log_give_up(
                        path,
                        params,
                        error,
                        reason=(
                            f"a wait of {wait:.2f} s would pass the "
                            f"{self._max_retry_seconds:g} s retry bound"
                        ),
                    )
                    raise

                logger.warning(
                    "Planhat GET %s offset=%s failed (%s), retrying in %.2f s (attempt %d of %d)",
                    path,
                    params.get("offset"),
                    error,
                    wait,
                    attempt,
                    self._max_attempts,
                )
                await self._sleep(wait)
                stats.waited_seconds += wait

        raise AssertionError("unreachable: the last attempt returns or raises")

    def _retry_wait(self, error: PlanhatError, *, attempt: int) -> float:
        """Return Retry-After when Planhat sent it, else a full-jitter exponential backoff."""
        if error.retry_after_seconds is not None:
            return error.retry_after_seconds

        ceiling = min(self._backoff_max_seconds, self._backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)

    def _log_give_up(
        self, path: str, params: Mapping[str, str], error: PlanhatError, *, reason: str
    ) -> None:
        logger.warning(
            "Planhat GET %s offset=%s failed after %d attempts (%s): %s",
            path,
            params.get("offset"),
            error.attempts,
            reason,
            error,
        )

    async def _get_list(self, path: str, *, params: Mapping[str, str]) -> list[Any]:
        """Send one GET and return its JSON array, translating every failure to a PlanhatError.

        This is the only place where httpx exceptions are caught.
        """
        url = self._display_url(path, params)
        try:
            response = await self._http.get(path, params=dict(params))
        except httpx.TimeoutException as exc:
            raise _unavailable(
                url, base_url=self._base_url, reason="timed out", detail=repr(exc)
            ) from exc
        except httpx.RequestError as exc:
            raise _unavailable(
                url, base_url=self._base_url, reason="connection failed", detail=repr(exc)
            ) from exc

        return _read_list_response(response, url=url)

    def _display_url(self, path: str, params: Mapping[str, str]) -> str:
        # The token travels in the Authorization header, so the URL is safe to show and log.
        return str(httpx.URL(self._base_url + path, params=dict(params)))


def select_fields(fields: Iterable[str]) -> list[str]:
    """Return `_id`, `name` and the top-level field of each path, without repeats, in order.

    Planhat's `select` takes top-level property names, so `custom.Seats Purchased` becomes
    `custom` (the text before the first dot).
    """
    selected: dict[str, None] = {"_id": None, "name": None}
    for path in fields:
        top_level = path.split(".", 1)[0].strip()
        if top_level:
            selected[top_level] = None
    return list(selected)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait in seconds that a Retry-After header requests, or None if unusable.

    The header contains either seconds or an HTTP date. A date in the past gives 0.
    """
    if value is None or not value.strip():
        return None

    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if seconds >= 0 else None

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


@dataclass(frozen=True)
class ParsedCompanies:
    """Companies parsed from raw records, with counts of records skipped and dropped."""

    companies: list[Company]
    skipped: int
    duplicates: int


def parse_companies(records: Iterable[Any]) -> ParsedCompanies:
    """Parse raw `/companies` records, keeping the first record of each `_id`.

    A record that is not an object or has no string `_id` is skipped and counted.
    """
    companies: list[Company] = []
    seen_ids: set[str] = set()
    skipped = 0
    duplicates = 0
    for record in records:
        company = parse_company(record)
        if company is None:
            skipped += 1
        elif company.id in seen_ids:
            duplicates += 1
        else:
            seen_ids.add(company.id)
            companies.append(company)
    return ParsedCompanies(companies=companies, skipped=skipped, duplicates=duplicates)


def parse_company(record: Any) -> Company | None:
    """Build a Company from one raw record, or return None when it has no usable `_id`.

    A missing or null name becomes "". `owner` and `coOwner`, which list responses may send as
    `{"_id": ..., "nickName": ...}`, become the id string. Every other value stays as sent.
    """
    if not isinstance(record, dict):
        return None
    company_id = record.get("_id")
    if not isinstance(company_id, str) or not company_id:
        return None

    name = record.get("name")
    fields = dict(record)
    for owner_field in ("owner", "coOwner"):
        if owner_field in fields:
            fields[owner_field] = _owner_id(fields[owner_field])
    return Company(id=company_id, name=name if isinstance(name, str) else "", fields=fields)


def parse_custom_field(record: Any) -> CustomFieldDefinition | None:
    """Build a CustomFieldDefinition from one raw record, or None when it has no name."""
    if not isinstance(record, dict):
        return None
    name = record.get("name")
    if not isinstance(name, str) or not name.strip():
        return None

    raw_list_values = record.get("listValues")
    list_values: tuple[str, ...] = ()
    if isinstance(raw_list_values, list):
        list_values = tuple(
            str(value) for value in raw_list_values if isinstance(value, str | int | float)
        )
    return CustomFieldDefinition(
        id=_string_or_empty(record.get("_id")),
        name=name,
        type=_string_or_empty(record.get("type")),
        parent=_string_or_empty(record.get("parent")),
        list_values=list_values,
    )


def _owner_id(value: Any) -> Any:
    if isinstance(value, dict):
        owner_id = value.get("_id")
        return owner_id if isinstance(owner_id, str) else None
    return value


def _string_or_empty(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _read_list_response(response: httpx.Response, *, url: str) -> list[Any]:
    """Return the JSON array of a 200 response, or raise the PlanhatError for its status."""
    status = response.status_code
    if status == 200:
        try:
            body = response.json()
        except ValueError as exc:
            raise _malformed(url, detail="body is not JSON") from exc
        if not isinstance(body, list):
            raise _malformed(url, detail=f"body is a JSON {type(body).__name__}, not an array")
        return body

    detail = _error_detail(response)
    message = f"Planhat returned HTTP {status} for {url}: {detail}"
    if status in (401, 403):
        raise PlanhatAuthError(
            message, status_code=status, url=url, user_message=_auth_user_message(status)
        )
    if status == 404:
        raise PlanhatNotFoundError(
            message,
            status_code=status,
            url=url,
            user_message=(
                f"Planhat returned HTTP 404 for {response.request.url.path}. Check that "
                "PLANHAT_API_URL is your Planhat API host, such as https://api.planhat.com."
            ),
        )

    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        raise PlanhatRateLimitedError(
            message,
            status_code=status,
            url=url,
            retry_after_seconds=retry_after,
            user_message=(
                "Planhat is rate-limiting requests from segment-bot (HTTP 429). "
                "Wait a minute, then try again."
            ),
        )
    if status >= 500:
        raise PlanhatServerError(
            message,
            status_code=status,
            url=url,
            retry_after_seconds=retry_after,
            user_message=(
                f"Planhat returned a server error (HTTP {status}). Try again in a few minutes."
            ),
        )
    raise PlanhatError(
        message,
        status_code=status,
        url=url,
        user_message=(
            f"Planhat rejected the request (HTTP {status}). Check PLANHAT_API_URL, and report "
            "this error to the segment-bot maintainers if it persists."
        ),
    )


def _auth_user_message(status: int) -> str:
    if status == 403:
        return (
            "Planhat rejected the API token (HTTP 403). Give its Service Account permission "
            f"to read companies, or {TOKEN_HELP[0].lower()}{TOKEN_HELP[1:]}"
        )
    return f"Planhat rejected the API token (HTTP {status}). {TOKEN_HELP}"


def _malformed(url: str, *, detail: str) -> PlanhatMalformedResponseError:
    return PlanhatMalformedResponseError(
        f"Planhat returned HTTP 200 for {url} but the {detail}",
        status_code=200,
        url=url,
        user_message=(
            "Planhat returned an unexpected response instead of a list. Try again, and check "
            "that PLANHAT_API_URL points at the Planhat API."
        ),
    )


def _unavailable(
    url: str, *, base_url: str, reason: str, detail: str
) -> PlanhatUnavailableError:
    return PlanhatUnavailableError(
        f"Planhat request to {url} {reason}: {detail}",
        status_code=None,
        url=url,
        user_message=(
            f"Could not reach Planhat at {base_url} ({reason}). Check PLANHAT_API_URL and the "
            "network, then try again."
        ),
    )


def _error_detail(response: httpx.Response) -> str:
    """Return a short description of an error body, which may be JSON or plain text."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] if text else "empty body"
    if isinstance(body, dict):
        for key in ("error", "message", "msg"):
            if isinstance(body.get(key), str):
                return str(body[key])[:200]
    return str(body)[:200]
