"""Tests for the rule text form: parsing, precedence, canonical formatting and error messages."""

from __future__ import annotations

from datetime import date

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
    RuleSyntaxError,
    RuleValue,
    UnknownOperatorError,
    UnknownPropertyError,
)
from segments.text import format_rules, parse_rules

HEALTH_BELOW_40 = Condition("health_score", Operator.LESS_THAN, (40,))
ARR_ABOVE_50000 = Condition("arr", Operator.GREATER_THAN, (50000,))
A = Condition("arr", Operator.GREATER_THAN, (1,))
B = Condition("mrr", Operator.GREATER_THAN, (2,))
C = Condition("health_score", Operator.GREATER_THAN, (3,))


def _catalog() -> PropertyCatalog:
    fields = [
        ("Seats Purchased", "number"),
        ("Plan", "list"),
        ("Reference OK", "checkbox"),
        ("Modules", "multipicklist"),
        ("Days in Phase", "number"),
        ("Health Score", "number"),
        ('Say "hi"', "text"),
    ]
    return PropertyCatalog.builtin().with_custom_fields(
        CustomFieldDefinition(id=name, name=name, type=type_, parent="company")
        for name, type_ in fields
    )


CATALOG = _catalog()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Health Score less than 40", HEALTH_BELOW_40),
        ("Renewal Date within 60 days", Condition("renewal_date", Operator.WITHIN_DAYS, (60,))),
        (
            'Lifecycle Stage equals "Onboarding"',
            Condition("lifecycle_stage", Operator.EQUALS, ("Onboarding",)),
        ),
        (
            "Health Score less than 40 AND ARR greater than 50000",
            AllOf((HEALTH_BELOW_40, ARR_ABOVE_50000)),
        ),
        ("ARR greater than 10000", Condition("arr", Operator.GREATER_THAN, (10000,))),
    ],
)
def test_example_rules_parse_to_trees(text: str, expected: Condition | AllOf) -> None:
    assert parse_rules(text, CATALOG) == expected


@pytest.mark.parametrize(
    ("text", "operator", "values"),
    [
        ("ARR < 5", Operator.LESS_THAN, (5,)),
        ("ARR <= 5", Operator.AT_MOST, (5,)),
        ("ARR at most 5", Operator.AT_MOST, (5,)),
        ("ARR > 5", Operator.GREATER_THAN, (5,)),
        ("ARR more than 5", Operator.GREATER_THAN, (5,)),
        ("ARR >= 5", Operator.AT_LEAST, (5,)),
        ("ARR at least 5", Operator.AT_LEAST, (5,)),
        ("ARR = 5", Operator.EQUALS, (5,)),
        ("ARR == 5", Operator.EQUALS, (5,)),
        ("ARR is 5", Operator.EQUALS, (5,)),
        ("ARR != 5", Operator.NOT_EQUALS, (5,)),
        ("ARR is not 5", Operator.NOT_EQUALS, (5,)),
        ("ARR not equals 5", Operator.NOT_EQUALS, (5,)),
        ("ARR between -2.5 and 3", Operator.BETWEEN, (-2.5, 3)),
        ('ARR > "50000"', Operator.GREATER_THAN, (50000,)),
        ("ARR IS EMPTY", Operator.IS_EMPTY, ()),
        ("ARR is not empty", Operator.IS_NOT_EMPTY, ()),
    ],
)
def test_number_operators_in_words_and_symbols(
    text: str, operator: Operator, values: tuple[RuleValue, ...]
) -> None:
    assert parse_rules(text, CATALOG) == Condition("arr", operator, values)


@pytest.mark.parametrize(
    ("text", "operator", "values"),
    [
        ("Status equals customer", Operator.EQUALS, ("customer",)),
        ('Status is "customer"', Operator.EQUALS, ("customer",)),
        ("Status = customer", Operator.EQUALS, ("customer",)),
        ("Status != lost", Operator.NOT_EQUALS, ("lost",)),
        ("status IS NOT lost", Operator.NOT_EQUALS, ("lost",)),
        ('Status contains "cust"', Operator.CONTAINS, ("cust",)),
        ('Status does not contain "cust"', Operator.DOES_NOT_CONTAIN, ("cust",)),
        ('Status starts with "cu"', Operator.STARTS_WITH, ("cu",)),
        ('Status in ("customer", lost)', Operator.IN, ("customer", "lost")),
        ('Status NOT IN ("customer")', Operator.NOT_IN, ("customer",)),
        ("Status equals 5", Operator.EQUALS, ("5",)),
    ],
)
def test_text_operators(text: str, operator: Operator, values: tuple[str, ...]) -> None:
    assert parse_rules(text, CATALOG) == Condition("status", operator, values)


