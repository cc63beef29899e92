"""Hand-written fakes shared by tests: an in-memory DeliveryLog, a manual clock, channel dicts."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from loopback.slack_server import SlackState
from segments.ports import (
    BroadcastRecord,
    BroadcastStatus,
    DeliveryRecord,
    DeliveryStatus,
    DeliveryTarget,
    NewBroadcast,
)

# The `start_slack` fixture: serve a SlackState on loopback and return a retry-free client for it.
SlackStarter = Callable[[SlackState], Awaitable[AsyncWebClient]]

# The transitions the DeliveryLog contract allows. Any other raises, so a sender bug fails loudly.
_ALLOWED_TRANSITIONS = {
    DeliveryStatus.SENDING: {DeliveryStatus.PENDING, DeliveryStatus.SENDING},
    DeliveryStatus.SENT: {DeliveryStatus.SENDING, DeliveryStatus.UNCONFIRMED},
    DeliveryStatus.FAILED: {DeliveryStatus.PENDING, DeliveryStatus.SENDING},
    DeliveryStatus.UNCONFIRMED: {DeliveryStatus.SENDING},
    DeliveryStatus.CANCELLED: {DeliveryStatus.PENDING},
}


class InMemoryDeliveryLog:
    """A `DeliveryLog` kept in memory that records every delivery status change in order."""

    def __init__(self) -> None:
        self.created: list[NewBroadcast] = []
        self.transitions: list[tuple[int, DeliveryStatus]] = []
        self.report_messages: dict[int, tuple[str, str]] = {}
        self._broadcasts: dict[int, BroadcastRecord] = {}
        self._deliveries: dict[int, DeliveryRecord] = {}
        self._delivery_ids: dict[int, list[int]] = {}

    async def create_broadcast(self, broadcast: NewBroadcast) -> BroadcastRecord:
        self.created.append(broadcast)
        broadcast_id = len(self._broadcasts) + 1
        ids = []
        for target in broadcast.targets:
            delivery_id = len(self._deliveries) + 1
            self._deliveries[delivery_id] = DeliveryRecord(
                id=delivery_id,
                broadcast_id=broadcast_id,
                channel_id=target.channel_id,
                channel_name=target.channel_name,
                status=DeliveryStatus.PENDING,
                attempts=0,
                ts=None,
                error=None,
                reason=None,
                companies=tuple(target.companies),
                is_private=target.is_private,
            )
            self.transitions.append((delivery_id, DeliveryStatus.PENDING))
            ids.append(delivery_id)
        self._delivery_ids[broadcast_id] = ids
        self._broadcasts[broadcast_id] = BroadcastRecord(
            id=broadcast_id,
            team_id=broadcast.team_id,
            segment_name=broadcast.segment_name,
            status=BroadcastStatus.SENDING,
            created_at=datetime.now(UTC),
            deliveries=(),
        )
        return self._record(broadcast_id)

    async def start_resolving(self, broadcast: NewBroadcast, *, rules: Mapping[str, Any]) -> BroadcastRecord:
        self.created.append(broadcast)
        broadcast_id = len(self._broadcasts) + 1
        self._delivery_ids[broadcast_id] = []
        self._broadcasts[broadcast_id] = BroadcastRecord(
            id=broadcast_id,
            team_id=broadcast.team_id,
            segment_name=broadcast.segment_name,
            status=BroadcastStatus.RESOLVING,
            created_at=datetime.now(UTC),
            deliveries=(),
        )
        return self._record(broadcast_id)

    async def add_audience(
        self,
        broadcast_id: int,
        *,
        rules_text: str,
        targets: Sequence[DeliveryTarget],
        unmapped: Sequence[Mapping[str, str]],
    ) -> BroadcastRecord:
        self.created[broadcast_id - 1] = dataclasses.replace(
            self.created[broadcast_id - 1], rules_text=rules_text, targets=tuple(targets), unmapped=tuple(unmapped)
        )
        for target in targets:
            self._add_delivery(broadcast_id, target)
        self._broadcasts[broadcast_id] = dataclasses.replace(
            self._broadcasts[broadcast_id], status=BroadcastStatus.SENDING
        )
        return self._record(broadcast_id)

    async def fail_resolving(self, broadcast_id: int) -> BroadcastRecord:
        self._broadcasts[broadcast_id] = dataclasses.replace(
            self._broadcasts[broadcast_id], status=BroadcastStatus.FAILED
        )
        return self._record(broadcast_id)

    async def set_report_message(self, broadcast_id: int, *, channel: str, ts: str) -> None:
        self.report_messages[broadcast_id] = (channel, ts)

    def _add_delivery(self, broadcast_id: int, target: DeliveryTarget) -> None:
        delivery_id = len(self._deliveries) + 1
        self._deliveries[delivery_id] = DeliveryRecord(
            id=delivery_id,
            broadcast_id=broadcast_id,
            channel_id=target.channel_id,
            channel_name=target.channel_name,
            status=DeliveryStatus.PENDING,
            attempts=0,
            ts=None,
            error=None,
            reason=None,
            companies=tuple(target.companies),
            is_private=target.is_private,
        )
        self.transitions.append((delivery_id, DeliveryStatus.PENDING))
        self._delivery_ids[broadcast_id].append(delivery_id)

    async def mark_sending(self, delivery_id: int) -> int:
        delivery = self._change(delivery_id, DeliveryStatus.SENDING)
        self._deliveries[delivery_id] = dataclasses.replace(delivery, attempts=delivery.attempts + 1)
        return delivery.attempts + 1

    async def claim_for_sending(self, delivery_id: int) -> int | None:
        if self._deliveries[delivery_id].status not in _ALLOWED_TRANSITIONS[DeliveryStatus.SENDING]:
            return None
        return await self.mark_sending(delivery_id)

    async def mark_unconfirmed(self, delivery_id: int, *, error: str, reason: str) -> None:
        delivery = self._change(delivery_id, DeliveryStatus.UNCONFIRMED)
        self._deliveries[delivery_id] = dataclasses.replace(delivery, error=error, reason=reason)

    def cancel_pending(self, broadcast_id: int) -> None:
        """Cancel the broadcast's pending deliveries, as a cancel from another writer would."""
        for delivery_id in self._delivery_ids[broadcast_id]:
            if self._deliveries[delivery_id].status == DeliveryStatus.PENDING:
                self._change(delivery_id, DeliveryStatus.CANCELLED)

    async def mark_sent(self, delivery_id: int, *, ts: str) -> None:
        delivery = self._change(delivery_id, DeliveryStatus.SENT)
        self._deliveries[delivery_id] = dataclasses.replace(delivery, ts=ts)

    async def mark_failed(self, delivery_id: int, *, error: str, reason: str) -> None:
        delivery = self._change(delivery_id, DeliveryStatus.FAILED)
        self._deliveries[delivery_id] = dataclasses.replace(delivery, error=error, reason=reason)

    async def finish_broadcast(self, broadcast_id: int) -> BroadcastRecord:
        record = self._record(broadcast_id)
        sent = sum(delivery.status == DeliveryStatus.SENT for delivery in record.deliveries)
        if sent == len(record.deliveries):
            status = BroadcastStatus.SENT
        elif sent == 0:
            status = BroadcastStatus.FAILED
        else:
            status = BroadcastStatus.PARTIALLY_SENT
        self._broadcasts[broadcast_id] = dataclasses.replace(self._broadcasts[broadcast_id], status=status)
        return self._record(broadcast_id)

    async def get_broadcast(self, broadcast_id: int) -> BroadcastRecord | None:
        if broadcast_id not in self._broadcasts:
            return None
        return self._record(broadcast_id)

    def delivery(self, delivery_id: int) -> DeliveryRecord:
        return self._deliveries[delivery_id]

    def statuses_of(self, delivery_id: int) -> list[DeliveryStatus]:
        """Return the statuses a delivery went through, in order, starting with `pending`."""
        return [status for changed_id, status in self.transitions if changed_id == delivery_id]

    def _change(self, delivery_id: int, status: DeliveryStatus) -> DeliveryRecord:
        delivery = self._deliveries[delivery_id]
        if delivery.status not in _ALLOWED_TRANSITIONS[status]:
            raise ValueError(f"delivery {delivery_id} cannot go from {delivery.status} to {status}")
        self.transitions.append((delivery_id, status))
        changed = dataclasses.replace(delivery, status=status)
        self._deliveries[delivery_id] = changed
        return changed

    def _record(self, broadcast_id: int) -> BroadcastRecord:
        deliveries = tuple(self._deliveries[delivery_id] for delivery_id in self._delivery_ids[broadcast_id])
        return dataclasses.replace(self._broadcasts[broadcast_id], deliveries=deliveries)


class ManualClock:
    """A monotonic clock that moves only when a test sleeps on it or advances it.

    Share one instance between `SlackState(clock=...)` and `BroadcastSender(clock=..., sleep=...)`
    so that rate limits and pacing run without real waiting.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        # Yield like a real sleep, so other tasks run in between.
        await asyncio.sleep(0)


def slack_channel(channel_id: str, name: str, **flags: Any) -> dict[str, Any]:
    """Return a loopback Slack channel dict for a public channel with the bot in it, changed by `flags`."""
    channel: dict[str, Any] = {
        "id": channel_id,
        "name": name,
        "is_private": False,
        "is_archived": False,
        "is_member": True,
        "is_ext_shared": False,
        "restricted": False,
    }
    channel.update(flags)
    return channel
