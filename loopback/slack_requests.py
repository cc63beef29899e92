"""Send requests to a running segment-bot the way Slack does: form bodies signed with the secret.

Scenario tests and the ack benchmark drive the app only through HTTP, so they cover request
verification, Bolt's routing and the 3-second ack as a workspace would.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

TEAM_ID = "T0SEGMENT"
ADMIN_ID = "U0ADMIN"
MEMBER_ID = "U0MEMBER"


@dataclass
class SlackResponse:
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackSimulator:
    """Signs and posts slash commands, interactivity payloads and options loads to `events_url`."""

    def __init__(self, *, events_url: str, signing_secret: str, slack_url: str) -> None:
        self.events_url = events_url
        self.slack_url = slack_url
        self._verifier = SignatureVerifier(signing_secret)
        self._http = httpx.AsyncClient(timeout=30)

    async def aclose(self) -> None:
        await self._http.aclose()

    def response_url(self) -> str:
        """Return a fresh response_url on the loopback Slack server, as Slack includes in payloads."""
        return f"{self.slack_url}/response/{uuid.uuid4().hex}"

    async def post(self, body: str, *, timestamp: int | None = None, signature: str | None = None) -> SlackResponse:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        if signature is None:
            signature = self._verifier.generate_signature(timestamp=stamp, body=body) or ""
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": signature,
        }
        started = time.perf_counter()
        response = await self._http.post(self.events_url, content=body.encode(), headers=headers)
        return SlackResponse(status=response.status_code, body=response.text, seconds=time.perf_counter() - started)

    async def command(
        self, text: str, *, user_id: str = ADMIN_ID, channel_id: str = "C0CSTEAM00", response_url: str | None = None
    ) -> SlackResponse:
        body = urlencode(
            {
                "token": "legacy",
                "team_id": TEAM_ID,
                "team_domain": "segment-loopback",
                "channel_id": channel_id,
                "channel_name": "cs-team",
                "user_id": user_id,
                "user_name": user_id.lower(),
                "command": "/segment",
                "text": text,
                "api_app_id": "A0SEGMENT",
                "response_url": response_url or self.response_url(),
                "trigger_id": f"trigger-{uuid.uuid4().hex}",
            }
        )
        return await self.post(body)

    async def interact(self, payload: dict[str, Any]) -> SlackResponse:
        payload.setdefault("team", {"id": TEAM_ID, "domain": "segment-loopback"})
        payload.setdefault("api_app_id", "A0SEGMENT")
        payload.setdefault("token", "legacy")
        return await self.post(urlencode({"payload": json.dumps(payload)}))

    @staticmethod
    def user(user_id: str = ADMIN_ID) -> dict[str, str]:
        return {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID}
