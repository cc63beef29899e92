"""BroadcastRun and LiveMessage against the loopback Slack server and an in-memory delivery log."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from loopback.slack_server import SlackState
from planhat.errors import PlanhatServerError
from planhat.models import Company, CompanySnapshot, CustomFieldDefinition
from segments.audience import AudienceResolver
from segments.broadcasts import (
    AudienceChange,
    BroadcastRequest,
    BroadcastRun,
    LiveMessage,
    ProgressCounts,
    progress_text,
)
from segments.channels import ChannelMapping
from segments.errors import UserFacingError
from segments.ports import BroadcastStatus, DeliveryRecord, DeliveryStatus, SegmentRecord
from segments.properties import PropertyCatalog
from segments.rules import rules_to_json
from segments.text import parse_rules
from tests.fakes import InMemoryDeliveryLog, SlackStarter, slack_channel
from tests.scenario.helpers import eventually

TOKEN = "xoxb-test"
SENDER = "U0SENDER"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
MAPPING = ChannelMapping(field=None, template="customer-{slug}")
MESSAGE_BLOCK = {
    "type": "rich_text",
    "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": "Office hours moved"}]}
    ],
}


@dataclass
class StaticCompanySource:
    """A CompanySource whose companies a test can change, recording each `fresh` flag."""

    companies: list[Company]
    fresh_flags: list[bool] = field(default_factory=list)
    error: Exception | None = None

    async def fetch_companies(
        self, *, fields: Sequence[str], fresh: bool = False
    ) -> CompanySnapshot:
        self.fresh_flags.append(fresh)
        if self.error is not None:
            raise self.error
        return CompanySnapshot(companies=tuple(self.companies), fetched_at=NOW, calls=1)

    async def fetch_custom_fields(self) -> Sequence[CustomFieldDefinition]:
        return ()


@dataclass
class StaticSegments:
    segments: dict[int, SegmentRecord]

    async def get(self, segment_id: int) -> SegmentRecord | None:
        return self.segments.get(segment_id)


def _company(company_id: str, name: str, health: float) -> Company:
    return Company(id=company_id, name=name, fields={"h": health})


def _segment(rules_text: str, *, segment_id: int = 1, name: str = "At risk") -> SegmentRecord:
    rules = rules_to_json(parse_rules(rules_text, PropertyCatalog.builtin()))
    return SegmentRecord(
        id=segment_id,
        team_id="T0SEGMENT",
        name=name,
        rules=rules,
        created_by=SENDER,
        created_at=NOW,
        updated_by=SENDER,
        updated_at=NOW,
    )


def _workspace() -> SlackState:
    return SlackState(
        bot_token=TOKEN,
        channels=[
            slack_channel("C0ACME", "customer-acme"),
            slack_channel("C0BETA", "customer-beta"),
            slack_channel("C0GAMMA", "customer-gamma", is_archived=True),
            slack_channel("C0DELTA", "customer-delta", restricted=True),
            slack_channel("C0EPSILON", "customer-epsilon"),
        ],
    )


def _companies() -> list[Company]:
    return [
        _company("co-acme", "Acme", 2),
        _company("co-beta", "Beta", 3),
        _company("co-gamma", "Gamma", 1),
        _company("co-delta", "Delta", 2),
        _company("co-epsilon", "Epsilon", 9),
    ]


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


@dataclass
class Setup:
    state: SlackState
    client: AsyncWebClient
    source: StaticCompanySource
    segments: StaticSegments
    log: InMemoryDeliveryLog
    dm: LiveMessage
    run: BroadcastRun


@pytest.fixture
async def setup(start_slack: SlackStarter, delivery_log: InMemoryDeliveryLog) -> Setup:
    state = _workspace()
    client = await start_slack(state)
    source = StaticCompanySource(companies=_companies())
    segments = StaticSegments({1: _segment("Health Score less than 4")})
    resolver = AudienceResolver(source=source, slack=client, mapping=MAPPING)
    dm = LiveMessage(client=client, user_id=SENDER, sleep=_no_wait)
    run = BroadcastRun(resolver=resolver, segments=segments, log=delivery_log, poster=client, dm=dm)
    return Setup(
        state=state,
        client=client,
        source=source,
        segments=segments,
        log=delivery_log,
        dm=dm,
        run=run,
    )


def _request(
    confirmed: Sequence[str] = ("C0ACME", "C0BETA", "C0DELTA"), segment_id: int = 1
) -> BroadcastRequest:
    return BroadcastRequest(
        team_id="T0SEGMENT",
        user_id=SENDER,
        segment_id=segment_id,
        message_text="Office hours moved",
        message_blocks=[MESSAGE_BLOCK],
        confirmed_channel_ids=frozenset(confirmed),
    )


async def test_run_posts_once_to_each_reachable_channel(setup: Setup) -> None:
    record = await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    assert len(setup.state.posts_in("C0ACME")) == 1
    assert len(setup.state.posts_in("C0BETA")) == 1
    assert setup.state.posts_in("C0DELTA") == []
    assert setup.state.posts_in("C0GAMMA") == []
    assert setup.state.posts_in("C0EPSILON") == []
    statuses = {delivery.channel_id: delivery.status for delivery in record.deliveries}
    assert statuses == {"C0ACME": "sent", "C0BETA": "sent", "C0DELTA": "failed"}


async def test_run_posts_blocks_with_text_fallback(setup: Setup) -> None:
    await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    post = setup.state.posts_in("C0ACME")[0]
    assert post["blocks"] == [MESSAGE_BLOCK]
    assert post["text"] == "Office hours moved"


async def test_run_resolves_membership_fresh(setup: Setup) -> None:
    await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    assert setup.source.fresh_flags == [True]


async def test_run_records_unmapped_companies(setup: Setup) -> None:
    await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    created = setup.log.created[0]
    assert [row["company_id"] for row in created.unmapped] == ["co-gamma"]
    assert created.sent_by == SENDER
    assert created.segment_name == "At risk"


async def test_run_dm_ends_with_delivery_report(setup: Setup) -> None:
    await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    messages = setup.state.dm_messages(SENDER)
    assert len(messages) == 1
    text = messages[0]["text"]
    assert "delivered to 2 of 3 channels" in text
    assert "Posting is restricted (1): #customer-delta" in text
    assert "1 matching company had no channel" in text
    assert "joined" not in text


async def test_run_dm_is_edited_while_sending(setup: Setup) -> None:
    await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    updates = setup.state.calls_to("chat.update")
    texts = [str(call.params["text"]) for call in updates]
    assert any(text.startswith("Sending *At risk* to 3 channels") for text in texts)
    assert "delivered to 2 of 3 channels" in texts[-1]


async def test_run_notes_audience_change_since_confirmation(setup: Setup) -> None:
    request = _request(confirmed=("C0ACME", "C0OLD"))

    await setup.run.run(request, mapping=MAPPING, timezone="UTC")

    text = setup.state.dm_messages(SENDER)[0]["text"]
    assert "2 channels joined and 1 channel left the segment" in text


async def test_run_of_deleted_segment_posts_nothing(setup: Setup) -> None:
    with pytest.raises(UserFacingError, match="deleted"):
        await setup.run.run(_request(segment_id=99), mapping=MAPPING, timezone="UTC")

    assert setup.state.calls_to("chat.postMessage") == []
    assert setup.log.created == []


async def test_run_without_channels_posts_nothing(setup: Setup) -> None:
    setup.segments.segments[2] = _segment("Health Score greater than 9", segment_id=2)

    with pytest.raises(UserFacingError, match="Nobody to send to"):
        await setup.run.run(_request(segment_id=2), mapping=MAPPING, timezone="UTC")

    stored = await setup.log.get_broadcast(1)
    assert stored is not None
    assert stored.status == BroadcastStatus.FAILED
    assert stored.deliveries == ()
    assert setup.run.sending_started is False


async def test_run_raises_planhat_failure_before_posting(setup: Setup) -> None:
    setup.source.error = PlanhatServerError(
        "HTTP 503",
        status_code=503,
        url="http://planhat.test/companies",
        user_message="Planhat is down.",
    )

    with pytest.raises(PlanhatServerError):
        await setup.run.run(_request(), mapping=MAPPING, timezone="UTC")

    stored = await setup.log.get_broadcast(1)
    assert stored is not None
    assert stored.status == BroadcastStatus.FAILED
    assert stored.deliveries == ()
    assert setup.run.sending_started is False
    assert setup.state.posts_in("C0ACME") == []


class GatedSleep:
    """A sleep that returns only when the test releases it, recording the requested seconds."""

    def __init__(self) -> None:
        self.requested: list[float] = []
        self._gates: list[asyncio.Event] = []

    async def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        gate = asyncio.Event()
        self._gates.append(gate)
        await gate.wait()

    def release(self) -> None:
        self._gates[-1].set()


def _update_texts(state: SlackState) -> list[str]:
    return [str(call.params["text"]) for call in state.calls_to("chat.update")]


async def test_live_message_edits_at_most_once_per_interval(start_slack: SlackStarter) -> None:
    state = _workspace()
    client = await start_slack(state)
    sleep = GatedSleep()
    dm = LiveMessage(client=client, user_id=SENDER, interval_seconds=2.0, sleep=sleep)
    progress = {"done": 0}
    await dm.show("start")
    dm.follow(lambda: f"done {progress['done']}")

    for done in range(1, 6):
        progress["done"] = done
        dm.request_update()
    await eventually(lambda: len(sleep.requested) == 1)
    edits_in_first_interval = _update_texts(state)
    sleep.release()
    await eventually(lambda: len(_update_texts(state)) == 1)
    for done in range(6, 9):
        progress["done"] = done
        dm.request_update()
    await eventually(lambda: len(sleep.requested) == 2)
    edits_in_second_interval = _update_texts(state)
    await dm.stop_following()
    await dm.show("final")

    assert edits_in_first_interval == []
    assert edits_in_second_interval == ["done 5"]
    assert _update_texts(state) == ["done 5", "final"]
    assert sleep.requested == [2.0, 2.0]
    assert state.dm_messages(SENDER)[0]["text"] == "final"


async def test_live_message_without_changes_is_not_edited(start_slack: SlackStarter) -> None:
    state = _workspace()
    client = await start_slack(state)
    sleep = GatedSleep()
    dm = LiveMessage(client=client, user_id=SENDER, sleep=sleep)
    await dm.show("start")
    dm.follow(lambda: "changed")

    await eventually(lambda: len(sleep.requested) == 1)
    sleep.release()
    await asyncio.sleep(0.05)
    await dm.stop_following()

    assert _update_texts(state) == []


async def test_live_message_survives_failed_edit(start_slack: SlackStarter) -> None:
    state = _workspace()
    client = await start_slack(state)
    dm = LiveMessage(client=client, user_id=SENDER, sleep=_no_wait)
    await dm.show("start")
    state.fail_next["chat.update"] = [(200, "message_not_found")]

    failed = await dm.show("lost")
    succeeded = await dm.show("final")

    assert failed is False
    assert succeeded is True
    assert state.dm_messages(SENDER)[0]["text"] == "final"


async def test_live_message_posts_once_then_edits(start_slack: SlackStarter) -> None:
    state = _workspace()
    client = await start_slack(state)
    dm = LiveMessage(client=client, user_id=SENDER, sleep=_no_wait)

    await dm.show("one")
    await dm.show("two")

    assert len(state.calls_to("chat.postMessage")) == 1
    assert len(state.calls_to("chat.update")) == 1
    assert dm.posted is True


def _delivery(delivery_id: int, status: DeliveryStatus) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery_id,
        broadcast_id=1,
        channel_id=f"C{delivery_id}",
        channel_name=f"c{delivery_id}",
        status=status,
        attempts=1,
        ts=None,
        error=None,
        reason=None,
    )


def test_progress_counts_keep_latest_status_per_delivery() -> None:
    counts = ProgressCounts(total=4)

    counts.record(_delivery(1, DeliveryStatus.SENDING))
    counts.record(_delivery(1, DeliveryStatus.SENT))
    counts.record(_delivery(2, DeliveryStatus.FAILED))
    counts.record(_delivery(3, DeliveryStatus.SENDING))

    assert (counts.delivered, counts.failed, counts.pending) == (1, 1, 2)


def test_progress_text_escapes_segment_name() -> None:
    text = progress_text("<!channel> segment", ProgressCounts(total=2))

    assert "&lt;!channel&gt; segment" in text
    assert "Delivered 0 · Failed 0 · Pending 2" in text


@pytest.mark.parametrize(
    ("confirmed", "current", "expected"),
    [
        ({"A", "B"}, {"A", "B"}, (0, 0)),
        ({"A"}, {"A", "B", "C"}, (2, 0)),
        ({"A", "B"}, {"B"}, (0, 1)),
        (set(), {"A"}, (1, 0)),
    ],
)
def test_audience_change_counts_added_and_dropped(
    confirmed: set[str], current: set[str], expected: tuple[int, int]
) -> None:
    change = AudienceChange.between(confirmed, current)

    assert (change.added, change.dropped) == expected


def test_audience_change_without_difference_has_no_note() -> None:
    assert AudienceChange(added=0, dropped=0).describe() is None


def test_audience_change_note_counts_channels() -> None:
    note = AudienceChange(added=1, dropped=3).describe()

    assert note is not None
    assert "1 channel joined and 3 channels left" in note