@pytest.mark.parametrize(
    ("text", "operator", "values"),
    [
        ("Renewal Date within 0 days", Operator.WITHIN_DAYS, (0,)),
        ("Renewal Date within next 30 days", Operator.WITHIN_DAYS, (30,)),
        ("Renewal Date within 1 day", Operator.WITHIN_DAYS, (1,)),
        ("Renewal Date within last 7 days", Operator.WITHIN_LAST_DAYS, (7,)),
        ("Renewal Date within the last 7 days", Operator.WITHIN_LAST_DAYS, (7,)),
        ("Renewal Date before 2026-01-15", Operator.BEFORE, (date(2026, 1, 15),)),
        ('Renewal Date after "2026-01-15"', Operator.AFTER, (date(2026, 1, 15),)),
        ("Renewal Date on 2024-02-29", Operator.ON, (date(2024, 2, 29),)),
        (
            "Renewal Date between 2026-01-01 and 2026-03-31",
            Operator.BETWEEN,
            (date(2026, 1, 1), date(2026, 3, 31)),
        ),
        ("Renewal Date more than 90 days ago", Operator.MORE_THAN_DAYS_AGO, (90,)),
        ("Renewal Date more than 90 days from now", Operator.MORE_THAN_DAYS_FROM_NOW, (90,)),
        ("renewalDate is empty", Operator.IS_EMPTY, ()),
    ],
)
def test_date_operators(text: str, operator: Operator, values: tuple[RuleValue, ...]) -> None:
    assert parse_rules(text, CATALOG) == Condition("renewal_date", operator, values)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"Reference OK" is true', Condition("custom.Reference OK", Operator.IS_TRUE)),
        ("Reference OK is false", Condition("custom.Reference OK", Operator.IS_FALSE)),
        ("Tags contains EMEA", Condition("tags", Operator.CONTAINS, ("EMEA",))),
        (
            'Tags contains any of ("EMEA", "APAC")',
            Condition("tags", Operator.CONTAINS_ANY_OF, ("EMEA", "APAC")),
        ),
        ("Tags contains all of (EMEA)", Condition("tags", Operator.CONTAINS_ALL_OF, ("EMEA",))),
        (
            'Tags does not contain "Churned"',
            Condition("tags", Operator.DOES_NOT_CONTAIN, ("Churned",)),
        ),
        (
            '"Seats Purchased" greater than 100',
            Condition("custom.Seats Purchased", Operator.GREATER_THAN, (100,)),
        ),
        (
            "Seats Purchased > 100",
            Condition("custom.Seats Purchased", Operator.GREATER_THAN, (100,)),
        ),
        (
            "custom.Seats Purchased > 100",
            Condition("custom.Seats Purchased", Operator.GREATER_THAN, (100,)),
        ),
        ("Days in Phase >= 30", Condition("custom.Days in Phase", Operator.AT_LEAST, (30,))),
        ('"custom.Health Score" < 4', Condition("custom.Health Score", Operator.LESS_THAN, (4,))),
        ("Health Score < 4", Condition("health_score", Operator.LESS_THAN, (4,))),
        (
            '"Say \\"hi\\"" equals "a\\\\b"',
            Condition('custom.Say "hi"', Operator.EQUALS, ("a\\b",)),
        ),
    ],
)
def test_checkbox_list_and_custom_properties(text: str, expected: Condition) -> None:
    assert parse_rules(text, CATALOG) == expected


def test_not_binds_tighter_than_and_then_or() -> None:
    tree = parse_rules("NOT ARR > 1 AND MRR > 2 OR Health Score > 3", CATALOG)

    assert tree == AnyOf((AllOf((Not(A), B)), C))


def test_flat_chain_is_one_group() -> None:
    tree = parse_rules("ARR > 1 and MRR > 2 AND Health Score > 3", CATALOG)

    assert tree == AllOf((A, B, C))


def test_parentheses_keep_nested_group() -> None:
    tree = parse_rules("ARR > 1 AND (MRR > 2 AND Health Score > 3)", CATALOG)

    assert tree == AllOf((A, AllOf((B, C))))


def test_parentheses_around_one_rule_are_dropped() -> None:
    assert parse_rules("((ARR > 1))", CATALOG) == A


def test_not_applies_to_group() -> None:
    tree = parse_rules("not (ARR > 1 or MRR > 2)", CATALOG)

    assert tree == Not(AnyOf((A, B)))


def test_between_and_is_not_a_combinator() -> None:
    tree = parse_rules("ARR between 1 and 2 AND MRR > 2", CATALOG)

    assert tree == AllOf((Condition("arr", Operator.BETWEEN, (1, 2)), B))


