"""Block Kit builders of the `/segment` command: help, list, preview and delete confirmation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from handlers.views.commands import (
    DELETE_CANCEL_ACTION,
    DELETE_CONFIRM_ACTION,
    MAX_HEADER_CHARS,
    MAX_MESSAGE_BLOCKS,
    MAX_SECTION_CHARS,
    SUBCOMMAND_NAMES,
    clip,
    closest_subcommand,
    delete_confirmation_blocks,
    help_text,
    pack_lines,
    preview_blocks,
    preview_text,
    saved_rules_text,
    segment_list_blocks,
    slack_date,
    unknown_subcommand_text,
)
from segments.audience import Audience, MatchedCompany, UnmappedCompany
from segments.channels import UnmappedKind
from segments.ports import DeliveryTarget, QualifyingCompany, SegmentRecord
from segments.rules import Condition, Operator, rules_to_json

FETCHED_AT = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
# Slack rejects messages whose blocks hold about 13,000 characters in all (msg_blocks_too_long).
MESSAGE_CHARS = 13_000
RULE = Condition("health_score", Operator.LESS_THAN, (4,))


def _segment(segment_id: int, name: str, rules: dict[str, Any] | None = None) -> SegmentRecord:
    return SegmentRecord(
        id=segment_id,
        team_id="T0SEGMENT",
        name=name,
        rules=rules or rules_to_json(RULE),
        created_by="U0ADMIN",
        created_at=FETCHED_AT,
        updated_by="U0ADMIN",
        updated_at=FETCHED_AT,
    )


def _audience(
    *,
    channels: int,
    unmapped: int = 0,
    warnings: tuple[str, ...] = (),
    company_name: str = "Acme {index}",
) -> Audience:
    targets = []
    matched = []
    for index in range(channels):
        name = company_name.format(index=index)
        company = QualifyingCompany(
            company_id=f"co{index}", company_name=name, values={"Health Score": "3"}
        )
        targets.append(
            DeliveryTarget(
                channel_id=f"C{index:08d}",
                channel_name=f"customer-{index}",
                is_private=False,
                companies=[company],
            )
        )
        matched.append(
            MatchedCompany(
                company_id=f"co{index}",
                company_name=name,
                channel_id=f"C{index:08d}",
                channel_name=f"customer-{index}",
                reasons={"Health Score": "3"},
            )
        )
    missing = [
        UnmappedCompany(
            company_id=f"un{index}",
            company_name=company_name.format(index=index),
            reason="No channel named #customer-x exists. Create it or set the Slack Channel field.",
            kind=UnmappedKind.NO_CHANNEL,
        )
        for index in range(unmapped)
    ]
    return Audience(
        rules=RULE,
        rules_text="Health Score less than 4",
        matched=matched,
        unmapped=missing,
        targets=targets,
        warnings=warnings,
        company_count=400,
        fetched_at=FETCHED_AT,
        planhat_calls=2,
    )


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Return every text of the blocks: section texts, header texts and context elements."""
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), str):
                texts.append(element["text"])
            elif isinstance(element.get("text"), dict):
                texts.append(element["text"]["text"])
    return texts


def test_help_mentions_every_subcommand() -> None:
    text = help_text()

    for name in SUBCOMMAND_NAMES:
        assert f"/segment {name}" in text


def test_unknown_subcommand_suggests_closest() -> None:
    notice = unknown_subcommand_text("prevew")

    assert notice == 'Unknown subcommand "prevew". Did you mean "preview"?'


def test_unknown_subcommand_without_close_match() -> None:
    assert closest_subcommand("zzzz") is None
    assert "Did you mean" not in unknown_subcommand_text("zzzz")


def test_unknown_subcommand_escapes_input() -> None:
    notice = unknown_subcommand_text("<!here>")

    assert "<!here>" not in notice
    assert "&lt;!here&gt;" in notice


def test_preview_caps_channel_mentions_at_30() -> None:
    audience = _audience(channels=42)

    text = "\n".join(_texts(preview_blocks(audience=audience, segment_name="At risk")))

    mentions = re.findall(r"<#C\d{8}>", text)
    assert len(mentions) == 30
    assert mentions[0] == "<#C00000000>"
    assert "and 12 more channels" in text


def test_preview_shows_counts_and_values() -> None:
    audience = _audience(
        channels=3, unmapped=2, warnings=("1 company has no Health Score in Planhat.",)
    )

    text = "\n".join(_texts(preview_blocks(audience=audience, segment_name="At risk")))

    assert "Preview: At risk" in text
    assert "Health Score less than 4" in text
    assert (
        "*3 channels* would get the message: 5 companies of 400 match, and 2 of them have no channel."
        in text
    )
    assert "Health Score 3" in text
    assert "2 companies without a channel" in text
    assert ":warning: 1 company has no Health Score in Planhat." in text
    assert f"<!date^{int(FETCHED_AT.timestamp())}^" in text


