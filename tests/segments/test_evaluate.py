"""Tests for rule evaluation: every operator on edge values, empty data, Kleene logic, warnings."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from planhat.models import Company, CustomFieldDefinition
from segments.evaluate import EvaluationContext, build_matcher, rule_warnings
from segments.properties import PropertyCatalog
from segments.rules import AllOf, Condition, Operator, UnknownPropertyError
from segments.text import parse_rules

TODAY = date(2026, 3, 1)
UTC_CONTEXT = EvaluationContext(today=TODAY, timezone=ZoneInfo("UTC"))


def _catalog() -> PropertyCatalog:
    fields = [
        ("Seats Purchased", "number"),
        ("Reference OK", "checkbox"),
        ("Modules", "multipicklist"),
        ("Contract Signed", "date"),
    ]
    return PropertyCatalog.builtin().with_custom_fields(
        CustomFieldDefinition(id=name, name=name, type=type_, parent="company")
        for name, type_ in fields
    )


CATALOG = _catalog()


def _company(**fields: Any) -> Company:
    return Company(id="c1", name="Acme", fields={"_id": "c1", "name": "Acme", **fields})


def _matches(text: str, company: Company, context: EvaluationContext = UTC_CONTEXT) -> bool:
    return build_matcher(parse_rules(text, CATALOG), CATALOG, context).matches(company)


def _day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


# The five example rules


def test_example_health_score_below_40() -> None:
    assert _matches("Health Score less than 40", _company(h=3))
    assert not _matches("Health Score less than 40", _company(h=None))


def test_example_renewal_within_60_days() -> None:
    assert _matches(
        "Renewal Date within 60 days", _company(renewalDate=_day(60) + "T00:00:00.000Z")
    )
    assert not _matches("Renewal Date within 60 days", _company(renewalDate=_day(61)))
    assert not _matches("Renewal Date within 60 days", _company(renewalDate=_day(-1)))


def test_example_lifecycle_stage_onboarding() -> None:
    assert _matches('Lifecycle Stage equals "Onboarding"', _company(phase=" onboarding "))
    assert not _matches('Lifecycle Stage equals "Onboarding"', _company(phase="Adoption"))


def test_example_low_health_and_high_arr() -> None:
    rule = "Health Score less than 40 AND ARR greater than 50000"

    assert _matches(rule, _company(h=3, arr=62000))
    assert not _matches(rule, _company(h=3, arr=50000))
    assert not _matches(rule, _company(h=3))


def test_example_arr_above_10000() -> None:
    assert _matches("ARR greater than 10000", _company(arr="10,000.01"))
    assert not _matches("ARR greater than 10000", _company(arr=10000))


# Numbers


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("Health Score less than 4", 3.99, True),
        ("Health Score less than 4", 4, False),
        ("Health Score at most 4", 4, True),
        ("Health Score at most 4", 4.01, False),
        ("Health Score greater than 4", 4, False),
        ("Health Score greater than 4", 4.01, True),
        ("Health Score at least 4", 4, True),
        ("Health Score at least 4", 3.99, False),
        ("Health Score equals 4", 4.0, True),
        ("Health Score equals 4", "4", True),
        ("Health Score equals 4", 4.000001, False),
        ("Health Score not equals 4", 5, True),
        ("Health Score not equals 4", 4, False),
        ("Health Score between 3 and 7", 3, True),
        ("Health Score between 3 and 7", 7, True),
        ("Health Score between 3 and 7", 2.99, False),
        ("Health Score between 3 and 7", 7.01, False),
        ("Health Score between 5 and 5", 5, True),
        ("Health Score less than -1.5", -2, True),
        ("Health Score greater than 2", " 3 ", True),
    ],
)
def test_number_operators_at_edges(rule: str, value: Any, expected: bool) -> None:
    assert _matches(rule, _company(h=value)) is expected


def test_custom_number_read_from_custom_object() -> None:
    company = _company(custom={"Seats Purchased": "1,250"})

    assert _matches('"Seats Purchased" greater than 1000', company)
    assert not _matches('"Seats Purchased" greater than 1250', company)


# Text


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("Status equals customer", "  CUSTOMER ", True),
        ("Status equals customer", "customers", False),
        ("Status is not customer", "lost", True),
        ("Status != customer", "Customer", False),
        ('Status contains "TOM"', "customer", True),
        ('Status contains "xyz"', "customer", False),
        ('Status does not contain "xyz"', "customer", True),
        ('Status does not contain "TOM"', "customer", False),
        ('Status starts with " Cust "', "customer", True),
        ('Status starts with "tom"', "customer", False),
        ('Status in ("prospect", " Customer ")', "customer", True),
        ('Status in ("prospect", "lost")', "customer", False),
        ('Status not in ("prospect", "lost")', "customer", True),
        ('Status not in ("CUSTOMER")', "customer", False),
        ("Status equals 5", 5, True),
    ],
)
def test_text_operators_ignore_case_and_spaces(rule: str, value: Any, expected: bool) -> None:
    assert _matches(rule, _company(status=value)) is expected


# Dates


@pytest.mark.parametrize(
    ("rule", "offset", "expected"),
    [
        ("Renewal Date within 0 days", 0, True),
        ("Renewal Date within 0 days", 1, False),
        ("Renewal Date within 0 days", -1, False),
        ("Renewal Date within 30 days", 30, True),
        ("Renewal Date within 30 days", 31, False),
        ("Renewal Date within 30 days", -1, False),
        ("Renewal Date within last 30 days", -30, True),
        ("Renewal Date within last 30 days", 0, True),
        ("Renewal Date within last 30 days", -31, False),
        ("Renewal Date within last 30 days", 1, False),
        ("Renewal Date more than 10 days ago", -11, True),
        ("Renewal Date more than 10 days ago", -10, False),
        ("Renewal Date more than 10 days from now", 11, True),
        ("Renewal Date more than 10 days from now", 10, False),
        ("Renewal Date more than 0 days from now", 1, True),
        ("Renewal Date more than 0 days ago", 0, False),
        ("Renewal Date within 100000000 days", 3650, True),
        ("Renewal Date more than 100000000 days ago", -3650, False),
    ],
)
def test_relative_date_operators_at_edges(rule: str, offset: int, expected: bool) -> None:
    assert _matches(rule, _company(renewalDate=_day(offset))) is expected


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("Renewal Date before 2026-03-01", "2026-02-28", True),
        ("Renewal Date before 2026-03-01", "2026-03-01", False),
        ("Renewal Date after 2026-03-01", "2026-03-02", True),
        ("Renewal Date after 2026-03-01", "2026-03-01", False),
        ("Renewal Date on 2026-03-01", "2026-03-01T18:45:00Z", True),
        ("Renewal Date on 2026-03-01", "2026-03-02", False),
        ("Renewal Date between 2026-02-01 and 2026-02-28", "2026-02-01", True),
        ("Renewal Date between 2026-02-01 and 2026-02-28", "2026-02-28T23:59:59Z", True),
        ("Renewal Date between 2026-02-01 and 2026-02-28", "2026-03-01", False),
        ("Renewal Date on 2026-03-01", 1772366400000, True),
        ("Renewal Date on 2026-03-01", "1772366400000", True),
        ("Renewal Date on 2026-03-01", 1772366400, True),
    ],
)
def test_absolute_date_operators(rule: str, value: Any, expected: bool) -> None:
    assert _matches(rule, _company(renewalDate=value)) is expected


def test_date_day_boundary_follows_time_zone() -> None:
    company = _company(renewalDate="2026-03-01T23:30:00Z")
    tokyo = EvaluationContext(today=TODAY, timezone=ZoneInfo("Asia/Tokyo"))

    assert _matches("Renewal Date on 2026-03-02", company, tokyo)
    assert _matches("Renewal Date on 2026-03-01", company, UTC_CONTEXT)
    assert not _matches("Renewal Date within 0 days", company, tokyo)
    assert _matches("Renewal Date within 0 days", company, UTC_CONTEXT)


def test_custom_date_field() -> None:
    company = _company(custom={"Contract Signed": "2025-09-15T00:00:00.000Z"})

    assert _matches('"Contract Signed" more than 100 days ago', company)


# Checkbox and list


@pytest.mark.parametrize(
    ("value", "is_true", "is_false"),
    [
        (True, True, False),
        (False, False, True),
        ("true", True, False),
        ("FALSE", False, True),
        ("maybe", False, False),
    ],
)
def test_checkbox_operators(value: Any, is_true: bool, is_false: bool) -> None:
    company = _company(custom={"Reference OK": value})

    assert _matches('"Reference OK" is true', company) is is_true
    assert _matches('"Reference OK" is false', company) is is_false


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ("Tags contains emea", ["EMEA", "Tier 2"], True),
        ('Tags contains " tier 2 "', "EMEA, Tier 2", True),
        ("Tags contains EME", ["EMEA"], False),
        ('Tags does not contain "apac"', ["EMEA"], True),
        ('Tags does not contain "emea"', ["EMEA"], False),
        ('Tags contains any of ("apac", "emea")', ["EMEA"], True),
        ('Tags contains any of ("apac", "na")', ["EMEA"], False),
        ('Tags contains all of ("emea", "TIER 2")', ["EMEA", "Tier 2"], True),
        ('Tags contains all of ("emea", "apac")', ["EMEA", "Tier 2"], False),
    ],
)
def test_list_operators(rule: str, value: Any, expected: bool) -> None:
    assert _matches(rule, _company(tags=value)) is expected


def test_custom_multipicklist_is_a_list() -> None:
    company = _company(custom={"Modules": ["Reporting", "API"]})

    assert _matches('Modules contains all of ("api", "reporting")', company)


# Empty values and Kleene logic

EMPTY_VALUES: list[Any] = [None, "", "   ", "undefined", "UNDEFINED", []]

RULES_ON_EMPTY = [
    ("h", "Health Score less than 4"),
    ("h", "Health Score at most 4"),
    ("h", "Health Score greater than 4"),
    ("h", "Health Score at least 4"),
    ("h", "Health Score equals 4"),
    ("h", "Health Score not equals 4"),
    ("h", "Health Score between 0 and 10"),
    ("status", "Status equals customer"),
    ("status", "Status not equals customer"),
    ("status", 'Status contains "c"'),
    ("status", 'Status does not contain "c"'),
    ("status", 'Status starts with "c"'),
    ("status", 'Status in ("customer")'),
    ("status", 'Status not in ("customer")'),
    ("renewalDate", "Renewal Date within 60 days"),
    ("renewalDate", "Renewal Date within last 60 days"),
    ("renewalDate", "Renewal Date before 2030-01-01"),
    ("renewalDate", "Renewal Date after 2000-01-01"),
    ("renewalDate", "Renewal Date on 2026-03-01"),
    ("renewalDate", "Renewal Date between 2000-01-01 and 2030-01-01"),
    ("renewalDate", "Renewal Date more than 1 days ago"),
    ("renewalDate", "Renewal Date more than 1 days from now"),
    ("tags", "Tags contains a"),
    ("tags", "Tags does not contain a"),
    ("tags", "Tags contains any of (a)"),
    ("tags", "Tags contains all of (a)"),
]


@pytest.mark.parametrize(("field", "rule"), RULES_ON_EMPTY)
@pytest.mark.parametrize("empty", EMPTY_VALUES)
def test_empty_value_matches_neither_rule_nor_negation(field: str, rule: str, empty: Any) -> None:
    company = _company(**{field: empty})

    assert not _matches(rule, company)
    assert not _matches(f"NOT ({rule})", company)


@pytest.mark.parametrize("empty", EMPTY_VALUES)
def test_empty_checkbox_matches_neither_true_nor_false(empty: Any) -> None:
    company = _company(custom={"Reference OK": empty})

    assert not _matches('"Reference OK" is true', company)
    assert not _matches('"Reference OK" is false', company)
    assert not _matches('NOT "Reference OK" is true', company)


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("h", "Health Score"),
        ("status", "Status"),
        ("renewalDate", "Renewal Date"),
        ("tags", "Tags"),
    ],
)
@pytest.mark.parametrize("empty", EMPTY_VALUES)
def test_empty_value_matches_is_empty_only(field: str, label: str, empty: Any) -> None:
    company = _company(**{field: empty})

    assert _matches(f"{label} is empty", company)
    assert not _matches(f"{label} is not empty", company)
    assert _matches(f"NOT {label} is not empty", company)


def test_missing_field_is_empty() -> None:
    assert _matches("Health Score is empty", _company())
    assert _matches('"Seats Purchased" is empty', _company(custom="not an object"))


@pytest.mark.parametrize(
    ("field", "value", "label"),
    [
        ("h", "high", "Health Score"),
        ("renewalDate", "soon", "Renewal Date"),
        ("renewalDate", "2026-02-30", "Renewal Date"),
    ],
)
def test_unreadable_value_counts_as_empty(field: str, value: str, label: str) -> None:
    company = _company(**{field: value})

    assert _matches(f"{label} is empty", company)
    assert not _matches(f"{label} is not empty", company)


def test_present_value_is_not_empty() -> None:
    company = _company(h=0, tags=["EMEA"], custom={"Reference OK": False})

    assert _matches("Health Score is not empty", company)
    assert _matches("Tags is not empty", company)
    assert _matches('"Reference OK" is not empty', company)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("Health Score < 4 OR ARR > 100", True),
        ("Health Score < 4 OR ARR > 1000", False),
        ("Health Score < 4 AND ARR > 1000", False),
        ("Health Score < 4 AND ARR > 100", False),
        ("NOT (Health Score < 4 AND ARR > 1000)", True),
        ("NOT (Health Score < 4 OR ARR > 1000)", False),
        ("NOT NOT Health Score < 4", False),
        ("Health Score is empty AND ARR > 100", True),
    ],
)
def test_unknown_follows_kleene_logic(rule: str, expected: bool) -> None:
    # Health Score is missing (UNKNOWN), ARR is 500.
    company = _company(arr=500)

    assert _matches(rule, company) is expected


# Matcher details


def test_matcher_values_and_fields() -> None:
    tree = parse_rules(
        '"Seats Purchased" > 10 AND (Health Score < 4 OR Tags contains emea) AND Health Score > 1',
        CATALOG,
    )
    matcher = build_matcher(tree, CATALOG, UTC_CONTEXT)
    company = _company(h=3, tags=["EMEA", "Tier 2"], custom={"Seats Purchased": 62000})

    values = matcher.values(company)

    assert values == {"Seats Purchased": "62,000", "Health Score": "3", "Tags": "EMEA, Tier 2"}
    assert matcher.planhat_fields == ["_id", "name", "custom", "h", "tags"]


def test_matcher_values_show_empty() -> None:
    matcher = build_matcher(
        parse_rules("Renewal Date within 5 days", CATALOG), CATALOG, UTC_CONTEXT
    )

    assert matcher.values(_company(renewalDate="undefined")) == {"Renewal Date": "empty"}


def test_build_matcher_rejects_unknown_property() -> None:
    tree = Condition("custom.Deleted", Operator.IS_EMPTY)

    with pytest.raises(UnknownPropertyError):
        build_matcher(tree, CATALOG, UTC_CONTEXT)


def test_matcher_on_many_companies() -> None:
    tree = AllOf(
        (
            Condition("health_score", Operator.LESS_THAN, (4,)),
            Condition("renewal_date", Operator.WITHIN_DAYS, (60,)),
        )
    )
    matcher = build_matcher(tree, CATALOG, UTC_CONTEXT)
    companies = [
        Company(
            id=str(index), name="Acme", fields={"h": index % 10, "renewalDate": _day(index % 90)}
        )
        for index in range(1000)
    ]

    matched = [company.id for company in companies if matcher.matches(company)]

    expected = [str(index) for index in range(1000) if index % 10 < 4 and index % 90 <= 60]
    assert matched == expected


def test_context_now_uses_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    before = datetime.now(tokyo).date()

    context = EvaluationContext.now("Asia/Tokyo")

    after = datetime.now(tokyo).date()
    assert context.timezone == tokyo
    assert context.today in (before, after)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc"])
def test_context_now_rejects_unknown_zone(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        EvaluationContext.now(name)

    assert str(caught.value) == (
        f'Unknown time zone "{name}". Use an IANA name such as "UTC" or "Europe/Stockholm".'
    )


# Warnings


@pytest.mark.parametrize(
    ("rule", "warning"),
    [
        (
            "Health Score less than 40",
            (
                'Health Score is 0-10 in Planhat, so "less than 40" matches every company that has '
                "a Health Score."
            ),
        ),
        (
            "Health Score greater than 40",
            'Health Score is 0-10 in Planhat, so "greater than 40" matches no company.',
        ),
        (
            "Health Score at most 10",
            (
                'Health Score is 0-10 in Planhat, so "at most 10" matches every company that has '
                "a Health Score."
            ),
        ),
        (
            "Health Score at least 11",
            'Health Score is 0-10 in Planhat, so "at least 11" matches no company.',
        ),
        (
            "Health Score less than 0",
            'Health Score is 0-10 in Planhat, so "less than 0" matches no company.',
        ),
        (
            "Health Score greater than -1",
            (
                'Health Score is 0-10 in Planhat, so "greater than -1" matches every company that '
                "has a Health Score."
            ),
        ),
        (
            "Health Score equals 40",
            'Health Score is 0-10 in Planhat, so "equals 40" matches no company.',
        ),
        (
            "Health Score not equals 40",
            (
                'Health Score is 0-10 in Planhat, so "not equals 40" matches every company that has '
                "a Health Score."
            ),
        ),
        (
            "Health Score between 0 and 40",
            (
                'Health Score is 0-10 in Planhat, so "between 0 and 40" matches every company that '
                "has a Health Score."
            ),
        ),
        (
            "Health Score between 20 and 40",
            'Health Score is 0-10 in Planhat, so "between 20 and 40" matches no company.',
        ),
        (
            "Health Score between 5 and 40",
            (
                'Health Score is 0-10 in Planhat, so 40 in "between 5 and 40" is outside that range '
                "and acts like the nearest end of it."
            ),
        ),
        (
            "CSM Score greater than 5",
            'CSM Score is 1-5 in Planhat, so "greater than 5" matches no company.',
        ),
    ],
)
def test_rule_warnings_for_out_of_range_values(rule: str, warning: str) -> None:
    assert rule_warnings(parse_rules(rule, CATALOG), CATALOG) == [warning]


@pytest.mark.parametrize(
    "rule",
    [
        "Health Score less than 4",
        "Health Score between 2 and 8",
        "Health Score is empty",
        "ARR greater than 1000000000",
        '"Seats Purchased" less than -5',
    ],
)
def test_rule_warnings_silent_for_useful_rules(rule: str) -> None:
    assert rule_warnings(parse_rules(rule, CATALOG), CATALOG) == []


def test_rule_warnings_once_per_condition_text() -> None:
    tree = parse_rules(
        "Health Score less than 40 OR (Health Score less than 40 AND CSM Score at least 0)", CATALOG
    )

    warnings = rule_warnings(tree, CATALOG)

    assert len(warnings) == 2
    assert warnings[1].startswith("CSM Score is 1-5 in Planhat")