def test_format_writes_canonical_form() -> None:
    tree = AnyOf(
        (
            AllOf((Not(A), Condition("status", Operator.IN, ("customer", 'Say "x"')))),
            Not(AllOf((B, Condition("renewal_date", Operator.MORE_THAN_DAYS_AGO, (5,))))),
            Condition("custom.Health Score", Operator.AT_MOST, (2.5,)),
            Condition("custom.Plan", Operator.EQUALS, ("Pro\\Max",)),
        )
    )

    text = format_rules(tree, CATALOG)

    assert text == (
        '(NOT ARR greater than 1 AND Status in ("customer", "Say \\"x\\"")) OR '
        "NOT (MRR greater than 2 AND Renewal Date more than 5 days ago) OR "
        '"custom.Health Score" at most 2.5 OR '
        'Plan equals "Pro\\\\Max"'
    )


@pytest.mark.parametrize(
    "text",
    [
        "health score < 40 and arr > 50000",
        "status = customer or (tags contains emea and not renewalDate is empty)",
        "Seats Purchased between 1 and 1e3",
        "NOT NOT ARR > 1",
        "Renewal Date within the next 5 days",
    ],
)
def test_format_of_parsed_text_is_fixed_point(text: str) -> None:
    canonical = format_rules(parse_rules(text, CATALOG), CATALOG)

    assert format_rules(parse_rules(canonical, CATALOG), CATALOG) == canonical


def test_format_quotes_label_extended_by_custom() -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields(
        [CustomFieldDefinition(id="1", name="Health Score less", type="text", parent="company")]
    )
    tree = Condition("health_score", Operator.LESS_THAN, (4,))

    text = format_rules(tree, catalog)

    assert text == '"Health Score" less than 4'
    assert parse_rules(text, catalog) == tree


def test_format_unknown_key_writes_quoted_key() -> None:
    tree = Condition("custom.Deleted", Operator.IS_EMPTY)

    assert format_rules(tree, CATALOG) == '"custom.Deleted" is empty'


# Error messages


def test_unknown_property_suggests_closest() -> None:
    with pytest.raises(UnknownPropertyError) as caught:
        parse_rules("Helth Score less than 40", CATALOG)

    assert str(caught.value) == 'Unknown property "Helth Score". Did you mean "Health Score"?'
    assert caught.value.suggestion == "Health Score"


def test_unknown_property_with_bad_operator_names_only_property() -> None:
    with pytest.raises(UnknownPropertyError) as caught:
        parse_rules("Helth Score lesser than 40", CATALOG)

    assert str(caught.value) == 'Unknown property "Helth Score". Did you mean "Health Score"?'


def test_unknown_quoted_property_without_suggestion() -> None:
    with pytest.raises(UnknownPropertyError) as caught:
        parse_rules('"Qwxyz" is empty', CATALOG)

    assert str(caught.value).startswith('Unknown property "Qwxyz". Use a built-in property')


def test_unknown_operator_suggests_closest() -> None:
    with pytest.raises(UnknownOperatorError) as caught:
        parse_rules("Health Score lesser than 40", CATALOG)

    assert str(caught.value) == (
        'Unknown operator "lesser than" after Health Score. Did you mean "less than"?'
    )


def test_unknown_operator_for_date_suggests_within() -> None:
    with pytest.raises(UnknownOperatorError) as caught:
        parse_rules("Renewal Date withn 30 days", CATALOG)

    assert str(caught.value) == (
        'Unknown operator "withn" after Renewal Date. Did you mean "within N days"?'
    )


def test_unknown_operator_without_suggestion_lists_choices() -> None:
    with pytest.raises(UnknownOperatorError) as caught:
        parse_rules("Reference OK qqqqq", CATALOG)

    assert str(caught.value) == (
        'Unknown operator "qqqqq" after Reference OK. '
        "Use one of: is true, is false, is empty, is not empty."
    )


def test_operator_of_wrong_type_lists_valid_ones() -> None:
    with pytest.raises(UnknownOperatorError) as caught:
        parse_rules('Health Score contains "4"', CATALOG)

    assert str(caught.value) == (
        '"contains" does not apply to Health Score, which is a number. Use one of: less than, '
        "at most, greater than, at least, equals, not equals, between, is empty, is not empty."
    )


def test_symbol_of_wrong_type_names_symbol() -> None:
    with pytest.raises(UnknownOperatorError) as caught:
        parse_rules("Renewal Date = 2026-01-01", CATALOG)

    assert str(caught.value).startswith('"=" does not apply to Renewal Date, which is a date.')