def test_preview_of_empty_audience() -> None:
    audience = _audience(channels=0)

    text = "\n".join(_texts(preview_blocks(audience=audience, segment_name=None)))

    assert "Preview of rules" in text
    assert "No company matches these rules right now, out of 400 in Planhat." in text


def test_preview_escapes_company_names() -> None:
    audience = _audience(channels=2, unmapped=2, company_name="<!channel> Acme & Co {index}")

    texts = _texts(preview_blocks(audience=audience, segment_name="<!here> segment"))

    joined = "\n".join(texts)
    assert "<!channel>" not in joined
    assert "&lt;!channel&gt; Acme &amp; Co 0" in joined
    # The header is plain_text, where Slack never reads mentions, so it is not escaped.
    assert texts[0] == "Preview: <!here> segment"
    assert "<!here>" not in "\n".join(texts[1:])


def test_preview_of_huge_audience_fits_limits() -> None:
    long_name = "Very Long Company Name " * 20 + "{index}"
    audience = _audience(
        channels=2000,
        unmapped=2000,
        warnings=tuple("w" * 900 for _ in range(40)),
        company_name=long_name,
    )

    blocks = preview_blocks(audience=audience, segment_name="x" * 300)

    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert sum(len(text) for text in _texts(blocks)) <= MESSAGE_CHARS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER_CHARS
        elif block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_CHARS
    text = "\n".join(_texts(blocks))
    shown_channels = len(re.findall(r"<#C\d{8}>", text))
    assert 0 < shown_channels <= 30
    assert f"and {2000 - shown_channels:,} more channels" in text
    assert "more companies" in text


def test_preview_text_counts_channels_and_companies() -> None:
    audience = _audience(channels=3, unmapped=1)

    assert (
        preview_text(audience=audience, segment_name="At risk")
        == '"At risk" reaches 3 channels (4 companies matched).'
    )


def test_list_empty_state_explains_new() -> None:
    blocks = segment_list_blocks([])

    assert len(blocks) == 1
    assert "/segment new" in blocks[0]["text"]["text"]


def test_list_shows_each_segment_with_rule_text() -> None:
    segments = [
        _segment(1, "At risk"),
        _segment(
            2,
            "Big seats",
            rules_to_json(Condition("custom.Seats Purchased", Operator.GREATER_THAN, (100,))),
        ),
    ]

    text = "\n".join(_texts(segment_list_blocks(segments)))

    assert "Saved segments (2)" in text
    assert "*At risk*\nHealth Score less than 4" in text
    assert '*Big seats*\n"Seats Purchased" greater than 100' in text
    assert text.index("At risk") < text.index("Big seats")


def test_list_escapes_segment_names() -> None:
    text = "\n".join(_texts(segment_list_blocks([_segment(1, "<!channel> team")])))

    assert "<!channel>" not in text
    assert "&lt;!channel&gt; team" in text


def test_long_list_fits_limits() -> None:
    segments = [_segment(index, f"Segment {index:03d} " + "y" * 70) for index in range(150)]

    blocks = segment_list_blocks(segments)

    texts = _texts(blocks)
    shown = "\n".join(texts).count("*Segment ")
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert all(len(text) <= MAX_SECTION_CHARS for text in texts)
    assert sum(len(text) for text in texts) <= MESSAGE_CHARS
    assert 0 < shown < 150
    assert f"and {150 - shown} more segments" in "\n".join(texts)


def test_saved_rules_text_reports_unreadable_rules() -> None:
    text = saved_rules_text({"property": "health_score", "operator": "bogus", "values": [1]})

    assert text.startswith("(The saved rules cannot be read:")


def test_delete_confirmation_buttons_carry_segment_id() -> None:
    blocks = delete_confirmation_blocks(_segment(7, "At risk"))

    actions = blocks[-1]["elements"]
    assert [element["action_id"] for element in actions] == [
        DELETE_CONFIRM_ACTION,
        DELETE_CANCEL_ACTION,
    ]
    assert [element["value"] for element in actions] == ["7", "7"]
    assert actions[0]["style"] == "danger"
    assert "*At risk*" in blocks[0]["text"]["text"]


def test_pack_lines_never_exceeds_limit() -> None:
    lines = [f"line {index} " + "z" * (index * 7 % 400) for index in range(300)]

    texts = pack_lines(lines, limit=1000)

    assert all(len(text) <= 1000 for text in texts)
    assert "\n".join(texts) == "\n".join(lines)


def test_clip_drops_partial_entity() -> None:
    assert clip("Tom &amp; Jerry", 8) == "Tom …"
    assert clip("short", 10) == "short"


def test_slack_date_treats_naive_as_utc() -> None:
    naive = datetime(2026, 12, 4, 9, 30)

    assert slack_date(naive) == slack_date(FETCHED_AT)
    assert slack_date(FETCHED_AT).endswith("|2026-12-04 09:30 UTC>")
