"""Send-to-segment Block Kit builders, form reading, and rich text to mrkdwn conversion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.views import send as views
from segments.audience import Audience, MatchedCompany, UnmappedCompany
from segments.channels import UnmappedKind
from segments.ports import DeliveryTarget, QualifyingCompany, SegmentRecord
from segments.rules import Condition, Operator

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _segment(segment_id: int, name: str) -> SegmentRecord:
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


def _audience(
    channel_count: int,
    *,
    unmapped: Sequence[UnmappedCompany] = (),
    warnings: Sequence[str] = (),
) -> Audience:
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
        unmapped=list(unmapped),
        targets=targets,
        warnings=list(warnings),
        company_count=400,
        fetched_at=NOW,
        planhat_calls=1,
    )


def _blocks_text(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"])


def _element(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    block = next(block for block in view["blocks"] if block.get("block_id") == block_id)
    return block["element"]


MESSAGE = {
    "type": "rich_text",
    "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "Hi"}]}],
}


def test_send_modal_lists_segments_without_preselection() -> None:
    segments = [_segment(1, "At risk"), _segment(2, "Renewals")]

    view = views.send_modal(segments=segments)

    element = _element(view, views.SEGMENT_BLOCK)
    assert view["callback_id"] == views.SEND_CALLBACK
    assert element["type"] == "static_select"
    assert [option["value"] for option in element["options"]] == ["1", "2"]
    assert "initial_option" not in element
    assert "initial_value" not in _element(view, views.MESSAGE_BLOCK)
    assert _element(view, views.MESSAGE_BLOCK)["type"] == "rich_text_input"
    assert _element(view, views.TEST_BLOCK)["options"][0]["value"] == views.TEST_VALUE


def test_send_modal_preselects_given_segment() -> None:
    segments = [_segment(1, "At risk"), _segment(2, "Renewals")]

    view = views.send_modal(segments=segments, selected=segments[1])

    assert _element(view, views.SEGMENT_BLOCK)["initial_option"]["value"] == "2"


def test_send_modal_shows_notice_above_segment() -> None:
    view = views.send_modal(
        segments=[_segment(1, "At risk")], notice='No segment is named "Renewal".'
    )

    assert view["blocks"][0]["type"] == "context"
    assert "Renewal" in view["blocks"][0]["elements"][0]["text"]
    assert view["blocks"][1]["block_id"] == views.SEGMENT_BLOCK


def test_send_modal_prefills_message() -> None:
    view = views.send_modal(segments=[_segment(1, "At risk")], initial_message=MESSAGE)

    assert _element(view, views.MESSAGE_BLOCK)["initial_value"] == MESSAGE


def test_send_modal_over_100_segments_uses_external_select() -> None:
    segments = [_segment(index, f"Segment {index:03d}") for index in range(1, 102)]

    view = views.send_modal(segments=segments, selected=segments[5])

    element = _element(view, views.SEGMENT_BLOCK)
    assert element["type"] == "external_select"
    assert "options" not in element
    assert element["initial_option"]["value"] == "6"


def test_send_modal_with_100_segments_stays_static() -> None:
    segments = [_segment(index, f"Segment {index:03d}") for index in range(1, 101)]

    view = views.send_modal(segments=segments)

    assert _element(view, views.SEGMENT_BLOCK)["type"] == "static_select"


def test_send_modal_without_segments_has_no_submit() -> None:
    view = views.send_modal(segments=[])

    assert "submit" not in view
    assert "/segment new" in _blocks_text(view)


def test_segment_option_text_fits_75_characters() -> None:
    option = views.segment_option(_segment(1, "x" * 80))

    assert len(option["text"]["text"]) == views.MAX_OPTION_TEXT


def test_segment_options_ignore_case() -> None:
    segments = [_segment(1, "Renewals Q1"), _segment(2, "At risk")]

    options = views.segment_options(segments, "RENEW")

    assert [option["value"] for option in options] == ["1"]


def test_segment_options_cap_at_100() -> None:
    segments = [_segment(index, f"Renewal {index}") for index in range(150)]

    options = views.segment_options(segments, "")

    assert len(options) == views.MAX_STATIC_OPTIONS


def test_modal_titles_and_buttons_fit_24_characters() -> None:
    modal = views.send_modal(segments=[_segment(1, "At risk")])
    confirmation = views.confirmation_view(
        segment_name="At risk",
        audience=_audience(12345),
        message=MESSAGE,
        test_note=None,
        metadata="k",
    )

    for view in (modal, confirmation, views.checking_view("At risk"), views.message_view("x")):
        for key in ("title", "submit", "close"):
            if key in view:
                assert len(view[key]["text"]) <= 24, view[key]


def test_read_send_form_reads_values() -> None:
    values = {
        views.SEGMENT_BLOCK: {views.SEGMENT_ACTION: {"selected_option": {"value": "7"}}},
        views.MESSAGE_BLOCK: {views.MESSAGE_ACTION: {"rich_text_value": MESSAGE}},
        views.TEST_BLOCK: {views.TEST_ACTION: {"selected_options": [{"value": views.TEST_VALUE}]}},
    }

    form = views.read_send_form(values)

    assert form.segment_id == 7
    assert form.message == MESSAGE
    assert form.test_first is True


def test_read_send_form_without_values() -> None:
    form = views.read_send_form({})

    assert form.segment_id is None
    assert form.message is None
    assert form.test_first is False


def test_send_form_errors_missing_fields() -> None:
    errors = views.send_form_errors(views.SendForm(None, None, False), message_text="  \n ")

    assert set(errors) == {views.SEGMENT_BLOCK, views.MESSAGE_BLOCK}


def test_send_form_errors_for_message_over_40000_characters() -> None:
    form = views.SendForm(1, MESSAGE, False)

    too_long = views.send_form_errors(form, message_text="a" * 40_001)
    at_limit = views.send_form_errors(form, message_text="a" * 40_000)

    assert "40,001" in too_long[views.MESSAGE_BLOCK]
    assert at_limit == {}


def test_confirmation_lists_every_channel_as_mention() -> None:
    audience = _audience(3)

    view = views.confirmation_view(
        segment_name="At risk", audience=audience, message=MESSAGE, test_note=None, metadata="key"
    )

    text = _blocks_text(view)
    for target in audience.targets:
        assert f"<#{target.channel_id}>" in text
    assert "3 channels" in view["blocks"][0]["text"]["text"]
    assert view["submit"]["text"] == "Send to 3 channels"
    assert view["private_metadata"] == "key"
    assert view["callback_id"] == views.CONFIRM_CALLBACK


def test_confirmation_includes_message_preview() -> None:
    view = views.confirmation_view(
        segment_name="At risk", audience=_audience(1), message=MESSAGE, test_note=None, metadata="k"
    )

    assert view["blocks"][-1] == MESSAGE
    assert view["submit"]["text"] == "Send to 1 channel"


def test_confirmation_splits_many_channels_within_limits() -> None:
    audience = _audience(2000)

    view = views.confirmation_view(
        segment_name="Everyone", audience=audience, message=MESSAGE, test_note=None, metadata="k"
    )

    sections = [block for block in view["blocks"] if block["type"] == "section"]
    mentions = _blocks_text(view).count("<#C")
    assert len(view["blocks"]) <= views.MAX_VIEW_BLOCKS
    assert all(len(block["text"]["text"]) <= views.MAX_SECTION_TEXT for block in sections)
    assert mentions == 2000


def test_confirmation_caps_channel_sections_and_counts_the_rest() -> None:
    audience = _audience(30_000)

    view = views.confirmation_view(
        segment_name="Everyone", audience=audience, message=MESSAGE, test_note=None, metadata="k"
    )

    text = _blocks_text(view)
    shown = text.count("<#C")
    assert len(view["blocks"]) <= views.MAX_VIEW_BLOCKS
    assert f"and {30_000 - shown:,} more channels" in text


def test_confirmation_without_channels_has_no_submit() -> None:
    unmapped = [
        UnmappedCompany(
            company_id="co1",
            company_name="Acme",
            reason="No channel #customer-acme.",
            kind=UnmappedKind.NO_CHANNEL,
        )
    ]

    view = views.confirmation_view(
        segment_name="At risk",
        audience=_audience(0, unmapped=unmapped),
        message=MESSAGE,
        test_note=None,
        metadata="k",
    )

    assert "submit" not in view
    assert "Nobody to send to" in view["blocks"][0]["text"]["text"]
    assert "1 matching company has no channel" in _blocks_text(view)


def test_confirmation_groups_unmapped_by_reason_largest_first() -> None:
    archived = [
        UnmappedCompany(
            company_id=f"a{index}",
            company_name=f"A{index}",
            reason="archived",
            kind=UnmappedKind.ARCHIVED,
        )
        for index in range(3)
    ]
    missing = [
        UnmappedCompany(
            company_id="m", company_name="M", reason="missing", kind=UnmappedKind.NO_CHANNEL
        )
    ]

    view = views.confirmation_view(
        segment_name="S",
        audience=_audience(1, unmapped=[*missing, *archived]),
        message=MESSAGE,
        test_note=None,
        metadata="k",
    )

    unmapped_text = next(
        block["text"]["text"]
        for block in view["blocks"]
        if "no channel" in block.get("text", {}).get("text", "")
    )
    lines = unmapped_text.split("\n")
    assert lines[0].startswith("*4 matching companies have no channel*")
    assert lines[1].startswith("• 3,")
    assert lines[2].startswith("• 1,")


def test_confirmation_escapes_crm_text() -> None:
    unmapped = [
        UnmappedCompany(
            company_id="co1",
            company_name="<!channel> Alerts Inc",
            reason="#customer-alerts was not found.",
            kind=UnmappedKind.NO_CHANNEL,
        )
    ]
    warnings = ["3 companies have no <!here> Score in Planhat."]

    view = views.confirmation_view(
        segment_name="<!everyone> segment",
        audience=_audience(1, unmapped=unmapped, warnings=warnings),
        message=MESSAGE,
        test_note=None,
        metadata="k",
    )

    text = _blocks_text(view)
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert "<!everyone>" not in text
    assert "&lt;!channel&gt; Alerts Inc" in text


def test_confirmation_shows_test_note() -> None:
    view = views.confirmation_view(
        segment_name="S",
        audience=_audience(2),
        message=MESSAGE,
        test_note=views.TEST_SENT,
        metadata="k",
    )

    assert views.TEST_SENT in _blocks_text(view)


def test_test_dm_appends_note() -> None:
    text, blocks = views.build_test_dm(
        message=MESSAGE, message_text="Hi", segment_name="<!here>", channel_count=5
    )

    assert text == "Hi"
    assert blocks[0] == MESSAGE
    assert "5 channels" in blocks[1]["elements"][0]["text"]
    assert "&lt;!here&gt;" in blocks[1]["elements"][0]["text"]


def _rich(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text", "elements": list(elements)}


def _section(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_section", "elements": list(elements)}


def test_rich_text_to_mrkdwn_renders_styles_and_mentions() -> None:
    block = _rich(
        _section(
            {"type": "text", "text": "Hello "},
            {"type": "text", "text": "team", "style": {"bold": True}},
            {"type": "text", "text": ", see "},
            {"type": "link", "url": "https://example.com/a?b=1&c=2", "text": "the notes"},
            {"type": "text", "text": " from "},
            {"type": "user", "user_id": "U123"},
            {"type": "text", "text": " in "},
            {"type": "channel", "channel_id": "C123"},
            {"type": "text", "text": " "},
            {"type": "emoji", "name": "wave"},
        )
    )

    text = views.rich_text_to_mrkdwn(block)

    assert (
        text
        == "Hello *team*, see <https://example.com/a?b=1&amp;c=2|the notes> from <@U123> in <#C123> :wave:"
    )


def test_rich_text_to_mrkdwn_escapes_typed_markup() -> None:
    block = _rich(_section({"type": "text", "text": "<!channel> & <@U1>"}))

    assert views.rich_text_to_mrkdwn(block) == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


def test_mrkdwn_keeps_spaces_outside_markers() -> None:
    block = _rich(
        _section({"type": "text", "text": " bold ", "style": {"bold": True, "italic": True}})
    )

    assert views.rich_text_to_mrkdwn(block) == " *_bold_* "


def test_mrkdwn_closes_styles_at_line_breaks() -> None:
    block = _rich(_section({"type": "text", "text": "first\nsecond", "style": {"bold": True}}))

    assert views.rich_text_to_mrkdwn(block) == "*first*\n*second*"


def test_mrkdwn_renders_lists_quotes_code() -> None:
    block = _rich(
        _section({"type": "text", "text": "Agenda:\n"}),
        {
            "type": "rich_text_list",
            "style": "ordered",
            "indent": 0,
            "elements": [
                _section({"type": "text", "text": "Intro"}),
                _section({"type": "text", "text": "Q&A"}),
            ],
        },
        {
            "type": "rich_text_list",
            "style": "bullet",
            "indent": 1,
            "elements": [_section({"type": "text", "text": "Sub"})],
        },
        {"type": "rich_text_quote", "elements": [{"type": "text", "text": "Quoted\nlines"}]},
        {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "x < y"}]},
    )

    text = views.rich_text_to_mrkdwn(block)

    assert text == "Agenda:\n1. Intro\n2. Q&amp;A\n    • Sub\n> Quoted\n> lines\n```x &lt; y```"


def test_mrkdwn_to_rich_text_parses_markup() -> None:
    block = views.mrkdwn_to_rich_text("Hi *all* <@U1> <https://x.test|docs> &amp; :tada:")

    assert block == _rich(
        _section(
            {"type": "text", "text": "Hi "},
            {"type": "text", "text": "all", "style": {"bold": True}},
            {"type": "text", "text": " "},
            {"type": "user", "user_id": "U1"},
            {"type": "text", "text": " "},
            {"type": "link", "url": "https://x.test", "text": "docs"},
            {"type": "text", "text": " & "},
            {"type": "emoji", "name": "tada"},
        )
    )


@pytest.mark.parametrize(
    "text",
    [
        "plain words",
        "*bold* and _italic_ and ~strike~ and `code`",
        "*bold with _italic_ inside*",
        "*bold <@U1> mention* then :tada: *bold again*",
        "*first line*\n*second line*",
        "Mentions: <@U123> <#C123> <!here> <!subteam^S123>",
        "A link <https://example.com|Example> and <https://example.com>",
        "Line one\n> quoted\nLine three",
        "Before\n```code &lt;here&gt;```\nAfter",
        "AT&amp;T &lt;!channel&gt; is text",
        "Time 10:30:45 is not an emoji, :smile: is",
        "Due <!date^1767225600^{date_short}|Jan 1, 2026>",
    ],
)
def test_mrkdwn_round_trips_through_rich_text(text: str) -> None:
    assert views.rich_text_to_mrkdwn(views.mrkdwn_to_rich_text(text)) == text


def test_mrkdwn_to_rich_text_reads_escaped_quote_marker() -> None:
    block = views.mrkdwn_to_rich_text("Intro\n&gt; quoted")

    assert [element["type"] for element in block["elements"]] == [
        "rich_text_section",
        "rich_text_quote",
    ]
    assert views.rich_text_to_mrkdwn(block) == "Intro\n> quoted"


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="*_~`:<>&\n", blacklist_categories=["Cs"]),
        min_size=1,
    )
)
def test_plain_text_round_trips_through_rich_text(text: str) -> None:
    block = views.mrkdwn_to_rich_text(text)

    assert views.rich_text_to_mrkdwn(block) == text.strip("\n")


def test_message_to_rich_text_uses_rich_text_blocks() -> None:
    message = {"text": "fallback", "blocks": [MESSAGE]}

    assert views.message_to_rich_text(message) == MESSAGE


def test_message_to_rich_text_converts_text_without_blocks() -> None:
    message = {"text": "Hello *there*"}

    block = views.message_to_rich_text(message)

    assert block is not None
    assert views.rich_text_to_mrkdwn(block) == "Hello *there*"


def test_message_to_rich_text_converts_section_blocks() -> None:
    message = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "News"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Big* day"}},
        ],
    }

    block = views.message_to_rich_text(message)

    assert block is not None
    assert views.rich_text_to_mrkdwn(block) == "News\n*Big* day"


def test_empty_message_converts_to_none() -> None:
    assert views.message_to_rich_text({"text": "", "blocks": []}) is None


def test_message_extras_notice_mentions_files() -> None:
    assert views.message_extras_notice({"text": "x", "files": [{"id": "F1"}]}) is not None
    assert views.message_extras_notice({"text": "x"}) is None


def test_confirmation_shows_frequency_capped_channels() -> None:
    audience = _audience(3)
    capped_id = audience.targets[0].channel_id
    capped = {capped_id: "Received a broadcast on 2026-12-03; the workspace's frequency cap is 7 days."}

    view = views.confirmation_view(
        segment_name="At risk", audience=audience, message=MESSAGE, test_note=None, metadata="k", capped=capped
    )

    text = _blocks_text(view)
    assert view["submit"]["text"] == "Send to 2 channels"
    assert "1 channel will be skipped" in text
    assert "frequency cap is 7 days" in text
    assert f"<#{capped_id}>" not in text


def test_confirmation_with_every_channel_capped_has_no_submit() -> None:
    audience = _audience(2)
    capped = {target.channel_id: "Received a broadcast recently." for target in audience.targets}

    view = views.confirmation_view(
        segment_name="At risk", audience=audience, message=MESSAGE, test_note=None, metadata="k", capped=capped
    )

    assert "submit" not in view
    assert "frequency cap" in view["blocks"][0]["text"]["text"]
