"""Continue broadcasts that a stopped or crashed process left unfinished, and resend failed ones.

On start, `segment-bot serve` calls `resume_broadcast` for every broadcast left `resolving` or
`sending`. A broadcast left `resolving` has no deliveries yet, so its stored rules are resolved
again from live data. A broadcast left `sending` continues with its `pending` deliveries, and its
`sending` ones are checked in the channel's history before any repost (see
`segments.sending.BroadcastSender`). The report DM of the first run is edited, not posted again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from slack_sdk.web.async_client import AsyncWebClient

from db.records import StoredBroadcast
from segments.audience import AudienceResolver
from segments.broadcasts import (
    BroadcastLog,
    LiveMessage,
    checking_text,
    deliver_with_report,
    no_channel_error,
)
from segments.channels import ChannelMapping
from segments.errors import UserFacingError
from segments.ports import BroadcastRecord, BroadcastStatus
from segments.personalize import MessageRenderer, Template
from segments.rules import rules_from_json
from segments.sending import Renderer

logger = logging.getLogger(__name__)

# Builds the per-channel renderer of a stored broadcast (personalized messages), or returns None
# to post the stored text and blocks as they are.
RendererFactory = Callable[[StoredBroadcast], Awaitable[Renderer | None]]


class StoredBroadcastLog(BroadcastLog, Protocol):
    async def get_stored_broadcast(self, broadcast_id: int) -> StoredBroadcast | None:
        """Return the broadcast with its message, rules and report DM."""
        ...

    async def list_unfinished(self) -> Sequence[StoredBroadcast]:
        """Return every broadcast left `resolving` or `sending`."""
        ...


async def resume_broadcast(
    stored: StoredBroadcast,
    *,
    log: StoredBroadcastLog,
    resolver: AudienceResolver,
    poster: AsyncWebClient,
    reader: AsyncWebClient,
    mapping: ChannelMapping,
    timezone: str,
    renderer_for: RendererFactory | None = None,
) -> BroadcastRecord:
    """Finish one stored broadcast that is `resolving` or `sending`, and report by DM.

    Raises the resolver's errors, and UserFacingError when a `resolving` broadcast has no stored
    rules or no channel any more; in both cases the broadcast is stored as `failed` first.
    """
    record = stored.record
    dm = LiveMessage(
        client=reader, user_id=stored.sent_by, channel=stored.report_channel, ts=stored.report_ts
    )
    logger.info(
        "Resuming broadcast %d (%s, team %s): %d deliveries",
        record.id,
        record.status,
        record.team_id,
        len(record.deliveries),
    )
    # The stored message is the template, so a personalized broadcast renders the same text after
    # a restart as it would have before.
    renderer = MessageRenderer(
        message_text=stored.message_text,
        message_blocks=stored.message_blocks,
        catalog=await resolver.catalog(),
    )
    if record.status == BroadcastStatus.RESOLVING:
        record = await _resolve_again(
            stored,
            log=log,
            resolver=resolver,
            dm=dm,
            mapping=mapping,
            timezone=timezone,
            template=renderer.template if renderer.is_personalized else None,
        )
    if renderer_for is not None:
        render = await renderer_for(stored)
    else:
        render = renderer.render_delivery if renderer.is_personalized else None
    return await deliver_with_report(
        record,
        message_text=stored.message_text,
        message_blocks=stored.message_blocks,
        segment_name=record.segment_name,
        log=log,
        poster=poster,
        dm=dm,
        render=render,
        unmapped=len({row.get("company_id") for row in stored.unmapped}),
    )


async def _resolve_again(
    stored: StoredBroadcast,
    *,
    log: StoredBroadcastLog,
    resolver: AudienceResolver,
    dm: LiveMessage,
    mapping: ChannelMapping,
    timezone: str,
    template: Template | None,
) -> BroadcastRecord:
    broadcast_id = stored.record.id
    if stored.rules is None:
        await log.fail_resolving(broadcast_id)
        raise UserFacingError(
            "segment-bot restarted while checking who is in the segment, and this broadcast has "
            "no saved rules to check again, so nothing was posted. Send it again."
        )
    await dm.show(checking_text(stored.record.segment_name))
    try:
        audience = await resolver.resolve(
            rules_from_json(stored.rules), fresh=True, mapping=mapping, timezone=timezone, template=template
        )
    except BaseException:
        await log.fail_resolving(broadcast_id)
        raise
    if not audience.targets:
        await log.fail_resolving(broadcast_id)
        raise no_channel_error(stored.record.segment_name)
    return await log.add_audience(
        broadcast_id,
        rules_text=audience.rules_text,
        targets=audience.targets,
        unmapped=[
            {"company_id": row.company_id, "company_name": row.company_name, "reason": row.reason}
            for row in audience.unmapped
        ],
    )
