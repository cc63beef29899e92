"""Block Kit for scheduled broadcasts: the send-later fields, their checks, and the App Home section."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from db.records import WorkspaceSettings
from db.scheduled import ScheduledBroadcast
from handlers.views import send as views
from handlers.views.home import (
    HOME_SCHEDULED,
    MAX_VIEW_BLOCKS,
    SCHEDULED_CANCEL_ACTION,
    SCHEDULED_CANCEL_VIEW,
    SCHEDULED_EDIT_ACTION,
    SCHEDULED_EDIT_VIEW,
    ScheduledEditForm,
    home_view,
    read_scheduled_edit_form,
    scheduled_blocks,
    scheduled_broadcast_id,
    scheduled_cancel_modal,
    scheduled_edit_errors,
    scheduled_edit_modal,
)
from segments.audience import Audience, MatchedCompany
from segments.ports import (
    BroadcastRecord,
    BroadcastStatus,
    DeliveryRecord,
    DeliveryStatus,
    DeliveryTarget,
    QualifyingCompany,
    SegmentRecord,
)
from segments.rules import Condition, Operator

# 09:00 UTC is 10:00 in Berlin in December.
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
SETTINGS = WorkspaceSettings(
    team_id="T0SEGMENT",
    channel_field="custom.Slack Channel",
    channel_template="customer-{slug}",
    timezone="Europe/Berlin",
    managers=(),
)
MESSAGE = {
    "type": "rich_text",
    "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "Hi"}]}],
}


def _segment(segment_id: int, name: str = "At risk") -> SegmentRecord:
    return SegmentRecord(
        id=segment_id,
        team_id="T0SEGMENT",
        name=name,
        rules={},
        created_by="U0ADMIN",
        created_at=NOW,
        updated_by="U0ADMIN",
        updated_at=NOW,
    )


def _scheduled(
    broadcast_id: int,
    *,
    text: str = "Office hours moved",
    timezone: str = "Europe/Berlin",
    blocks: list[dict[str, Any]] | None = None,
) -> ScheduledBroadcast:
    return ScheduledBroadcast(
        id=broadcast_id,
        team_id="T0SEGMENT",
        segment_id=1,
        segment_name="At risk",
        message_text=text,
        message_blocks=blocks,
        sent_by="U0ADMIN",
        scheduled_at=datetime(2026, 12, 7, 8, 30, tzinfo=UTC),
        timezone=timezone,
        confirmed_channel_ids=frozenset({"C1"}),
        created_at=NOW,
    )


def _broadcast(broadcast_id: int) -> BroadcastRecord:
    deliveries = tuple(
        DeliveryRecord(
            id=index,
            broadcast_id=broadcast_id,
            channel_id=f"C{index:08d}",
            channel_name=f"customer-{index}",
            status=DeliveryStatus.SENT,
            attempts=1,
            ts=f"1700000000.{index:06d}",
            error=None,
            reason=None,
        )
        for index in range(3)
    )
    return BroadcastRecord(
        id=broadcast_id,
        team_id="T0SEGMENT",
        segment_name="b" * 200,
        status=BroadcastStatus.SENT,
        created_at=NOW,
        deliveries=deliveries,
    )


def _audience(channel_count: int) -> Audience:
    matched = [
        MatchedCompany(
            company_id=f"co{index}",
            company_name=f"Company {index}",
            channel_id=f"C{index:09d}",
            channel_name=f"customer-{index}",
            reasons={},
        )
        for index in range(channel_count)
    ]
    targets = [
        DeliveryTarget(
            channel_id=row.channel_id,
            channel_name=row.channel_name,
            is_private=False,
            companies=[QualifyingCompany(company_id=row.company_id, company_name=row.company_name)],
        )
        for row in matched
    ]
    return Audience(
        rules=Condition("health", Operator.LESS_THAN, (4,)),
        rules_text="Health Score less than 4",
        matched=matched,
        unmapped=[],
        targets=targets,
        warnings=[],
        company_count=400,
        fetched_at=NOW,
        planhat_calls=1,
    )


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(block for block in view["blocks"] if block.get("block_id") == block_id)


def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


def _schedule_values(day: str | None, time_of_day: str | None, zone: str | None) -> dict[str, Any]:
    return {
        views.WHEN_BLOCK: {views.WHEN_ACTION: {"selected_option": {"value": views.SEND_LATER}}},
        views.DATE_BLOCK: {views.DATE_ACTION: {"selected_date": day}},
        views.TIME_BLOCK: {views.TIME_ACTION: {"selected_time": time_of_day}},
        views.ZONE_BLOCK: {
            views.ZONE_ACTION: {"selected_option": None if zone is None else {"value": zone}}
        },
    }


def _fields(day: str, time_of_day: str, zone: str = "Europe/Berlin") -> views.ScheduleFields:
    return views.ScheduleFields(day=day, time_of_day=time_of_day, timezone=zone)


# Send modal


def test_send_modal_defaults_to_send_now() -> None:
    view = views.send_modal(segments=[_segment(1)], timezone="Europe/Berlin", now=NOW)

    when = _block(view, views.WHEN_BLOCK)["element"]
    assert when["type"] == "radio_buttons"
    assert when["initial_option"]["value"] == views.SEND_NOW
    assert [option["value"] for option in when["options"]] == [views.SEND_NOW, views.SEND_LATER]


def test_send_modal_defaults_to_next_hour() -> None:
    view = views.send_modal(segments=[_segment(1)], timezone="Europe/Berlin", now=NOW)

    assert _block(view, views.DATE_BLOCK)["element"]["initial_date"] == "2026-12-04"
    assert _block(view, views.TIME_BLOCK)["element"]["initial_time"] == "11:00"
    zone = _block(view, views.ZONE_BLOCK)["element"]
    assert zone["type"] == "static_select"
    assert zone["initial_option"]["value"] == "Europe/Berlin"


def test_send_later_inputs_are_optional_for_send_now() -> None:
    view = views.send_modal(segments=[_segment(1)], timezone="UTC", now=NOW)

    for block_id in (views.DATE_BLOCK, views.TIME_BLOCK, views.ZONE_BLOCK):
        assert _block(view, block_id)["optional"] is True
    assert _block(view, views.DATE_BLOCK)["element"]["type"] == "datepicker"
    assert _block(view, views.TIME_BLOCK)["element"]["type"] == "timepicker"


def test_send_modal_keeps_chosen_schedule() -> None:
    chosen = _fields("2026-12-24", "16:45", "Asia/Tokyo")

    view = views.send_modal(segments=[_segment(1)], timezone="UTC", now=NOW, schedule=chosen)

    assert _block(view, views.WHEN_BLOCK)["element"]["initial_option"]["value"] == views.SEND_LATER
    assert _block(view, views.DATE_BLOCK)["element"]["initial_date"] == "2026-12-24"
    assert _block(view, views.TIME_BLOCK)["element"]["initial_time"] == "16:45"
    assert _block(view, views.ZONE_BLOCK)["element"]["initial_option"]["value"] == "Asia/Tokyo"


def test_send_modal_stays_within_block_limit() -> None:
    view = views.send_modal(
        segments=[_segment(1)], notice="n", message_notice="m", timezone="UTC", now=NOW
    )

    assert len(view["blocks"]) <= views.MAX_VIEW_BLOCKS
    block_ids = [block["block_id"] for block in view["blocks"] if "block_id" in block]
    assert len(block_ids) == len(set(block_ids))


def test_timezone_options_put_workspace_zone_first() -> None:
    options = views.timezone_options("America/Regina", "Europe/Berlin")

    values = [option["value"] for option in options]
    assert values[0] == "America/Regina"
    assert values[1] == "Europe/Berlin"
    assert values.count("Europe/Berlin") == 1
    assert "UTC" in values


def test_timezone_options_cap_at_100() -> None:
    many = [f"Etc/GMT+{hours}" for hours in range(1, 13)] * 10

    options = views.timezone_options(*many, *[f"Zone/{index}" for index in range(120)])

    assert len(options) == views.MAX_STATIC_OPTIONS


def test_every_common_timezone_is_known() -> None:
    for name in views.COMMON_TIMEZONES:
        assert ZoneInfo(name) is not None, name
    assert len(views.COMMON_TIMEZONES) < views.MAX_STATIC_OPTIONS - 2


# Reading and checking the send-later fields


def test_read_send_form_reads_send_later_fields() -> None:
    values = _schedule_values("2026-12-07", "09:30", "Europe/Berlin")

    form = views.read_send_form(values)

    assert form.schedule == _fields("2026-12-07", "09:30")


def test_read_send_form_send_now_has_no_schedule() -> None:
    values = _schedule_values("2026-12-07", "09:30", "Europe/Berlin")
    values[views.WHEN_BLOCK][views.WHEN_ACTION]["selected_option"] = {"value": views.SEND_NOW}

    form = views.read_send_form(values)

    assert form.schedule is None


def test_schedule_errors_accept_future_time() -> None:
    errors = views.schedule_errors(_fields("2026-12-04", "10:01"), now=NOW)

    assert errors == {}


def test_schedule_errors_require_date_and_time() -> None:
    errors = views.schedule_errors(_fields("", ""), now=NOW)

    assert set(errors) == {views.DATE_BLOCK, views.TIME_BLOCK}
    assert "date" in errors[views.DATE_BLOCK]
    assert "time" in errors[views.TIME_BLOCK]


def test_schedule_errors_reject_unknown_zone() -> None:
    errors = views.schedule_errors(_fields("2026-12-07", "09:30", "Mars/Olympus_Mons"), now=NOW)

    assert set(errors) == {views.ZONE_BLOCK}
    assert "Mars/Olympus_Mons" in errors[views.ZONE_BLOCK]


def test_schedule_errors_require_zone() -> None:
    errors = views.schedule_errors(_fields("2026-12-07", "09:30", ""), now=NOW)

    assert set(errors) == {views.ZONE_BLOCK}


def test_schedule_errors_reject_earlier_hour_today() -> None:
    # 10:00 in Berlin is exactly now, which is not in the future.
    errors = views.schedule_errors(_fields("2026-12-04", "10:00"), now=NOW)

    assert set(errors) == {views.TIME_BLOCK}
    assert "already passed" in errors[views.TIME_BLOCK]


def test_schedule_errors_reject_past_day_on_date() -> None:
    errors = views.schedule_errors(_fields("2026-12-03", "23:00"), now=NOW)

    assert set(errors) == {views.DATE_BLOCK}
    assert "already passed" in errors[views.DATE_BLOCK]


def test_schedule_errors_read_time_in_chosen_zone() -> None:
    # 09:30 on 4 December is past in Berlin (10:00 now) but still ahead in New York (04:00 now).
    berlin = views.schedule_errors(_fields("2026-12-04", "09:30", "Europe/Berlin"), now=NOW)
    new_york = views.schedule_errors(_fields("2026-12-04", "09:30", "America/New_York"), now=NOW)

    assert views.TIME_BLOCK in berlin
    assert new_york == {}


def test_schedule_errors_reject_malformed_values() -> None:
    errors = views.schedule_errors(_fields("04.12.2026", "9h30"), now=NOW)

    assert set(errors) == {views.DATE_BLOCK, views.TIME_BLOCK}


def test_send_form_errors_check_schedule_only_when_later() -> None:
    past = _fields("2026-12-01", "09:00")
    later = views.SendForm(1, MESSAGE, False, schedule=past)
    now = views.SendForm(1, MESSAGE, False)

    later_errors = views.send_form_errors(later, message_text="Hi", now=NOW)
    now_errors = views.send_form_errors(now, message_text="Hi", now=NOW)

    assert set(later_errors) == {views.DATE_BLOCK}
    assert now_errors == {}


def test_scheduled_instant_converts_to_utc() -> None:
    instant = views.scheduled_instant(_fields("2026-12-07", "09:30", "Europe/Berlin"))

    assert instant == datetime(2026, 12, 7, 8, 30, tzinfo=UTC)


# Confirmation of a scheduled send


def test_scheduled_confirmation_shows_time_and_estimate() -> None:
    view = views.confirmation_view(
        segment_name="At risk",
        audience=_audience(3),
        message=MESSAGE,
        test_note=None,
        metadata="k",
        send_at="Mon 7 Dec 2026, 09:30 (Europe/Berlin)",
    )

    text = _blocks_text(view["blocks"])
    assert "Scheduled for *Mon 7 Dec 2026, 09:30 (Europe/Berlin)*" in text
    assert "*3 channels*" in text
    assert "resolved again when it sends" in text
    assert "<#C000000002>" in text
    assert view["submit"]["text"] == views.SCHEDULE_SUBMIT
    assert len(view["submit"]["text"]) <= 24


def test_scheduled_confirmation_allows_no_channels() -> None:
    view = views.confirmation_view(
        segment_name="At risk",
        audience=_audience(0),
        message=MESSAGE,
        test_note=None,
        metadata="k",
        send_at="Mon 7 Dec 2026, 09:30 (Europe/Berlin)",
    )

    assert view["submit"]["text"] == views.SCHEDULE_SUBMIT
    assert "no company" in _blocks_text(view["blocks"])


def test_scheduled_confirmation_escapes_segment_name() -> None:
    view = views.confirmation_view(
        segment_name="<!channel> risk",
        audience=_audience(1),
        message=MESSAGE,
        test_note=None,
        metadata="k",
        send_at="Mon 7 Dec 2026, 09:30 (UTC)",
    )

    text = _blocks_text(view["blocks"])
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; risk" in text


def test_scheduled_confirmation_stays_within_block_limit() -> None:
    view = views.confirmation_view(
        segment_name="At risk",
        audience=_audience(5000),
        message=MESSAGE,
        test_note="note",
        metadata="k",
        preview_note="preview",
        send_at="Mon 7 Dec 2026, 09:30 (UTC)",
    )

    assert len(view["blocks"]) <= views.MAX_VIEW_BLOCKS


def test_scheduled_dm_text_names_segment_and_time() -> None:
    text = views.scheduled_dm_text(segment_name="A & B", send_at="Mon 7 Dec 2026, 09:30 (UTC)")

    assert "*A &amp; B*" in text
    assert "Mon 7 Dec 2026, 09:30 (UTC)" in text


# App Home "Scheduled" section


def test_home_scheduled_buttons_for_managers() -> None:
    blocks = scheduled_blocks([_scheduled(7)], can_manage=True, max_blocks=MAX_VIEW_BLOCKS)

    text = _blocks_text(blocks)
    assert blocks[1]["text"]["text"] == "Scheduled"
    assert "*At risk*, Mon 7 Dec 2026, 09:30 (Europe/Berlin), scheduled by <@U0ADMIN>" in text
    assert "Office hours moved" in text
    buttons = [element for block in blocks if block["type"] == "actions" for element in block["elements"]]
    assert [button["action_id"] for button in buttons] == [
        SCHEDULED_EDIT_ACTION,
        SCHEDULED_CANCEL_ACTION,
    ]
    assert {button["value"] for button in buttons} == {"7"}


def test_home_scheduled_has_no_buttons_for_members() -> None:
    blocks = scheduled_blocks([_scheduled(7)], can_manage=False, max_blocks=MAX_VIEW_BLOCKS)

    assert not [block for block in blocks if block["type"] == "actions"]
    assert "Office hours moved" in _blocks_text(blocks)


def test_home_scheduled_section_absent_when_none() -> None:
    blocks = scheduled_blocks([], can_manage=True, max_blocks=MAX_VIEW_BLOCKS)

    assert blocks == []


def test_home_scheduled_excerpt_is_escaped_and_clipped() -> None:
    item = _scheduled(7, text="<!channel> &lt;b&gt; " + "x" * 400)

    blocks = scheduled_blocks([item], can_manage=True, max_blocks=MAX_VIEW_BLOCKS)

    text = blocks[2]["text"]["text"]
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &lt;b&gt;" in text
    assert text.endswith("…")
    assert "x" * 200 not in text


def test_home_scheduled_caps_list_with_more_line() -> None:
    items = [_scheduled(index) for index in range(HOME_SCHEDULED + 4)]

    blocks = scheduled_blocks(items, can_manage=True, max_blocks=MAX_VIEW_BLOCKS)

    actions = [block for block in blocks if block["type"] == "actions"]
    assert len(actions) == HOME_SCHEDULED
    assert "and 4 more scheduled broadcasts" in _blocks_text(blocks)


def test_home_scheduled_shrinks_to_room_left() -> None:
    items = [_scheduled(index) for index in range(5)]

    blocks = scheduled_blocks(items, can_manage=True, max_blocks=8)

    assert len(blocks) <= 8
    assert "and 3 more scheduled broadcasts" in _blocks_text(blocks)


def test_full_home_stays_within_block_limit() -> None:
    segments = [_segment(index, f"Segment {index}") for index in range(200)]
    broadcasts = [_broadcast(index) for index in range(50)]
    scheduled = [_scheduled(index) for index in range(40)]

    view = home_view(
        segments=segments,
        broadcasts=broadcasts,
        can_manage=True,
        settings=SETTINGS,
        scheduled=scheduled,
    )

    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert SCHEDULED_EDIT_ACTION in _blocks_text(view["blocks"])
    assert "more scheduled broadcasts" in _blocks_text(view["blocks"])
    block_ids = [block["block_id"] for block in view["blocks"] if "block_id" in block]
    assert len(block_ids) == len(set(block_ids))


def test_home_places_scheduled_before_latest_broadcasts() -> None:
    view = home_view(
        segments=[_segment(1)],
        broadcasts=[_broadcast(1)],
        can_manage=True,
        settings=None,
        scheduled=[_scheduled(7)],
    )

    headers = [block["text"]["text"] for block in view["blocks"] if block["type"] == "header"]
    assert headers == ["Segments", "Scheduled", "Latest broadcasts"]


# Edit and cancel modals


def test_edit_modal_shows_stored_time_in_stored_zone() -> None:
    view = scheduled_edit_modal(_scheduled(7, timezone="Asia/Tokyo"), workspace_timezone="UTC")

    assert view["callback_id"] == SCHEDULED_EDIT_VIEW
    assert _block(view, views.DATE_BLOCK)["element"]["initial_date"] == "2026-12-07"
    assert _block(view, views.TIME_BLOCK)["element"]["initial_time"] == "17:30"
    assert _block(view, views.ZONE_BLOCK)["element"]["initial_option"]["value"] == "Asia/Tokyo"
    assert scheduled_broadcast_id(view["private_metadata"]) == 7


def test_edit_modal_prefills_stored_rich_text() -> None:
    view = scheduled_edit_modal(_scheduled(7, blocks=[MESSAGE]), workspace_timezone="UTC")

    assert _block(view, views.MESSAGE_BLOCK)["element"]["initial_value"] == MESSAGE


def test_edit_modal_converts_text_without_blocks() -> None:
    view = scheduled_edit_modal(_scheduled(7, text="*Bold* news"), workspace_timezone="UTC")

    initial = _block(view, views.MESSAGE_BLOCK)["element"]["initial_value"]
    assert initial["type"] == "rich_text"
    assert "Bold" in json.dumps(initial)


def test_edit_modal_fits_slack_limits() -> None:
    view = scheduled_edit_modal(_scheduled(7), workspace_timezone="UTC")

    for key in ("title", "submit", "close"):
        assert len(view[key]["text"]) <= 24, view[key]


def test_read_edit_form_and_errors() -> None:
    values = _schedule_values("2026-12-01", "", "Europe/Berlin")
    values[views.MESSAGE_BLOCK] = {views.MESSAGE_ACTION: {"rich_text_value": MESSAGE}}

    form = read_scheduled_edit_form(values)
    errors = scheduled_edit_errors(form, message_text="", now=NOW)

    assert form.message == MESSAGE
    assert set(errors) == {views.TIME_BLOCK, views.MESSAGE_BLOCK}


def test_edit_errors_empty_for_future_time_and_message() -> None:
    form = ScheduledEditForm(schedule=_fields("2026-12-07", "09:30"), message=MESSAGE)

    errors = scheduled_edit_errors(form, message_text="Hi", now=NOW)

    assert errors == {}


def test_edit_errors_reject_passed_time() -> None:
    form = ScheduledEditForm(schedule=_fields("2026-12-04", "09:59"), message=MESSAGE)

    errors = scheduled_edit_errors(form, message_text="Hi", now=NOW + timedelta(minutes=1))

    assert set(errors) == {views.TIME_BLOCK}


def test_cancel_modal_names_broadcast_and_keeps_id() -> None:
    view = scheduled_cancel_modal(_scheduled(7))

    assert view["callback_id"] == SCHEDULED_CANCEL_VIEW
    assert scheduled_broadcast_id(view["private_metadata"]) == 7
    assert "Mon 7 Dec 2026, 09:30 (Europe/Berlin)" in _blocks_text(view["blocks"])
    for key in ("title", "submit", "close"):
        assert len(view[key]["text"]) <= 24, view[key]


def test_scheduled_broadcast_id_rejects_other_metadata() -> None:
    assert scheduled_broadcast_id("") is None
    assert scheduled_broadcast_id("not json") is None
    assert scheduled_broadcast_id('{"broadcast_id": "7"}') is None
    assert scheduled_broadcast_id('{"broadcast_id": true}') is None


def test_schedule_errors_reject_skipped_daylight_saving_time() -> None:
    # Berlin moves its clocks from 02:00 to 03:00 on 28 March 2027, so 02:30 never happens.
    errors = views.schedule_errors(_fields("2027-03-28", "02:30", "Europe/Berlin"), now=NOW)

    assert set(errors) == {views.TIME_BLOCK}
    assert "02:30 does not exist on Sun 28 Mar 2027 in Europe/Berlin" in errors[views.TIME_BLOCK]


def test_schedule_errors_accept_repeated_autumn_hour() -> None:
    # 02:30 happens twice on 31 October 2027 in Berlin; either way it exists.
    errors = views.schedule_errors(_fields("2027-10-31", "02:30", "Europe/Berlin"), now=NOW)

    assert errors == {}
