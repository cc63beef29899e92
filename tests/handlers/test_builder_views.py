"""The rule-builder modal's pure parts: Block Kit it draws, state it reads back, rules it builds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from handlers.builder import FormProblem, condition_from_row, errors_by_block, rules_from_form
from handlers.views.builder import (
    ADD_ROW_ACTION,
    MAX_METADATA_LENGTH,
    MAX_ROWS,
    MAX_VIEW_BLOCKS,
    NAME_BLOCK,
    PREVIEW_BLOCK,
    RULES_TEXT_BLOCK,
    RULES_TEXT_EXAMPLE,
    SAVED_RULES_BLOCK,
    BuilderForm,
    MatchMode,
    ModalContext,
    Row,
    ValueBase,
    ValueLayout,
    builder_view,
    conditions_for_rows,
    encode_metadata,
    operator_block_id,
    preview_audience_blocks,
    property_block_id,
    property_option_groups,
    read_form,
    row_from_condition,
    settle_rows,
    value_layout,
)
from planhat.models import CustomFieldDefinition
from segments.audience import Audience, MatchedCompany, UnmappedCompany
from segments.channels import UnmappedKind
from segments.ports import DeliveryTarget, QualifyingCompany
from segments.properties import PropertyCatalog, ValueType
from segments.rules import (
    OPERATORS_BY_TYPE,
    AllOf,
    AnyOf,
    Condition,
    Not,
    Operator,
    operator_label,
)
from segments.text import parse_rules

BUILTIN = PropertyCatalog.builtin()
CHOICES = {"lifecycle_stage": ["Active", "Onboarding", "Renewal"], "tags": ["API", "Strategic"]}


def catalog_with(*fields: tuple[str, str]) -> PropertyCatalog:
    definitions = [
        CustomFieldDefinition(id=f"f{index}", name=name, type=kind, parent="company")
        for index, (name, kind) in enumerate(fields)
    ]
    return BUILTIN.with_custom_fields(definitions)


def slack_state(
    view: Mapping[str, Any], answers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return `view.state.values` as Slack sends it: every input block with its current value.

    Inputs missing from `answers` keep their initial value. Each entry of `answers` is a string,
    a list of strings for multi-selects, or None for an empty input.
    """
    answers = answers or {}
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        kind = element["type"]
        state: dict[str, Any] = {"type": kind}
        if block["block_id"] in answers:
            answer = answers[block["block_id"]]
            if kind in ("static_select", "external_select", "radio_buttons"):
                state["selected_option"] = (
                    None
                    if answer is None
                    else {"text": {"type": "plain_text", "text": answer}, "value": answer}
                )
            elif kind == "multi_static_select":
                state["selected_options"] = [
                    {"text": {"type": "plain_text", "text": item}, "value": item}
                    for item in answer or []
                ]
            elif kind == "datepicker":
                state["selected_date"] = answer
            else:
                state["value"] = answer
        elif kind in ("static_select", "external_select", "radio_buttons"):
            state["selected_option"] = element.get("initial_option")
        elif kind == "multi_static_select":
            state["selected_options"] = element.get("initial_options", [])
        elif kind == "datepicker":
            state["selected_date"] = element.get("initial_date")
        else:
            state["value"] = element.get("initial_value")
        values[block["block_id"]] = {element["action_id"]: state}
    return values


