"""Typed errors that the Planhat adapter raises, each with a sentence a person can act on.

Every error carries the HTTP status (None when no response arrived), the request URL (the token
travels in a header, so the URL never contains it) and `user_message`, which the Slack app shows
as is. `str(error)` is the technical message for logs.

    PlanhatError                       base class, raised as is for other 4xx and 3xx statuses
    ├── PlanhatAuthError               401 or 403: the token is invalid or lacks permission
    ├── PlanhatNotFoundError           404: PLANHAT_API_URL does not point at the API
    ├── PlanhatRateLimitedError        429 until the retry attempts or time bound ran out
    ├── PlanhatServerError             5xx until the retry attempts or time bound ran out
    ├── PlanhatMalformedResponseError  200 whose body is not JSON or not a JSON array
    └── PlanhatUnavailableError        timeouts or connection errors until the retries ran out
"""

from __future__ import annotations

TOKEN_HELP = "Create a new token under Settings > Service Accounts and set PLANHAT_API_TOKEN."


class PlanhatError(Exception):
    """A failed Planhat request, with the status, the URL and a message for the user."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        url: str,
        user_message: str,
        attempts: int = 1,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url
        self.user_message = user_message
        # Number of requests made before giving up, set by the client's retry loop.
        self.attempts = attempts
        # Seconds to wait that Planhat's Retry-After header requested, when it sent one.
        self.retry_after_seconds = retry_after_seconds


class PlanhatAuthError(PlanhatError):
    """Planhat rejected the API token (HTTP 401) or its permissions (HTTP 403)."""


class PlanhatNotFoundError(PlanhatError):
    """Planhat returned 404, which for a list endpoint means the base URL is wrong."""


class PlanhatRateLimitedError(PlanhatError):
    """Planhat returned 429 until the retry attempts or the retry-time bound ran out."""


class PlanhatServerError(PlanhatError):
    """Planhat returned a 5xx status until the retry attempts or the retry-time bound ran out."""


class PlanhatMalformedResponseError(PlanhatError):
    """Planhat returned 200 with a body that is not JSON or not a JSON array."""


class PlanhatUnavailableError(PlanhatError):
    """Requests timed out or could not connect until the retries ran out, so no response came."""
