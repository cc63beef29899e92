"""Tolerant readers that turn raw Planhat field values into numbers, text, days and lists.

Planhat data is loosely typed: numbers arrive as strings, dates as ISO strings or epoch numbers,
and unset fields as null, `""` or the literal string `"undefined"`. Every reader returns None for
a value it cannot read instead of raising, so a bad value counts as empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from segments.properties import Property, ValueType

# Plain numbers, optionally with comma thousands separators ("1,250.5"). A comma in any other
# place ("1,25") is read as unreadable, because it may be a decimal comma.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][+-]?\d+)?")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH_TEXT = re.compile(r"[+-]?\d+(?:\.\d+)?")

# Epoch values at or above 1e11 in absolute value are milliseconds, smaller ones seconds:
# 1e11 seconds is the year 5138, while 1e11 milliseconds is March 1973, so real dates on
# either scale fall on the right side of this line.
_EPOCH_MILLISECONDS_FROM = 1e11

_MAX_DISPLAY_LENGTH = 80


def is_empty(raw: Any) -> bool:
    """Tell whether a raw value means "not set": None, blank or "undefined" text, an empty list."""
    if raw is None:
        return True
    if isinstance(raw, str):
        text = raw.strip()
        return not text or text.casefold() == "undefined"
    if isinstance(raw, float):
        return math.isnan(raw)
    if isinstance(raw, list | tuple):
        return all(is_empty(item) for item in raw)
    if isinstance(raw, Mapping):
        return not raw
    return False


def read_number(raw: Any) -> float | None:
    """Read a number, also from text such as "50000" or "1,250.5". Booleans are not numbers."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = _to_float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if not text or not _NUMBER_TEXT.fullmatch(text) or not any(c.isdigit() for c in text):
            return None
        value = float(text.replace(",", ""))
    else:
        return None
    return value if math.isfinite(value) else None


def read_text(raw: Any) -> str | None:
    """Read text with surrounding spaces removed. Numbers and booleans read as their text form.

    A list reads as its non-empty items joined by ", ", because a text property sometimes contains
    a one-item list.
    """
    if is_empty(raw):
        return None
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        try:
            return str(raw)
        except ValueError:
            # Python refuses to convert ints with more than 4,300 digits to text by default.
            return None
    if isinstance(raw, float):
        return str(int(raw)) if raw.is_integer() else repr(raw)
    if isinstance(raw, list | tuple):
        items = read_list(raw)
        return ", ".join(items) if items else None
    return None


def read_bool(raw: Any) -> bool | None:
    """Read a checkbox from a boolean, "true"/"false" text in any case, or the numbers 1 and 0."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        if raw == 1:
            return True
        return False if raw == 0 else None
    if isinstance(raw, str):
        return {"true": True, "false": False}.get(raw.strip().casefold())
    return None


def read_list(raw: Any) -> list[str] | None:
    """Read a list of non-empty text items from a list, or from comma-separated text."""
    if is_empty(raw):
        return None
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, list | tuple):
        items = [text for text in (read_text(item) for item in raw) if text is not None]
    else:
        single = read_text(raw)
        items = [single] if single is not None else []
    items = [item for item in items if item and item.casefold() != "undefined"]
    return items or None


def read_day(raw: Any, tz: ZoneInfo) -> date | None:
    """Read the calendar day of a date or timestamp, as seen in time zone `tz`.

    Accepts ISO datetimes with `Z`, an offset or neither (naive means UTC), `YYYY-MM-DD` dates,
    and epoch seconds or milliseconds as numbers or digit strings.
    """
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, datetime):
        return _day_of(raw, tz)
    if isinstance(raw, date):
        return raw
    if isinstance(raw, int | float):
        return _day_of_epoch(_to_float(raw), tz)
    if not isinstance(raw, str):
        return None

    text = raw.strip()
    try:
        if _DATE_ONLY.fullmatch(text):
            return date.fromisoformat(text)
        if _EPOCH_TEXT.fullmatch(text):
            return _day_of_epoch(float(text), tz)
        return _day_of(datetime.fromisoformat(text), tz)
    except ValueError:
        return None


def _to_float(number: float) -> float:
    """Convert to float, giving infinity for an int too large for a float."""
    try:
        return float(number)
    except OverflowError:
        return math.inf


def _day_of_epoch(value: float, tz: ZoneInfo) -> date | None:
    if not math.isfinite(value):
        return None
    seconds = value / 1000 if abs(value) >= _EPOCH_MILLISECONDS_FROM else value
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return _day_of(moment, tz)


def _day_of(moment: datetime, tz: ZoneInfo) -> date | None:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        in_utc = moment.astimezone(UTC)
        # NOTE: Planhat stores date-only fields as midnight UTC, so a value at exactly
        # 00:00:00.000 UTC is read as that calendar day. A real timestamp at that instant is
        # then read as the UTC day even where the local day differs (in UTC-5 it is the day before).
        if in_utc.time() == time(0):
            return in_utc.date()
        return moment.astimezone(tz).date()
    except (OverflowError, ValueError):
        return None


def _format_number(value: float) -> str:
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def format_value(raw: Any, prop: Property, *, tz: ZoneInfo | None = None) -> str:
    """Format a raw value for display as `prop`'s type: `62,000`, `2027-01-15`, `EMEA, Tier 2`.

    Dates are shown as days in `tz` (UTC when not given). Empty or unreadable values show as
    `empty`, and long text is cut to 80 characters.
    """
    text: str | None
    if prop.type is ValueType.NUMBER:
        number = read_number(raw)
        text = None if number is None else _format_number(number)
    elif prop.type is ValueType.DATE:
        day = read_day(raw, tz or ZoneInfo("UTC"))
        text = None if day is None else day.isoformat()
    elif prop.type is ValueType.CHECKBOX:
        flag = read_bool(raw)
        text = None if flag is None else str(flag).lower()
    elif prop.type is ValueType.LIST:
        items = read_list(raw)
        text = None if items is None else ", ".join(items)
    else:
        text = read_text(raw)

    if text is None:
        return "empty"
    if len(text) > _MAX_DISPLAY_LENGTH:
        return text[: _MAX_DISPLAY_LENGTH - 1] + "…"
    return text
