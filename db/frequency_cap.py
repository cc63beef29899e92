"""The workspace's frequency cap: which channels received a broadcast too recently to get another.

A channel counts as recently reached when one of the workspace's deliveries to it is `sent` and was
last updated within the cap's window, which for a sent delivery is the time it was posted. Only
sent deliveries count, so a failed or skipped one never blocks the next broadcast.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Broadcast, Delivery, WorkspaceSettingsRow
from segments.ports import DeliveryStatus

# SQLite allows at most 999 bound parameters in older builds, so channel ids go in batches.
_BATCH_SIZE = 500


def frequency_cap_reason(*, last_sent: datetime, cap_days: int, timezone: str) -> str:
    """Return the skip reason shown in reports, with the date in the workspace's time zone."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    day = last_sent.astimezone(zone).date().isoformat()
    noun = "day" if cap_days == 1 else "days"
    return (
        f"Received a broadcast on {day}; the workspace's frequency cap is {cap_days} {noun}."
    )


async def capped_channels(
    session: AsyncSession,
    *,
    team_id: str,
    channel_ids: Collection[str],
    now: datetime,
) -> Mapping[str, str]:
    """Return each channel in `channel_ids` that the cap skips, with its skip reason.

    Empty when the workspace has no cap. Runs in the caller's session, so the check and the
    deliveries it decides are written in one transaction.
    """
    settings = await session.get(WorkspaceSettingsRow, team_id)
    if settings is None or not settings.frequency_cap_days or not channel_ids:
        return {}
    cap_days = settings.frequency_cap_days
    since = now - timedelta(days=cap_days)
    ids = sorted(channel_ids)
    last_sent: dict[str, datetime] = {}
    for start in range(0, len(ids), _BATCH_SIZE):
        batch = ids[start : start + _BATCH_SIZE]
        statement = (
            select(Delivery.channel_id, func.max(Delivery.updated_at))
            .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
            .where(
                Broadcast.team_id == team_id,
                Delivery.status == DeliveryStatus.SENT,
                Delivery.channel_id.in_(batch),
                Delivery.updated_at >= since,
            )
            .group_by(Delivery.channel_id)
        )
        for channel_id, sent_at in (await session.execute(statement)).all():
            last_sent[channel_id] = _as_utc(sent_at, reference=now)
    return {
        channel_id: frequency_cap_reason(
            last_sent=sent_at, cap_days=cap_days, timezone=settings.timezone
        )
        for channel_id, sent_at in last_sent.items()
    }


def _as_utc(value: datetime, *, reference: datetime) -> datetime:
    # An aggregate skips the column's type on SQLite, so the stored UTC value comes back naive.
    if value.tzinfo is None:
        return value.replace(tzinfo=reference.tzinfo)
    return value
