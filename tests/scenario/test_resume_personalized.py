"""A personalized broadcast left unfinished by a crash renders each channel's values on resume."""

from __future__ import annotations

from bot.server import resume_unfinished_broadcasts
from loopback.stack import Stack
from segments.ports import DeliveryTarget, NewBroadcast, QualifyingCompany
from tests.scenario.helpers import eventually


async def test_resumed_personalized_broadcast_renders_each_company(world: Stack) -> None:
    reachable = [
        channel
        for channel in world.sample.channels
        if channel["is_member"] and not channel["is_private"] and not channel["is_archived"]
        and not channel["restricted"]
    ][:3]
    targets = [
        DeliveryTarget(
            channel_id=channel["id"],
            channel_name=channel["name"],
            is_private=False,
            companies=[
                QualifyingCompany(
                    company_id=f"company-{index}",
                    company_name=f"Company {index} <!channel>",
                    variables={"company.name": f"Company {index} <!channel>"},
                )
            ],
        )
        for index, channel in enumerate(reachable)
    ]
    await world.services.deliveries.create_broadcast(
        NewBroadcast(
            team_id="T0SEGMENT",
            segment_id=None,
            segment_name="Resumed",
            rules_text="ARR greater than 0",
            message_text="Hello {{company.name}}",
            message_blocks=None,
            sent_by="U0ADMIN",
            targets=targets,
        )
    )

    resumed = await resume_unfinished_broadcasts(world.services)
    await eventually(lambda: all(world.slack.posts_in(channel["id"]) for channel in reachable), timeout=10)

    assert resumed == 1
    for index, channel in enumerate(reachable):
        posts = world.slack.posts_in(channel["id"])
        assert len(posts) == 1
        assert posts[0]["text"] == f"Hello Company {index} &lt;!channel&gt;"
