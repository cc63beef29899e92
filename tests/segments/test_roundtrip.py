"""Property tests: generated rule trees survive the text form and the JSON form unchanged."""

from __future__ import annotations

import json
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from planhat.models import CustomFieldDefinition
from segments.properties import Property, PropertyCatalog, ValueType
from segments.rules import (
    DAY_COUNT_OPERATORS,
    OPERATORS_BY_TYPE,
    AllOf,
    AnyOf,
    Condition,
    Not,
    Operator,
    RuleNode,
    RuleValue,
    rules_from_json,
    rules_to_json,
)
from segments.text import format_rules, parse_rules

# Custom fields of every type, with names that need quoting, contain operator words or keywords,
# or collide with built-in labels, keys and aliases.
CUSTOM_FIELDS = [
    ("Seats Purchased", "number"),
    ("Plan", "list"),
    ("Reference OK", "checkbox"),
    ("Contract Signed", "date"),
    ("Modules", "multipicklist"),
    ("Executive Sponsor", "team member"),
    ("Score (0-100)", "rating"),
    ('Say "hi" \\ bye', "text"),
    ("Days in Phase", "number"),
    ("Is Active", "checkbox"),
    ("AND", "text"),
    ("not", "number"),
    ("Health Score", "number"),
    ("status", "text"),
    ("arr", "date"),
    ("renewalDate", "multipicklist"),
    ("health", "text"),
    ("Renewal Date Notes", "text"),
    ("Ünïcødé Fïeld ✓", "day"),
    ("custom.Nested", "number"),
    ("2025 Target", "number"),
]

CATALOG = PropertyCatalog.builtin().with_custom_fields(
    CustomFieldDefinition(id=f"f{index}", name=name, type=type_, parent="company")
    for index, (name, type_) in enumerate(CUSTOM_FIELDS)
)

texts = st.text(min_size=1, max_size=12).filter(lambda text: bool(text.strip()))
numbers = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False, allow_infinity=False),
)
day_counts = st.integers(min_value=0, max_value=100_000)
dates = st.dates()


def _ordered_pair(values: st.SearchStrategy[RuleValue]) -> st.SearchStrategy[tuple[RuleValue, ...]]:
    return st.tuples(values, values).map(lambda pair: tuple(sorted(pair)))


def _values_for(prop: Property, operator: Operator) -> st.SearchStrategy[tuple[RuleValue, ...]]:
    if operator in (Operator.IS_TRUE, Operator.IS_FALSE, Operator.IS_EMPTY, Operator.IS_NOT_EMPTY):
        return st.just(())
    if operator in DAY_COUNT_OPERATORS:
        return day_counts.map(lambda count: (count,))
    if operator in (Operator.BEFORE, Operator.AFTER, Operator.ON):
        return dates.map(lambda day: (day,))
    if operator is Operator.BETWEEN:
        return _ordered_pair(dates if prop.type is ValueType.DATE else numbers)
    if operator in (
        Operator.IN,
        Operator.NOT_IN,
        Operator.CONTAINS_ANY_OF,
        Operator.CONTAINS_ALL_OF,
    ):
        return st.lists(texts, min_size=1, max_size=4).map(tuple)
    if prop.type is ValueType.NUMBER:
        return numbers.map(lambda number: (number,))
    return texts.map(lambda text: (text,))


@st.composite
def conditions(draw: st.DrawFn, catalog: PropertyCatalog = CATALOG) -> Condition:
    prop = draw(st.sampled_from(catalog.properties()))
    operator = draw(st.sampled_from(OPERATORS_BY_TYPE[prop.type]))
    values = draw(_values_for(prop, operator))
    return Condition(prop.key, operator, values)


def _groups(children: st.SearchStrategy[RuleNode]) -> st.SearchStrategy[RuleNode]:
    several = st.lists(children, min_size=2, max_size=4).map(tuple)
    return st.one_of(
        several.map(AllOf),
        several.map(AnyOf),
        children.map(Not),
    )


rule_trees = st.recursive(conditions(), _groups, max_leaves=10)


@settings(max_examples=400)
@given(rule_trees)
def test_text_round_trip(tree: RuleNode) -> None:
    text = format_rules(tree, CATALOG)

    assert parse_rules(text, CATALOG) == tree


@settings(max_examples=200)
@given(rule_trees)
def test_canonical_text_is_fixed_point(tree: RuleNode) -> None:
    text = format_rules(tree, CATALOG)

    again = format_rules(parse_rules(text, CATALOG), CATALOG)

    assert again == text


@settings(max_examples=400)
@given(rule_trees)
def test_json_round_trip(tree: RuleNode) -> None:
    data = rules_to_json(tree)

    assert rules_from_json(data) == tree
    assert rules_from_json(json.loads(json.dumps(data))) == tree


@settings(max_examples=200)
@given(rule_trees)
def test_json_is_plain_and_stable(tree: RuleNode) -> None:
    data = rules_to_json(tree)

    encoded = json.dumps(data, sort_keys=True)

    assert (
        json.dumps(rules_to_json(rules_from_json(json.loads(encoded))), sort_keys=True) == encoded
    )


custom_names = st.text(min_size=1, max_size=15).filter(lambda name: name == name.strip() and name)
planhat_types = st.sampled_from(["number", "text", "date", "checkbox", "multipicklist", "list"])


@settings(max_examples=200)
@given(
    st.lists(st.tuples(custom_names, planhat_types), min_size=1, max_size=6),
    st.data(),
)
def test_text_round_trip_with_generated_custom_names(
    fields: list[tuple[str, str]], data: st.DataObject
) -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields(
        CustomFieldDefinition(id=f"f{index}", name=name, type=type_, parent="company")
        for index, (name, type_) in enumerate(fields)
    )
    tree = data.draw(st.recursive(conditions(catalog), _groups, max_leaves=4))

    text = format_rules(tree, catalog)

    assert parse_rules(text, catalog) == tree


def test_round_trip_keeps_exact_values() -> None:
    tree = AllOf(
        (
            Condition("arr", Operator.BETWEEN, (-0.1, 1e16)),
            Condition("status", Operator.IN, ('a "quoted" \\ value', "ünïcødé\nline")),
            Condition("renewal_date", Operator.BETWEEN, (date(1, 1, 1), date(9999, 12, 31))),
        )
    )

    text = format_rules(tree, CATALOG)

    assert parse_rules(text, CATALOG) == tree
    # "Renewal Date" is quoted because the custom field "Renewal Date Notes" starts with it.
    assert text == (
        "ARR between -0.1 and 1e+16 AND "
        'Status in ("a \\"quoted\\" \\\\ value", "ünïcødé\nline") AND '
        '"Renewal Date" between 0001-01-01 and 9999-12-31'
    )
