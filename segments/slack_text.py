"""Slack mrkdwn helpers: escape CRM text so it cannot ping or link, and render delivery reports."""

from __future__ import annotations

from collections import defaultdict

from segments.ports import BroadcastRecord, DeliveryRecord, DeliveryStatus
from segments.sending import failure_group

# Maximum channels named per report line, so that a report stays readable in Slack.
MAX_CHANNELS_PER_LINE = 20


def escape_mrkdwn(text: str) -> str:
    """Escape `&`, `<` and `>`, the three characters Slack reads as control characters.

    After escaping, CRM text such as `<!channel> Acme` shows literally and notifies nobody, and
    `<https://x|y>` cannot disguise a link. Other mrkdwn (`*bold*`, `_italic_`) is left alone.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_delivery_report(record: BroadcastRecord) -> str:
    """Render a broadcast's outcome as mrkdwn: channels reached, then failures grouped by error.

    Each failure line names the problem, lists the channels and gives the fix. Deliveries still
    `pending` or `sending` are listed apart, because whether they were posted is not known.
    """
    total = len(record.deliveries)
    sent = [delivery for delivery in record.deliveries if delivery.status == DeliveryStatus.SENT]
    failed = [delivery for delivery in record.deliveries if delivery.status == DeliveryStatus.FAILED]
    unfinished = [
        delivery
        for delivery in record.deliveries
        if delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
    ]
    skipped = [
        delivery for delivery in record.deliveries if delivery.status == DeliveryStatus.SKIPPED
    ]
    unconfirmed = [
        delivery for delivery in record.deliveries if delivery.status == DeliveryStatus.UNCONFIRMED
    ]

    segment = escape_mrkdwn(record.segment_name)
    lines = [f"*{segment}*: delivered to {len(sent)} of {_channels(total)}."]
    if failed:
        lines.append(f"Failed in {_channels(len(failed))}:")
        by_error: dict[str, list[DeliveryRecord]] = defaultdict(list)
        for delivery in failed:
            by_error[delivery.error or "unknown"].append(delivery)
        # Largest groups first, then by error code so the order is stable.
        for error, group in sorted(by_error.items(), key=lambda item: (-len(item[1]), item[0])):
            label, action = failure_group(error)
            lines.append(f"• {label} ({len(group)}): {_channel_list(group)}. {action}")
    if skipped:
        lines.append(f"Skipped {_channels(len(skipped))}:")
        for delivery in skipped[:MAX_CHANNELS_PER_LINE]:
            reason = escape_mrkdwn(delivery.reason or "Skipped on purpose.")
            lines.append(f"• #{escape_mrkdwn(delivery.channel_name)}: {reason}")
        if len(skipped) > MAX_CHANNELS_PER_LINE:
            lines.append(f"• and {len(skipped) - MAX_CHANNELS_PER_LINE} more")
    if unconfirmed:
        lines.append(
            f"Unconfirmed in {_channels(len(unconfirmed))}: {_channel_list(unconfirmed)}. Slack did "
            "not confirm these posts and segment-bot could not check, so look in each channel and "
            "post by hand where the message is missing."
        )
    if unfinished:
        lines.append(
            f"Not finished ({len(unfinished)}): {_channel_list(unfinished)}. "
            "Check these channels before resending, because the message may be there."
        )
    return "\n".join(lines)


def _channels(count: int) -> str:
    return f"{count} channel" if count == 1 else f"{count} channels"


def _channel_list(deliveries: list[DeliveryRecord]) -> str:
    names = [f"#{escape_mrkdwn(delivery.channel_name)}" for delivery in deliveries[:MAX_CHANNELS_PER_LINE]]
    hidden = len(deliveries) - len(names)
    if hidden > 0:
        names.append(f"and {hidden} more")
    return ", ".join(names)
