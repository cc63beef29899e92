"""Tests for the tolerant readers of raw Planhat values and their display form."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segments.properties import Property, PropertyCatalog, ValueType
from segments.values import (
    format_value,
    is_empty,
    read_bool,
    read_day,
    read_list,
    read_number,
    read_text,
)

UTC = ZoneInfo("UTC")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, True),
        ("", True),
        ("   ", True),
        ("undefined", True),
        ("Undefined", True),
        (" UNDEFINED ", True),
        ([], True),
        (["", "undefined"], True),
        ({}, True),
        (float("nan"), True),
        (0, False),
        (False, False),
        ("0", False),
        (["a"], False),
        ("text", False),
    ],
)
def test_is_empty(raw: Any, expected: bool) -> None:
    assert is_empty(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, 3.0),
        (3.5, 3.5),
        (-2, -2.0),
        ("50000", 50000.0),
        (" 1,250.5 ", 1250.5),
        ("1,000,000", 1_000_000.0),
        ("-0.25", -0.25),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("1,25", None),
        ("12,34,567", None),
        ("abc", None),
        ("", None),
        ("undefined", None),
        ("nan", None),
        ("inf", None),
        (float("inf"), None),
        (True, None),
        ([1], None),
        (None, None),
    ],
)
def test_read_number(raw: Any, expected: float | None) -> None:
    assert read_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Onboarding ", "Onboarding"),
        (5, "5"),
        (5.0, "5"),
        (2.5, "2.5"),
        (True, "true"),
        (["A", "", "B"], "A, B"),
        ("undefined", None),
        ("  ", None),
        (None, None),
        ({"_id": "x"}, None),
    ],
)
def test_read_text(raw: Any, expected: str | None) -> None:
    assert read_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        (" FALSE ", False),
        ("True", True),
        (1, True),
        (0, False),
        (2, None),
        ("yes please", None),
        ("", None),
        (None, None),
    ],
)
def test_read_bool(raw: Any, expected: bool | None) -> None:
    assert read_bool(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["EMEA", "Tier 2"], ["EMEA", "Tier 2"]),
        ([" EMEA ", "", None, "undefined"], ["EMEA"]),
        ("EMEA, Tier 2", ["EMEA", "Tier 2"]),
        ("EMEA", ["EMEA"]),
        (" , ,", None),
        ([], None),
        (None, None),
        ([1, 2.5], ["1", "2.5"]),
    ],
)
def test_read_list(raw: Any, expected: list[str] | None) -> None:
    assert read_list(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01", date(2026, 3, 1)),
        (" 2026-03-01 ", date(2026, 3, 1)),
        ("2026-03-01T12:00:00Z", date(2026, 3, 1)),
        ("2026-03-01T12:00:00.000Z", date(2026, 3, 1)),
        ("2026-03-01T12:00:00+02:00", date(2026, 3, 1)),
        ("2026-03-01T23:30:00-05:00", date(2026, 3, 2)),
        ("2026-03-01T23:30:00", date(2026, 3, 1)),
        ("2026-03-01T00:00:00.000Z", date(2026, 3, 1)),
        (1772366400000, date(2026, 3, 1)),
        (1772366400000.0, date(2026, 3, 1)),
        ("1772366400000", date(2026, 3, 1)),
        (1772366400, date(2026, 3, 1)),
        ("2026-02-30", None),
        ("2026-02-30T10:00:00Z", None),
        ("next tuesday", None),
        ("undefined", None),
        ("", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        (1e300, None),
    ],
)
def test_read_day_in_utc(raw: Any, expected: date | None) -> None:
    assert read_day(raw, UTC) == expected


def test_read_day_tokyo_day_boundary() -> None:
    raw = "2026-03-01T23:30:00Z"

    assert read_day(raw, TOKYO) == date(2026, 3, 2)
    assert read_day(raw, UTC) == date(2026, 3, 1)


def test_read_day_converts_offset_to_context_zone() -> None:
    raw = "2026-03-02T03:00:00Z"

    assert read_day(raw, NEW_YORK) == date(2026, 3, 1)


def test_read_day_midnight_utc_is_that_date_everywhere() -> None:
    raw = "2026-03-01T00:00:00.000Z"

    assert read_day(raw, NEW_YORK) == date(2026, 3, 1)
    assert read_day(raw, TOKYO) == date(2026, 3, 1)
    assert read_day(1772323200000, NEW_YORK) == date(2026, 3, 1)


def test_read_day_epoch_milliseconds_in_tokyo() -> None:
    # 2026-03-01T23:30:00Z in milliseconds.
    raw = 1772407800000

    assert read_day(raw, TOKYO) == date(2026, 3, 2)
    assert read_day(str(raw), UTC) == date(2026, 3, 1)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.from_regex(r"\A[0-9T:.,+Z -]{0,30}\Z"),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)


@given(json_values | st.sampled_from([10**400, -(10**5000), "9" * 400, "1e400", 1e308]))
def test_readers_never_raise(raw: Any) -> None:
    is_empty(raw)
    read_number(raw)
    read_text(raw)
    read_bool(raw)
    read_list(raw)
    read_day(raw, TOKYO)

    for value_type in ValueType:
        assert isinstance(format_value(raw, _prop(value_type)), str)


@pytest.mark.parametrize(
    "raw",
    [10**400, -(10**5000), "9" * 400, "1e400", 1e308, [10**5000]],
    ids=[
        "int-401-digits",
        "int-5001-digits",
        "text-400-digits",
        "text-1e400",
        "float-1e308",
        "list",
    ],
)
def test_readers_accept_huge_numbers(raw: Any) -> None:
    assert read_number(raw) is None or read_number(raw) == 1e308
    assert read_day(raw, UTC) is None
    read_text(raw)
    read_list(raw)


def _prop(value_type: ValueType) -> Property:
    return Property("x", "X", value_type, "x")


@pytest.mark.parametrize(
    ("raw", "value_type", "expected"),
    [
        (3, ValueType.NUMBER, "3"),
        ("62000", ValueType.NUMBER, "62,000"),
        (1250.5, ValueType.NUMBER, "1,250.5"),
        (29.285714, ValueType.NUMBER, "29.29"),
        ("abc", ValueType.NUMBER, "empty"),
        ("2027-01-15T00:00:00.000Z", ValueType.DATE, "2027-01-15"),
        ("not a date", ValueType.DATE, "empty"),
        ("Onboarding", ValueType.TEXT, "Onboarding"),
        ("undefined", ValueType.TEXT, "empty"),
        (["EMEA", "Tier 2"], ValueType.LIST, "EMEA, Tier 2"),
        ([], ValueType.LIST, "empty"),
        ("true", ValueType.CHECKBOX, "true"),
        (False, ValueType.CHECKBOX, "false"),
        (None, ValueType.TEXT, "empty"),
    ],
)
def test_format_value(raw: Any, value_type: ValueType, expected: str) -> None:
    assert format_value(raw, _prop(value_type)) == expected


def test_format_value_cuts_long_text() -> None:
    prop = PropertyCatalog.builtin().get("name")

    display = format_value("x" * 200, prop)

    assert len(display) == 80
    assert display.endswith("…")


def test_format_value_shows_date_in_given_zone() -> None:
    prop = PropertyCatalog.builtin().get("renewal_date")

    display = format_value("2026-03-01T23:30:00Z", prop, tz=TOKYO)

    assert display == "2026-03-02"