def test_missing_operator_is_syntax_error() -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rules("Health Score 4", CATALOG)

    assert caught.value.column == 14
    assert "Expected an operator after Health Score at column 14" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "ARR greater than lots",
            'ARR is a number, so "greater than" needs a number, but got "lots" at column 18.',
        ),
        (
            "Renewal Date before 2026-02-30",
            '"2026-02-30" at column 21 is not a real calendar date. Check the month and day.',
        ),
        (
            "Renewal Date before tomorrow",
            (
                'Renewal Date is a date, so "before" needs a date written YYYY-MM-DD, '
                'but got "tomorrow" at column 21.'
            ),
        ),
        (
            "ARR between 50 and 10",
            (
                "ARR between 50 and 10 can match nothing, because 50 is above 10. "
                'Write "between 10 and 50".'
            ),
        ),
        (
            "Renewal Date between 2026-03-01 and 2026-01-01",
            (
                "Renewal Date between 2026-03-01 and 2026-01-01 can match nothing, because "
                '2026-03-01 is above 2026-01-01. Write "between 2026-01-01 and 2026-03-01".'
            ),
        ),
        (
            "Status in ()",
            'Status "in" needs at least one value inside the parentheses at column 11.',
        ),
        (
            "Renewal Date within -3 days",
            '"within" needs a whole number of days, 0 or more, but got "-3" at column 21.',
        ),
        (
            "Renewal Date within 1.5 days",
            '"within" needs a whole number of days, 0 or more, but got "1.5" at column 21.',
        ),
        (
            'Status equals ""',
            (
                'Status "equals" needs a non-blank value at column 15. '
                'To match companies without a Status, write "Status is empty".'
            ),
        ),
        ("ARR > 1e999", 'ARR is a number, so ">" needs a number, but got "1e999" at column 7.'),
        (
            "ARR > 1" + "0" * 400,
            '"greater than" on ARR takes one number, but got 1' + "0" * 400 + ".",
        ),
    ],
)
def test_bad_values_are_named(text: str, message: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_rules(text, CATALOG)

    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("(ARR > 1 AND MRR > 2", 'Missing ")" to close the "(" at column 1.', 1),
        ("ARR > 1)", 'Unexpected ")" at column 8 with no matching "(".', 8),
        (
            "(ARR > 1 MRR > 2)",
            (
                'Unexpected "MRR" at column 10. Expected AND, OR or ")" after a rule, '
                "and text with spaces in double quotes."
            ),
            10,
        ),
        (
            "ARR > 1 extra",
            (
                'Unexpected "extra" at column 9 after a complete rule. Join rules with AND or OR, '
                "and put text with spaces in double quotes."
            ),
            9,
        ),
        (
            "Status equals at risk",
            (
                'Unexpected "risk" at column 18 after a complete rule. Join rules with AND or OR, '
                "and put text with spaces in double quotes."
            ),
            18,
        ),
        ("ARR > 1 AND", 'Expected a rule after "AND", but the text ends there.', None),
        ("ARR > 1 AND OR MRR > 2", 'Expected a rule at column 13, but found "OR".', 13),
        (
            'Status equals "open',
            'The quote at column 15 is never closed. Add a closing " after the text.',
            15,
        ),
        ("ARR >", 'ARR ">" needs a number after it, but the text ends there.', None),
        (
            "Status in customer",
            'Expected "(" after "in" at column 11, as in: Status in ("A", "B").',
            11,
        ),
        (
            'Status in ("a" "b")',
            (
                'Expected "," or ")" at column 16 in the list after "in", and text with spaces in '
                "double quotes."
            ),
            16,
        ),
        ("Renewal Date within 5", 'Expected "days" after "within 5" at the end of the text.', None),
        (
            "Renewal Date more than 5 days",
            'Expected "ago" or "from now" after "more than 5 days" at the end of the text.',
            None,
        ),
        (
            "ARR between 1 or 2",
            (
                'Expected "and" between the two values of "between" at column 15, '
                "as in: ARR between 3 and 7."
            ),
            15,
        ),
        ("   ", "The rule text is empty. Write a rule such as: Health Score less than 4.", None),
        (
            "ARR ! 5",
            (
                'Unexpected "!" at column 5. Use "!=" for not equals, and put text with special '
                "characters in double quotes."
            ),
            5,
        ),
        ("ARR > 1 AND\n(MRR > 2", 'Missing ")" to close the "(" at line 2, column 1.', 13),
    ],
)
def test_syntax_errors_say_where(text: str, message: str, column: int | None) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rules(text, CATALOG)

    assert str(caught.value) == message
    assert caught.value.column == column


def test_every_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_rules("Nope is empty", CATALOG)

    assert issubclass(RuleError, ValueError)


def test_thousands_separator_gets_a_clear_error() -> None:
    catalog = PropertyCatalog.builtin()

    with pytest.raises(InvalidValueError) as raised:
        parse_rules("ARR greater than 50,000", catalog)

    assert 'Write numbers without thousands separators: "50000", not "50,000"' in str(raised.value)
