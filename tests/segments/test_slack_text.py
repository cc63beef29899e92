"""Slack text helpers: mrkdwn escaping of CRM text and the delivery report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segments.ports import BroadcastRecord, BroadcastStatus, DeliveryRecord, DeliveryStatus
from segments.sending import failure_reason
from segments.slack_text import MAX_CHANNELS_PER_LINE, escape_mrkdwn, format_delivery_report


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel> Acme", "&lt;!channel&gt; Acme"),
        ("<@U123> & <#C123>", "&lt;@U123&gt; &amp; &lt;#C123&gt;"),
        ("<https://evil.example|Acme login>", "&lt;https://evil.example|Acme login&gt;"),
        ("AT&amp;T", "AT&amp;amp;T"),
        ("*bold* _italic_ Café", "*bold* _italic_ Café"),
        ("", ""),
    ],
)
def test_escape_mrkdwn_neutralizes_control_characters(text: str, escaped: str) -> None:
    assert escape_mrkdwn(text) == escaped


def _delivery(
    delivery_id: int, name: str, status: DeliveryStatus, error: str | None = None
) -> DeliveryRecord:
    reason = failure_reason(error, channel_name=name) if error else None
    return DeliveryRecord(
        id=delivery_id,
        broadcast_id=1,
        channel_id=f"C{delivery_id:08d}",
        channel_name=name,
        status=status,
        attempts=1,
        ts="1700000000.000100" if status == DeliveryStatus.SENT else None,
        error=error,
        reason=reason,
    )


def _record(deliveries: list[DeliveryRecord], *, segment_name: str = "Onboarding") -> BroadcastRecord:
    return BroadcastRecord(
        id=1,
        team_id="T0SEGMENT",
        segment_name=segment_name,
        status=BroadcastStatus.PARTIALLY_SENT,
        created_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        deliveries=deliveries,
    )


def test_report_groups_failures_by_error() -> None:
    record = _record(
        [
            _delivery(1, "customer-acme", DeliveryStatus.SENT),
            _delivery(2, "customer-oldco", DeliveryStatus.FAILED, "is_archived"),
            _delivery(3, "customer-initech", DeliveryStatus.FAILED, "not_in_channel"),
            _delivery(4, "customer-retired", DeliveryStatus.FAILED, "is_archived"),
            _delivery(5, "customer-globex", DeliveryStatus.SENT),
        ]
    )

    report = format_delivery_report(record).splitlines()

    assert report == [
        "*Onboarding*: delivered to 2 of 5 channels.",
        "Failed in 3 channels:",
        "• Channel archived (2): #customer-oldco, #customer-retired. Unarchive the channels, then resend.",
        "• @segment-bot is not in the channel (1): #customer-initech. Invite @segment-bot, then resend.",
    ]


def test_report_names_unknown_errors() -> None:
    record = _record([_delivery(1, "customer-acme", DeliveryStatus.FAILED, "ekm_access_denied")])

    report = format_delivery_report(record)

    assert "• Slack error ekm_access_denied (1): #customer-acme. Check the channels, then resend." in report


def test_report_all_delivered_has_one_line() -> None:
    record = _record([_delivery(1, "customer-acme", DeliveryStatus.SENT)])

    assert format_delivery_report(record) == "*Onboarding*: delivered to 1 of 1 channel."


def test_report_lists_unfinished_deliveries_apart() -> None:
    record = _record(
        [
            _delivery(1, "customer-acme", DeliveryStatus.SENDING),
            _delivery(2, "customer-globex", DeliveryStatus.PENDING),
        ]
    )

    report = format_delivery_report(record).splitlines()

    assert report[1] == (
        "Not finished (2): #customer-acme, #customer-globex. "
        "Check these channels before resending, because the message may be there."
    )


def test_report_cuts_long_channel_lists() -> None:
    deliveries = [
        _delivery(index, f"customer-{index}", DeliveryStatus.FAILED, "is_archived") for index in range(1, 26)
    ]

    report = format_delivery_report(_record(deliveries))

    assert f"#customer-{MAX_CHANNELS_PER_LINE}, and 5 more." in report
    assert f"#customer-{MAX_CHANNELS_PER_LINE + 1}," not in report


def test_report_escapes_segment_name() -> None:
    record = _record([_delivery(1, "customer-acme", DeliveryStatus.SENT)], segment_name="<!here> VIPs")

    assert format_delivery_report(record).startswith("*&lt;!here&gt; VIPs*")


def test_report_lists_unconfirmed_channels() -> None:
    record = _record(
        [
            _delivery(1, "customer-acme", DeliveryStatus.SENT),
            _delivery(2, "customer-initech", DeliveryStatus.UNCONFIRMED),
        ]
    )

    report = format_delivery_report(record)

    assert "delivered to 1 of 2 channels" in report
    assert "Unconfirmed in 1 channel: #customer-initech." in report