def submitted(view: Mapping[str, Any], answers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the view as a payload carries it, with its state filled in."""
    return {**view, "state": {"values": slack_state(view, answers)}}


def redraw(
    view: Mapping[str, Any], context: ModalContext, answers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read `view` back with `answers` applied and draw it again, as an action handler does."""
    form = settle_rows(read_form(submitted(view, answers)), context.catalog)
    return builder_view(form, context)


def block(view: Mapping[str, Any], block_id: str) -> dict[str, Any]:
    return next(item for item in view["blocks"] if item.get("block_id") == block_id)


def input_ids(view: Mapping[str, Any]) -> list[str]:
    return [item["block_id"] for item in view["blocks"] if item["type"] == "input"]


def row_block_ids(view: Mapping[str, Any], row_id: str) -> list[str]:
    return [item for item in input_ids(view) if item.startswith(f"rule:{row_id}:")]


def option_texts(element: Mapping[str, Any]) -> list[str]:
    return [item["text"]["text"] for item in element.get("options", [])]


def walk_options(node: Any) -> Iterator[dict[str, Any]]:
    """Yield every option object anywhere in a view."""
    if isinstance(node, dict):
        if "value" in node and isinstance(node.get("text"), dict):
            yield node
        for value in node.values():
            yield from walk_options(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_options(item)


def one_row_form(**row: Any) -> BuilderForm:
    return BuilderForm(name="Renewals", rows=(Row(id="r1", **row),), next_row=2)


def drawn(form: BuilderForm, context: ModalContext | None = None) -> dict[str, Any]:
    return builder_view(form, context or ModalContext(catalog=BUILTIN, choices=CHOICES))


# Operators and value inputs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value_type"),
    [
        ("health_score", ValueType.NUMBER),
        ("renewal_date", ValueType.DATE),
        ("country", ValueType.TEXT),
        ("tags", ValueType.LIST),
    ],
)
def test_operator_options_follow_property_type(key: str, value_type: ValueType) -> None:
    view = drawn(one_row_form(property_key=key, value_type=value_type))

    element = block(view, operator_block_id("r1", 0))["element"]

    assert option_texts(element) == [operator_label(op) for op in OPERATORS_BY_TYPE[value_type]]


def test_operator_options_for_checkbox_custom_field() -> None:
    catalog = catalog_with(("Reference OK", "checkbox"))
    form = one_row_form(property_key="custom.Reference OK", value_type=ValueType.CHECKBOX)

    element = block(drawn(form, ModalContext(catalog=catalog)), operator_block_id("r1", 0))[
        "element"
    ]

    assert option_texts(element) == ["is true", "is false", "is empty", "is not empty"]


def test_property_and_operator_blocks_dispatch_actions() -> None:
    view = drawn(one_row_form(property_key="arr", value_type=ValueType.NUMBER))

    assert block(view, property_block_id("r1"))["dispatch_action"] is True
    assert block(view, operator_block_id("r1", 0))["dispatch_action"] is True


@pytest.mark.parametrize(
    ("key", "operator", "element_type"),
    [
        ("arr", Operator.GREATER_THAN, "number_input"),
        ("renewal_date", Operator.WITHIN_DAYS, "number_input"),
        ("renewal_date", Operator.BEFORE, "datepicker"),
        ("country", Operator.CONTAINS, "plain_text_input"),
        ("lifecycle_stage", Operator.EQUALS, "static_select"),
        ("lifecycle_stage", Operator.IN, "multi_static_select"),
        ("tags", Operator.CONTAINS_ANY_OF, "multi_static_select"),
        ("country", Operator.IN, "plain_text_input"),
    ],
)
def test_value_element_fits_type_and_operator(
    key: str, operator: Operator, element_type: str
) -> None:
    prop = BUILTIN.get(key)
    form = one_row_form(property_key=key, value_type=prop.type, operator=operator)

    view = drawn(form)

    values = [item for item in row_block_ids(view, "r1") if ".0." in item]
    assert len(values) == 1
    assert block(view, values[0])["element"]["type"] == element_type


def test_number_input_allows_decimals() -> None:
    view = drawn(
        one_row_form(property_key="arr", value_type=ValueType.NUMBER, operator=Operator.LESS_THAN)
    )

    element = block(view, "rule:r1:value.0.number")["element"]

    assert element["is_decimal_allowed"] is True
    assert "min_value" not in element


def test_day_count_input_takes_whole_days_from_zero() -> None:
    form = one_row_form(
        property_key="renewal_date", value_type=ValueType.DATE, operator=Operator.WITHIN_DAYS
    )

    element = block(drawn(form), "rule:r1:value.0.days")["element"]

    assert element["is_decimal_allowed"] is False
    assert element["min_value"] == "0"


def test_between_gets_two_inputs() -> None:
    form = one_row_form(
        property_key="renewal_date",
        value_type=ValueType.DATE,
        operator=Operator.BETWEEN,
        values=("2026-01-01", "2026-03-31"),
    )

    view = drawn(form)

    low = block(view, "rule:r1:low.0.date")["element"]
    high = block(view, "rule:r1:high.0.date")["element"]
    assert low["initial_date"] == "2026-01-01"
    assert high["initial_date"] == "2026-03-31"


@pytest.mark.parametrize("operator", [Operator.IS_EMPTY, Operator.IS_NOT_EMPTY])
def test_emptiness_operators_take_no_value(operator: Operator) -> None:
    view = drawn(one_row_form(property_key="arr", value_type=ValueType.NUMBER, operator=operator))

    assert row_block_ids(view, "r1") == [property_block_id("r1"), operator_block_id("r1", 0)]


def test_text_value_without_choices() -> None:
    form = one_row_form(
        property_key="lifecycle_stage",
        value_type=ValueType.TEXT,
        operator=Operator.EQUALS,
        values=("Active",),
    )

    view = drawn(form, ModalContext(catalog=BUILTIN))

    assert block(view, "rule:r1:value.0.text")["element"]["initial_value"] == "Active"


def test_select_keeps_saved_value_not_seen_in_data() -> None:
    form = one_row_form(
        property_key="lifecycle_stage",
        value_type=ValueType.TEXT,
        operator=Operator.EQUALS,
        values=("Churned",),
    )

    view = drawn(form)

    value_id = next(item for item in row_block_ids(view, "r1") if ".0.pick-" in item)
    element = block(view, value_id)["element"]
    assert element["initial_option"]["value"] == "Churned"
    assert [item["value"] for item in element["options"]] == [
        "Churned",
        *CHOICES["lifecycle_stage"],
    ]


def test_value_layout_tags_selects_by_property() -> None:
    lifecycle = value_layout(BUILTIN.get("lifecycle_stage"), Operator.EQUALS, ["A"])
    status = value_layout(BUILTIN.get("status"), Operator.EQUALS, ["A"])

    assert lifecycle is not None and status is not None
    assert lifecycle.base is ValueBase.PICK
    assert lifecycle.kind != status.kind


# Ids across rebuilds ---------------------------------------------------------------------------


def test_input_ids_stay_the_same_across_rebuilds() -> None:
    context = ModalContext(catalog=BUILTIN, choices=CHOICES)
    form = BuilderForm(name="Renewals", next_row=1).add_row().add_row()
    first = builder_view(form, context)
    answers = {property_block_id("r1"): "health_score", property_block_id("r2"): "renewal_date"}
    second = redraw(first, context, answers)
    answers = {operator_block_id("r1", 0): "less_than", operator_block_id("r2", 0): "between"}
    third = redraw(second, context, answers)

    fourth = redraw(third, context, {"rule:r1:value.0.number": "4"})

    assert input_ids(fourth) == input_ids(third)
    assert set(input_ids(second)) <= set(input_ids(third))
    assert block(fourth, "rule:r1:value.0.number")["element"]["initial_value"] == "4"


def test_property_type_change_gives_new_block_ids() -> None:
    context = ModalContext(catalog=BUILTIN)
    form = one_row_form(
        property_key="arr", value_type=ValueType.NUMBER, operator=Operator.LESS_THAN, values=("5",)
    )
    before = builder_view(form, context)

    after = redraw(before, context, {property_block_id("r1"): "renewal_date"})

    assert operator_block_id("r1", 1) in input_ids(after)
    assert operator_block_id("r1", 0) not in input_ids(after)
    assert "initial_option" not in block(after, operator_block_id("r1", 1))["element"]
    assert option_texts(block(after, operator_block_id("r1", 1))["element"])[0] == "within N days"
    assert row_block_ids(after, "r1") == [property_block_id("r1"), operator_block_id("r1", 1)]


def test_property_change_within_type_keeps_comparison_and_value() -> None:
    context = ModalContext(catalog=BUILTIN)
    form = one_row_form(
        property_key="arr", value_type=ValueType.NUMBER, operator=Operator.LESS_THAN, values=("5",)
    )
    before = builder_view(form, context)

    after = redraw(before, context, {property_block_id("r1"): "mrr"})

    assert row_block_ids(after, "r1") == row_block_ids(before, "r1")
    assert (
        block(after, operator_block_id("r1", 0))["element"]["initial_option"]["value"]
        == "less_than"
    )


def test_operator_change_to_between_replaces_value_block() -> None:
    context = ModalContext(catalog=BUILTIN)
    form = one_row_form(
        property_key="arr", value_type=ValueType.NUMBER, operator=Operator.LESS_THAN, values=("5",)
    )
    before = builder_view(form, context)

    after = redraw(before, context, {operator_block_id("r1", 0): "between"})

    assert "rule:r1:value.0.number" not in input_ids(after)
    assert "initial_value" not in block(after, "rule:r1:low.0.number")["element"]


def test_read_form_reads_name_match_rows_and_text() -> None:
    context = ModalContext(catalog=BUILTIN, choices=CHOICES)
    form = BuilderForm(segment_id=7, channel_id="C1", next_row=1).add_row()
    view = redraw(builder_view(form, context), context, {property_block_id("r1"): "tags"})
    view = redraw(view, context, {operator_block_id("r1", 0): "contains_any_of"})
    multi_id = next(item for item in row_block_ids(view, "r1") if ".0.multi-" in item)
    answers = {
        NAME_BLOCK: "Strategic",
        "match": "any",
        multi_id: ["API", "Strategic"],
        RULES_TEXT_BLOCK: "ARR > 5",
    }

    read = read_form(submitted(view, answers))

    assert read.name == "Strategic"
    assert read.match is MatchMode.ANY
    assert read.rules_text == "ARR > 5"
    assert read.segment_id == 7
    assert read.channel_id == "C1"
    assert read.rows[0].property_key == "tags"
    assert read.rows[0].operator is Operator.CONTAINS_ANY_OF
    assert read.rows[0].values == ("API", "Strategic")


# Limits ----------------------------------------------------------------------------------------


def test_add_row_stops_at_row_cap() -> None:
    form = BuilderForm()
    for _ in range(MAX_ROWS + 3):
        form = form.add_row()

    view = drawn(form)

    assert len(form.rows) == MAX_ROWS
    buttons = [item["action_id"] for item in block(view, "builder_buttons")["elements"]]
    assert ADD_ROW_ACTION not in buttons


def test_fullest_view_stays_within_block_limit() -> None:
    rows = tuple(
        Row(
            id=f"r{n}",
            property_key="renewal_date",
            value_type=ValueType.DATE,
            operator=Operator.BETWEEN,
        )
        for n in range(1, MAX_ROWS + 1)
    )
    form = BuilderForm(rows=rows, next_row=MAX_ROWS + 1, saved_text="NOT (ARR > 5)")
    context = ModalContext(catalog=BUILTIN, notices=["one", "two"])
    preview = preview_audience_blocks(audience_of(targets=30, unmapped=5, warnings=2))

    view = builder_view(form, context, preview=preview)

    assert len(view["blocks"]) <= MAX_VIEW_BLOCKS


def test_metadata_fits_size_limit() -> None:
    rows = tuple(
        Row(
            id=f"r{n}",
            generation=123,
            property_key="tags",
            value_type=ValueType.LIST,
            layout=ValueLayout("multi-0123abcd"),
        )
        for n in range(100, 100 + MAX_ROWS)
    )
    form = BuilderForm(
        rows=rows,
        next_row=999,
        segment_id=10**9,
        channel_id="C" + "X" * 30,
        saved_text='"\\' * 5000,
    )

    metadata = encode_metadata(form)

    assert len(metadata) <= MAX_METADATA_LENGTH
    assert json.loads(metadata)["saved"].startswith('"\\')


def test_unreadable_metadata_starts_fresh_form() -> None:
    view = {
        "private_metadata": '{"rows": [["r1", 0, "number", "sparkle", 0], "junk"], "next": "x"}'
    }

    form = read_form(view)

    assert form.rows == ()
    assert form.next_row == 1


def test_view_respects_block_kit_text_limits() -> None:
    catalog = catalog_with(("L" * 200, "text"), ("Quite a long custom field name " * 3, "number"))
    rows = (
        Row(
            id="r1",
            property_key="custom." + "Quite a long custom field name " * 3,
            value_type=ValueType.NUMBER,
        ),
        Row(
            id="r2",
            property_key="lifecycle_stage",
            value_type=ValueType.TEXT,
            operator=Operator.EQUALS,
        ),
    )
    long_values = {"lifecycle_stage": ["V" * 90, "W" * 200]}
    form = BuilderForm(segment_id=1, rows=rows, next_row=3)

    view = builder_view(form, ModalContext(catalog=catalog, choices=long_values))

    assert len(view["title"]["text"]) <= 24
    assert len(view["submit"]["text"]) <= 24
    assert len(view["close"]["text"]) <= 24
    options = list(walk_options(view))
    assert options
    assert all(len(item["text"]["text"]) <= 75 for item in options)
    assert all(len(item["value"]) <= 150 for item in options)


def test_property_select_groups_builtin_and_custom() -> None:
    catalog = catalog_with(("Seats Purchased", "number"))
    view = drawn(BuilderForm().add_row(), ModalContext(catalog=catalog))

    element = block(view, property_block_id("r1"))["element"]

    assert element["type"] == "static_select"
    labels = [group["label"]["text"] for group in element["option_groups"]]
    assert labels == ["Built-in", "Custom fields"]
    assert element["option_groups"][1]["options"][0]["value"] == "custom.Seats Purchased"


def test_property_select_turns_external_past_100_options() -> None:
    catalog = catalog_with(*((f"Field {n:03d}", "text") for n in range(120)))

    element = block(
        drawn(BuilderForm().add_row(), ModalContext(catalog=catalog)), property_block_id("r1")
    )["element"]

    assert element["type"] == "external_select"
    assert "option_groups" not in element


def test_property_options_filter_by_query_and_cap() -> None:
    catalog = catalog_with(*((f"Field {n:03d}", "text") for n in range(120)))

    everything = property_option_groups(catalog)
    filtered = property_option_groups(catalog, query="field 11")

    assert sum(len(group["options"]) for group in everything) == 100
    assert [item["value"] for item in filtered[0]["options"]] == [
        f"custom.Field 11{n}" for n in range(10)
    ]


# Rules from the form ---------------------------------------------------------------------------


def answered(
    form: BuilderForm, answers: dict[str, Any], context: ModalContext | None = None
) -> BuilderForm:
    """Draw `form`, type `answers` into it, and read it back as a submission does."""
    return read_form(submitted(drawn(form, context), answers))


def test_one_row_builds_bare_condition() -> None:
    form = answered(
        one_row_form(
            property_key="health_score", value_type=ValueType.NUMBER, operator=Operator.LESS_THAN
        ),
        {"rule:r1:value.0.number": "4"},
    )

    tree, problems = rules_from_form(form, BUILTIN)

    assert problems == []
    assert tree == Condition("health_score", Operator.LESS_THAN, (4,))


def test_rows_combine_by_match_mode() -> None:
    rows = (
        Row(
            id="r1",
            property_key="health_score",
            value_type=ValueType.NUMBER,
            operator=Operator.LESS_THAN,
            values=("4",),
        ),
        Row(
            id="r2",
            property_key="arr",
            value_type=ValueType.NUMBER,
            operator=Operator.GREATER_THAN,
            values=("50000.5",),
        ),
        Row(id="r3"),
    )
    form = answered(BuilderForm(name="x", rows=rows, next_row=4), {"match": "any"})

    tree, problems = rules_from_form(form, BUILTIN)

    assert problems == []
    assert tree == AnyOf(
        (
            Condition("health_score", Operator.LESS_THAN, (4,)),
            Condition("arr", Operator.GREATER_THAN, (50000.5,)),
        )
    )


def test_rules_text_wins_over_rows() -> None:
    form = answered(
        one_row_form(
            property_key="health_score",
            value_type=ValueType.NUMBER,
            operator=Operator.LESS_THAN,
            values=("4",),
        ),
        {RULES_TEXT_BLOCK: "ARR at least 10"},
    )

    tree, _ = rules_from_form(form, BUILTIN)

    assert tree == Condition("arr", Operator.AT_LEAST, (10,))


def test_rules_text_error_is_keyed_to_text_block() -> None:
    form = answered(BuilderForm().add_row(), {RULES_TEXT_BLOCK: "Health Scor < 4"})

    tree, problems = rules_from_form(form, BUILTIN)

    assert tree is None
    assert problems[0].block_id == RULES_TEXT_BLOCK
    assert "Health Score" in problems[0].message


def test_no_rules_is_a_problem() -> None:
    form = answered(BuilderForm().add_row(), {})

    tree, problems = rules_from_form(form, BUILTIN)

    assert tree is None
    assert [problem.block_id for problem in problems] == [property_block_id("r1")]


@pytest.mark.parametrize(
    ("key", "operator", "answers", "bad_block", "phrase"),
    [
        (
            "arr",
            Operator.LESS_THAN,
            {"rule:r1:value.0.number": "lots"},
            "rule:r1:value.0.number",
            '"lots" is not a number',
        ),
        (
            "arr",
            Operator.LESS_THAN,
            {"rule:r1:value.0.number": None},
            "rule:r1:value.0.number",
            "Enter a number",
        ),
        (
            "renewal_date",
            Operator.WITHIN_DAYS,
            {"rule:r1:value.0.days": "-3"},
            "rule:r1:value.0.days",
            "negative",
        ),
        (
            "renewal_date",
            Operator.WITHIN_DAYS,
            {"rule:r1:value.0.days": "2.5"},
            "rule:r1:value.0.days",
            "whole number",
        ),
        (
            "renewal_date",
            Operator.BETWEEN,
            {"rule:r1:low.0.date": "2026-05-01", "rule:r1:high.0.date": "2026-01-01"},
            "rule:r1:high.0.date",
            "below its start",
        ),
        (
            "arr",
            Operator.BETWEEN,
            {"rule:r1:low.0.number": "9", "rule:r1:high.0.number": "3"},
            "rule:r1:high.0.number",
            "below",
        ),
        (
            "country",
            Operator.IN,
            {"rule:r1:value.0.list": " , "},
            "rule:r1:value.0.list",
            "at least one value",
        ),
        (
            "country",
            Operator.EQUALS,
            {"rule:r1:value.0.text": "   "},
            "rule:r1:value.0.text",
            "Enter a value",
        ),
        ("health_score", None, {}, operator_block_id("r1", 0), "Choose a comparison"),
    ],
)
def test_invalid_rows_are_keyed_to_their_blocks(
    key: str, operator: Operator | None, answers: dict[str, Any], bad_block: str, phrase: str
) -> None:
    form = answered(
        one_row_form(property_key=key, value_type=BUILTIN.get(key).type, operator=operator), answers
    )

    tree, problems = rules_from_form(form, BUILTIN)

    assert tree is None
    assert len(problems) == 1
    assert problems[0].block_id == bad_block
    assert phrase in problems[0].message
    assert bad_block in input_ids(drawn(form))


def test_property_chosen_before_redraw_asks_for_comparison() -> None:
    form = answered(BuilderForm().add_row(), {property_block_id("r1"): "arr"})

    result = condition_from_row(form.rows[0], number=1, catalog=BUILTIN)

    assert isinstance(result, FormProblem)
    assert result.block_id == property_block_id("r1")


def test_operator_changed_before_redraw_is_a_problem() -> None:
    form = answered(
        one_row_form(property_key="arr", value_type=ValueType.NUMBER, operator=Operator.LESS_THAN),
        {operator_block_id("r1", 0): "between", "rule:r1:value.0.number": "5"},
    )

    result = condition_from_row(form.rows[0], number=1, catalog=BUILTIN)

    assert isinstance(result, FormProblem)
    assert result.block_id == operator_block_id("r1", 0)


def test_deleted_custom_field_is_keyed_to_property() -> None:
    form = answered(
        one_row_form(property_key="custom.Gone", value_type=None),
        {},
        ModalContext(catalog=BUILTIN),
    )

    tree, problems = rules_from_form(form, BUILTIN)

    assert tree is None
    assert problems[0].block_id == property_block_id("r1")
    assert "Gone" in problems[0].message


def test_errors_by_block_keeps_first_message() -> None:
    problems = [
        FormProblem("a", "Rule 1", "first"),
        FormProblem("a", "Rule 1", "second"),
        FormProblem("b", "Name", "x"),
    ]

    assert errors_by_block(problems) == {"a": "first", "b": "x"}


def test_list_values_from_multi_select_build_condition() -> None:
    form = one_row_form(
        property_key="tags", value_type=ValueType.LIST, operator=Operator.CONTAINS_ALL_OF
    )
    view = drawn(form)
    multi_id = next(item for item in row_block_ids(view, "r1") if ".0.multi-" in item)
    read = read_form(submitted(view, {multi_id: ["API", "Strategic"]}))

    tree, problems = rules_from_form(read, BUILTIN)

    assert problems == []
    assert tree == Condition("tags", Operator.CONTAINS_ALL_OF, ("API", "Strategic"))


def test_date_row_builds_date_condition() -> None:
    form = one_row_form(
        property_key="renewal_date", value_type=ValueType.DATE, operator=Operator.BEFORE
    )
    read = answered(form, {"rule:r1:value.0.date": "2026-06-30"})

    tree, _ = rules_from_form(read, BUILTIN)

    assert tree == Condition("renewal_date", Operator.BEFORE, (date(2026, 6, 30),))


# Pre-filling -----------------------------------------------------------------------------------


def test_flat_groups_fit_in_rows() -> None:
    tree = AnyOf((Condition("arr", Operator.LESS_THAN, (5,)), Condition("mrr", Operator.IS_EMPTY)))

    shown = conditions_for_rows(tree)

    assert shown == (MatchMode.ANY, tree.children)


@pytest.mark.parametrize(
    "tree",
    [
        Not(Condition("arr", Operator.LESS_THAN, (5,))),
        AllOf(
            (
                Condition("arr", Operator.LESS_THAN, (5,)),
                AnyOf((Condition("mrr", Operator.IS_EMPTY), Condition("h", Operator.IS_EMPTY))),
            )
        ),
        AllOf(tuple(Condition("arr", Operator.GREATER_THAN, (n,)) for n in range(MAX_ROWS + 1))),
    ],
)
def test_nested_rules_need_text(tree: Any) -> None:
    assert conditions_for_rows(tree) is None


def test_prefilled_row_round_trips_to_same_condition() -> None:
    condition = Condition("renewal_date", Operator.BETWEEN, (date(2026, 1, 1), date(2026, 2, 1)))
    row = row_from_condition(condition, row_id="r1", catalog=BUILTIN)
    form = BuilderForm(name="x", rows=(row,), next_row=2)

    read = read_form(submitted(drawn(form)))

    assert rules_from_form(read, BUILTIN) == (condition, [])


def test_rules_text_example_parses() -> None:
    tree = parse_rules(RULES_TEXT_EXAMPLE, BUILTIN)

    assert isinstance(tree, AllOf)


def test_saved_rules_section_escapes_text() -> None:
    form = BuilderForm(saved_text='NOT (Name contains "<!channel>")', rules_text="x")

    text = block(drawn(form), SAVED_RULES_BLOCK)["text"]["text"]

    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text


# Preview ---------------------------------------------------------------------------------------


def audience_of(*, targets: int, unmapped: int = 0, warnings: int = 0) -> Audience:
    delivery_targets = [
        DeliveryTarget(
            channel_id=f"C{n:04d}",
            channel_name=f"customer-{n}",
            is_private=False,
            companies=[
                QualifyingCompany(
                    company_id=f"c{n}",
                    company_name=f"<!channel> Co {n}",
                    values={"Health Score": "3"},
                )
            ],
        )
        for n in range(targets)
    ]
    matched = [
        MatchedCompany(
            company_id=f"c{n}",
            company_name=f"Co {n}",
            channel_id=f"C{n:04d}",
            channel_name=f"customer-{n}",
            reasons={},
        )
        for n in range(targets)
    ]
    missing = [
        UnmappedCompany(
            company_id=f"u{n}",
            company_name=f"Lost {n}",
            reason="No channel named #lost was found.",
            kind=UnmappedKind.NO_CHANNEL,
        )
        for n in range(unmapped)
    ]
    return Audience(
        rules=Condition("health_score", Operator.LESS_THAN, (4,)),
        rules_text="Health Score less than 4",
        matched=matched,
        unmapped=missing,
        targets=delivery_targets,
        warnings=[f"warning {n}" for n in range(warnings)],
        company_count=400,
        fetched_at=datetime(2026, 12, 4, 9, 30, tzinfo=UTC),
        planhat_calls=1,
    )


def test_preview_counts_channels_and_lists_first_ten() -> None:
    blocks = preview_audience_blocks(audience_of(targets=12, unmapped=2, warnings=1))

    text = next(item for item in blocks if item.get("block_id") == PREVIEW_BLOCK)["text"]["text"]
    assert "*12 channels* match" in text
    assert "#customer-9" in text
    assert "#customer-10" not in text
    assert "and 2 more channels" in text
    assert "Health Score 3" in text


def test_preview_escapes_company_names() -> None:
    blocks = preview_audience_blocks(audience_of(targets=1))

    text = json.dumps(blocks)
    assert "&lt;!channel&gt; Co 0" in text
    assert "<!channel>" not in text


def test_preview_shows_unmapped_warnings_and_fetch_time() -> None:
    blocks = preview_audience_blocks(audience_of(targets=1, unmapped=3, warnings=1))

    unmapped = next(item for item in blocks if item.get("block_id") == f"{PREVIEW_BLOCK}_unmapped")[
        "text"
    ]["text"]
    warnings = next(item for item in blocks if item.get("block_id") == f"{PREVIEW_BLOCK}_warnings")[
        "text"
    ]["text"]
    fetched = next(item for item in blocks if item.get("block_id") == f"{PREVIEW_BLOCK}_fetched")
    assert "*3 matching companies reach no channel.*" in unmapped
    assert "3 × No channel named #lost was found." in unmapped
    assert "warning 0" in warnings
    assert "2026-12-04 09:30 UTC" in fetched["elements"][0]["text"]


def test_preview_section_stays_under_section_limit() -> None:
    audience = audience_of(targets=10)
    long_targets = [replace(target, channel_name="c" * 900) for target in audience.targets]

    blocks = preview_audience_blocks(replace(audience, targets=long_targets))

    assert all(len(item["text"]["text"]) <= 3000 for item in blocks if item["type"] == "section")
