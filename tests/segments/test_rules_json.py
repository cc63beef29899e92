"""Tests for the rule tree model: JSON form, JSON errors, validation and property order."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from planhat.models import CustomFieldDefinition
from segments.properties import PropertyCatalog
from segments.rules import (
    AllOf,
    AnyOf,
    Condition,
    InvalidValueError,
    Not,
    Operator,
    RuleError,
    UnknownOperatorError,
    UnknownPropertyError,
    rule_properties,
    rules_from_json,
    rules_to_json,
    validate_rules,
)

HEALTH_BELOW_4 = Condition("health_score", Operator.LESS_THAN, (4,))
RENEWAL_SOON = Condition("renewal_date", Operator.WITHIN_DAYS, (60,))
ONBOARDING = Condition("lifecycle_stage", Operator.EQUALS, ("Onboarding",))


def _catalog() -> PropertyCatalog:
    return PropertyCatalog.builtin().with_custom_fields(
        [CustomFieldDefinition(id="f1", name="Seats Purchased", type="number", parent="company")]
    )


def test_to_json_shape() -> None:
    tree = AnyOf(
        (
            AllOf((HEALTH_BELOW_4, Not(ONBOARDING))),
            Condition("renewal_date", Operator.BETWEEN, (date(2026, 1, 1), date(2026, 3, 31))),
        )
    )

    data = rules_to_json(tree)

    assert data == {
        "any": [
            {
                "all": [
                    {"property": "health_score", "operator": "less_than", "values": [4]},
                    {
                        "not": {
                            "property": "lifecycle_stage",
                            "operator": "equals",
                            "values": ["Onboarding"],
                        }
                    },
                ]
            },
            {
                "property": "renewal_date",
                "operator": "between",
                "values": ["2026-01-01", "2026-03-31"],
            },
        ]
    }


def test_json_round_trip_through_text() -> None:
    tree = AllOf(
        (
            HEALTH_BELOW_4,
            Condition("renewal_date", Operator.ON, (date(2026, 2, 28),)),
            Condition("tags", Operator.CONTAINS_ALL_OF, ("EMEA", 'Tier "2"')),
            Condition("arr", Operator.BETWEEN, (-1.5, 2e20)),
            Condition("status", Operator.IS_NOT_EMPTY, ()),
        )
    )

    decoded = rules_from_json(json.loads(json.dumps(rules_to_json(tree))))

    assert decoded == tree


def test_from_json_reads_dates_by_operator() -> None:
    data = {"property": "renewal_date", "operator": "before", "values": ["2026-04-01"]}

    condition = rules_from_json(data)

    assert condition == Condition("renewal_date", Operator.BEFORE, (date(2026, 4, 1),))


def test_from_json_keeps_equals_text_as_text() -> None:
    data = {"property": "status", "operator": "equals", "values": ["2026-04-01"]}

    condition = rules_from_json(data)

    assert condition == Condition("status", Operator.EQUALS, ("2026-04-01",))


def test_from_json_allows_missing_values_for_valueless_operator() -> None:
    condition = rules_from_json({"property": "status", "operator": "is_empty"})

    assert condition == Condition("status", Operator.IS_EMPTY, ())


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([], "expected an object"),
        ({}, 'exactly one of "all", "any", "not"'),
        ({"all": [], "any": []}, 'exactly one of "all", "any", "not"'),
        ({"all": [{"property": "arr", "operator": "is_empty"}]}, "at least two rules"),
        ({"any": "x"}, "at least two rules"),
        ({"not": 5}, "rules.not: expected an object"),
        ({"property": "", "operator": "is_empty"}, '"property" must be a non-empty string'),
        ({"property": "arr", "operator": 3}, '"operator" must be a string'),
        ({"property": "arr", "operator": "is_empty", "extra": 1}, 'unexpected keys "extra"'),
        ({"property": "arr", "operator": "less_than", "values": 4}, '"values" must be a list'),
    ],
)
def test_from_json_rejects_malformed_shape(data: Any, fragment: str) -> None:
    with pytest.raises(RuleError) as caught:
        rules_from_json(data)

    assert fragment in str(caught.value)


def test_from_json_error_names_nested_path() -> None:
    data = {
        "all": [
            {"property": "arr", "operator": "is_empty"},
            {"not": {"property": "arr", "operator": "less_than", "values": ["x"]}},
        ]
    }

    with pytest.raises(InvalidValueError) as caught:
        rules_from_json(data)

    assert "rules.all[1].not" in str(caught.value)
    assert 'takes one number, but got "x"' in str(caught.value)


def test_from_json_unknown_operator_suggests_closest() -> None:
    data = {"property": "arr", "operator": "less_then", "values": [4]}

    with pytest.raises(UnknownOperatorError) as caught:
        rules_from_json(data)

    assert str(caught.value) == (
        'Unknown operator "less_then" in rule JSON at rules. Did you mean "less_than"?'
    )


@pytest.mark.parametrize(
    ("operator", "values", "fragment"),
    [
        ("less_than", [], "takes one number, but got no value"),
        ("less_than", [1, 2], "takes one number, but got 2 values"),
        ("less_than", [True], "values must be numbers or strings, but got a boolean"),
        ("less_than", [None], "but got null"),
        ("less_than", [10**400], "takes one number"),
        ("between", [10, 5], "10 is above 5"),
        ("between", ["2026-03-01", "2026-01-01"], "2026-03-01 is above 2026-01-01"),
        ("between", [1, "2026-01-01"], "takes two numbers or two dates"),
        ("before", ["2026-02-30"], '"2026-02-30" is not a valid date'),
        ("before", ["03/01/2026"], '"03/01/2026" is not a valid date'),
        ("within_days", [-1], "whole number of days"),
        ("within_days", [1.5], "whole number of days"),
        ("in", [], "one or more non-blank text values"),
        ("in", ["a", " "], "one or more non-blank text values"),
        ("contains", [""], "one non-blank text value"),
        ("is_true", [1], "takes no value"),
    ],
)
def test_from_json_rejects_bad_values(operator: str, values: list[Any], fragment: str) -> None:
    data = {"property": "arr", "operator": operator, "values": values}

    with pytest.raises(InvalidValueError) as caught:
        rules_from_json(data)

    assert fragment in str(caught.value)


def test_from_json_rejects_nan() -> None:
    data = json.loads('{"property": "arr", "operator": "equals", "values": [NaN]}')

    with pytest.raises(InvalidValueError):
        rules_from_json(data)


def test_group_needs_two_children() -> None:
    with pytest.raises(RuleError):
        AllOf((HEALTH_BELOW_4,))


def test_group_accepts_list_children() -> None:
    group = AnyOf([HEALTH_BELOW_4, RENEWAL_SOON])  # type: ignore[arg-type]

    assert group == AnyOf((HEALTH_BELOW_4, RENEWAL_SOON))


def test_validate_accepts_known_rules() -> None:
    tree = AllOf((HEALTH_BELOW_4, Condition("custom.Seats Purchased", Operator.AT_LEAST, (10,))))

    validate_rules(tree, _catalog())


def test_validate_unknown_property_suggests_label() -> None:
    tree = Condition("custom.Seats Purchase", Operator.AT_LEAST, (10,))

    with pytest.raises(UnknownPropertyError) as caught:
        validate_rules(tree, _catalog())

    assert str(caught.value) == (
        'Unknown property "custom.Seats Purchase". Did you mean "Seats Purchased"?'
    )


def test_validate_operator_of_wrong_type() -> None:
    tree = Not(Condition("health_score", Operator.CONTAINS, ("4",)))

    with pytest.raises(UnknownOperatorError) as caught:
        validate_rules(tree, _catalog())

    message = str(caught.value)
    assert message.startswith('"contains" does not apply to Health Score, which is a number.')
    assert "less than, at most, greater than" in message


@pytest.mark.parametrize(
    "condition",
    [
        Condition("status", Operator.EQUALS, (5,)),
        Condition("arr", Operator.EQUALS, ("5",)),
        Condition("arr", Operator.BETWEEN, (date(2026, 1, 1), date(2026, 2, 1))),
        Condition("renewal_date", Operator.BETWEEN, (1, 2)),
    ],
)
def test_validate_value_kind_must_match_property_type(condition: Condition) -> None:
    with pytest.raises(InvalidValueError):
        validate_rules(condition, _catalog())


def test_rule_properties_in_first_appearance_order() -> None:
    tree = AnyOf(
        (
            AllOf((RENEWAL_SOON, HEALTH_BELOW_4)),
            Not(Condition("health_score", Operator.GREATER_THAN, (8,))),
            ONBOARDING,
        )
    )

    keys = rule_properties(tree)

    assert keys == ["renewal_date", "health_score", "lifecycle_stage"]
