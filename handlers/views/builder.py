"""Block Kit for the segment rule builder modal: its ids, the view, and reading its state back.

The modal has a name, an all/any choice, up to `MAX_ROWS` rule rows (property, comparison,
value) and an optional "Rules as text" box that wins over the rows when filled. A rebuild after
any action reads everything back from the view: typed values from `view.state.values`, and the
row ids, their block-id generation and the layout of their value blocks from `private_metadata`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from segments.audience import Audience
from segments.properties import Property, PropertyCatalog, ValueType
from segments.rules import (
    DAY_COUNT_OPERATORS,
    OPERATORS_BY_TYPE,
    AllOf,
    AnyOf,
    Condition,
    Operator,
    RuleNode,
    operator_label,
)
from segments.slack_text import escape_mrkdwn

logger = logging.getLogger(__name__)

CALLBACK_ID = "segment_builder"

NAME_BLOCK = "name"
NAME_ACTION = "builder_name"
MATCH_BLOCK = "match"
MATCH_ACTION = "builder_match"
RULES_TEXT_BLOCK = "rules_text"
RULES_TEXT_ACTION = "builder_rules_text"
NOTICES_BLOCK = "notices"
SAVED_RULES_BLOCK = "saved_rules"
BUTTONS_BLOCK = "builder_buttons"
PREVIEW_BLOCK = "preview"

PROPERTY_ACTION = "builder_property"
OPERATOR_ACTION = "builder_operator"
VALUE_ACTION = "builder_value"
ADD_ROW_ACTION = "builder_add_rule"
REMOVE_ROW_ACTION = "builder_remove_rule"
PREVIEW_ACTION = "builder_preview"

# A row takes at most 5 blocks (property, comparison, two values, buttons) plus a divider, so
# 10 rows and the fixed blocks stay well under Slack's limit of 100 blocks per view.
MAX_ROWS = 10
MAX_VIEW_BLOCKS = 100
# Block Kit limits: options per static select, option text and value, private_metadata,
# section text, and modal title, submit and close texts.
MAX_SELECT_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_METADATA_LENGTH = 3000
MAX_SECTION_TEXT = 3000
MAX_TITLE_LENGTH = 24
# plain_text_input accepts at most 3000 characters.
MAX_RULES_TEXT_LENGTH = 3000
# Saved rule text repeated in private_metadata is cut to this length, to leave room for rows.
SAVED_TEXT_METADATA_LENGTH = 1000
PREVIEW_CHANNELS = 10
RULES_TEXT_EXAMPLE = (
    'Health Score less than 4 AND (ARR greater than 50000 OR Tags contains "Strategic")'
)
PREVIEW_UNMAPPED_REASONS = 3

_NO_VALUE_OPERATORS = frozenset(
    {Operator.IS_TRUE, Operator.IS_FALSE, Operator.IS_EMPTY, Operator.IS_NOT_EMPTY}
)
_LIST_OPERATORS = frozenset(
    {Operator.IN, Operator.NOT_IN, Operator.CONTAINS_ANY_OF, Operator.CONTAINS_ALL_OF}
)
_DATE_VALUE_OPERATORS = frozenset({Operator.BEFORE, Operator.AFTER, Operator.ON, Operator.BETWEEN})


class MatchMode(StrEnum):
    ALL = "all"
    ANY = "any"


class ValueBase(StrEnum):
    """The input element a value is typed into, which decides how its text is read."""

    NUMBER = "number"
    DAYS = "days"
    DATE = "date"
    TEXT = "text"
    LIST = "list"
    PICK = "pick"
    MULTI = "multi"


@dataclass(frozen=True)
class ValueLayout:
    """The value blocks of a row: their element (`kind`) and whether there are two (`between`).

    `kind` is the `ValueBase`, followed for selects by a tag of the property, so that a select
    of Lifecycle Stage values and one of Status values get different block ids.
    """

    kind: str
    pair: bool = False

    def __post_init__(self) -> None:
        # Raises ValueError for a kind this module does not draw, e.g. from altered metadata.
        ValueBase(self.kind.split("-", 1)[0])

    @property
    def base(self) -> ValueBase:
        return ValueBase(self.kind.split("-", 1)[0])

    @property
    def slots(self) -> tuple[str, ...]:
        return ("low", "high") if self.pair else ("value",)


@dataclass(frozen=True)
class Row:
    """One rule row as typed so far.

    `generation` changes when the property's type changes, which gives the comparison and
    value blocks new ids so Slack drops their stale values. `value_type` and `layout` describe
    the blocks the row was last drawn with. A row pre-filled from saved rules has no layout, so
    its `values` are in the canonical form for its operator. `values` contains the low and high
    texts for `between` ("" when empty), every item for list operators, and otherwise one text.
    """

    id: str
    generation: int = 0
    value_type: ValueType | None = None
    property_key: str | None = None
    operator: Operator | None = None
    layout: ValueLayout | None = None
    values: tuple[str, ...] = ()

    @property
    def is_blank(self) -> bool:
        return self.property_key is None and self.operator is None and not any(self.values)


@dataclass(frozen=True)
class BuilderForm:
    """Everything the modal shows, read from a view or prepared for opening one."""

    name: str = ""
    match: MatchMode = MatchMode.ALL
    rows: tuple[Row, ...] = ()
    rules_text: str = ""
    segment_id: int | None = None
    channel_id: str | None = None
    next_row: int = 1
    # Canonical text of saved rules that rows cannot show (nested groups, NOT), shown read-only.
    saved_text: str | None = None

    def add_row(self) -> BuilderForm:
        """Append an empty row, unless the form already has `MAX_ROWS`."""
        if len(self.rows) >= MAX_ROWS:
            return self
        row = Row(id=f"r{self.next_row}")
        return replace(self, rows=(*self.rows, row), next_row=self.next_row + 1)

    def remove_row(self, row_id: str) -> BuilderForm:
        return replace(self, rows=tuple(row for row in self.rows if row.id != row_id))


@dataclass(frozen=True)
class ModalContext:
    """Inputs of a rebuild besides the form: properties, values seen in the data, and notes.

    `catalog_complete` is False while the custom fields are loading or failed to load, so a row
    whose property is not in `catalog` is not yet reported as deleted.
    """

    catalog: PropertyCatalog
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)
    catalog_complete: bool = True
    notices: Sequence[str] = ()


# Block ids -------------------------------------------------------------------------------------


def property_block_id(row_id: str) -> str:
    return f"rule:{row_id}:property"


def operator_block_id(row_id: str, generation: int) -> str:
    return f"rule:{row_id}:operator.{generation}"


def value_block_id(row_id: str, generation: int, slot: str, kind: str) -> str:
    """Return the id of a value block. `slot` is `value`, or `low`/`high` for `between`."""
    return f"rule:{row_id}:{slot}.{generation}.{kind}"


def row_note_block_id(row_id: str) -> str:
    return f"rule:{row_id}:note"


def row_buttons_block_id(row_id: str) -> str:
    return f"rule:{row_id}:buttons"


def value_block_ids(row: Row) -> tuple[str, ...]:
    """Return the ids of the value blocks the row was drawn with, in slot order."""
    if row.layout is None:
        return ()
    return tuple(
        value_block_id(row.id, row.generation, slot, row.layout.kind) for slot in row.layout.slots
    )


# Value layout ----------------------------------------------------------------------------------


def _property_tag(key: str) -> str:
    # A short, stable tag keeps block ids under Slack's 255 characters for any field name.
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]


def value_layout(
    prop: Property, operator: Operator, choices: Sequence[str] = ()
) -> ValueLayout | None:
    """Return the value blocks that fit `operator` on `prop`, or None when it takes no value.

    `choices` are values seen in the data for the property: when there are any, single text
    values use a select and text lists a multi-select, otherwise text inputs.
    """
    if operator in _NO_VALUE_OPERATORS:
        return None
    if operator in DAY_COUNT_OPERATORS:
        return ValueLayout(ValueBase.DAYS)
    pair = operator is Operator.BETWEEN
    if prop.type is ValueType.DATE and operator in _DATE_VALUE_OPERATORS:
        return ValueLayout(ValueBase.DATE, pair)
    if prop.type is ValueType.NUMBER:
        return ValueLayout(ValueBase.NUMBER, pair)
    tag = _property_tag(prop.key)
    if operator in _LIST_OPERATORS:
        return ValueLayout(f"{ValueBase.MULTI}-{tag}") if choices else ValueLayout(ValueBase.LIST)
    picks_one = operator in (Operator.EQUALS, Operator.NOT_EQUALS) or (
        prop.type is ValueType.LIST and operator in (Operator.CONTAINS, Operator.DOES_NOT_CONTAIN)
    )
    if picks_one and choices:
        return ValueLayout(f"{ValueBase.PICK}-{tag}")
    return ValueLayout(ValueBase.TEXT)


def layout_fits(layout: ValueLayout, prop: Property, operator: Operator) -> bool:
    """Tell whether value blocks drawn as `layout` can hold the values `operator` takes.

    They may not, when a person changes the comparison and saves before the modal is redrawn.
    """
    # Ask as if values were seen, so that selects come back, then accept text inputs for them.
    expected = value_layout(prop, operator, choices=("any",))
    if expected is None:
        return False
    interchangeable = {
        ValueBase.PICK: {ValueBase.PICK, ValueBase.TEXT},
        ValueBase.MULTI: {ValueBase.MULTI, ValueBase.LIST},
    }
    accepted = interchangeable.get(expected.base, {expected.base})
    return layout.base in accepted and layout.pair == expected.pair


# Metadata --------------------------------------------------------------------------------------


def encode_metadata(form: BuilderForm) -> str:
    """Encode what the view cannot carry in its state, in at most `MAX_METADATA_LENGTH` characters.

    Rows are stored as `[id, generation, type, kind, pair]`. The saved rule text is cut to fit.
    """
    rows = [
        [
            row.id,
            row.generation,
            row.value_type.value if row.value_type else "",
            row.layout.kind if row.layout else "",
            int(row.layout.pair) if row.layout else 0,
        ]
        for row in form.rows
    ]
    data: dict[str, Any] = {"rows": rows, "next": form.next_row}
    if form.segment_id is not None:
        data["segment"] = form.segment_id
    if form.channel_id:
        data["channel"] = form.channel_id
    saved_text = form.saved_text
    if saved_text is not None and len(saved_text) > SAVED_TEXT_METADATA_LENGTH:
        saved_text = saved_text[: SAVED_TEXT_METADATA_LENGTH - 1] + "…"
    while True:
        if saved_text:
            data["saved"] = saved_text
        else:
            data.pop("saved", None)
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if len(encoded) <= MAX_METADATA_LENGTH or not saved_text:
            return encoded
        # Escaped quotes and backslashes can double the length, so shorten until it fits.
        saved_text = saved_text[: len(saved_text) // 2 - 1] + "…" if len(saved_text) > 2 else ""


@dataclass(frozen=True)
class _Metadata:
    rows: tuple[Row, ...]
    next_row: int
    segment_id: int | None
    channel_id: str | None
    saved_text: str | None


def _decode_metadata(text: str) -> _Metadata:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        logger.warning("Ignoring unreadable builder metadata %r", text[:200])
        data = {}
    if not isinstance(data, dict):
        data = {}
    rows = []
    for entry in data.get("rows", []):
        try:
            row_id, generation, type_name, kind, pair = entry
            layout = ValueLayout(str(kind), bool(pair)) if kind else None
            rows.append(
                Row(
                    id=str(row_id),
                    generation=int(generation),
                    value_type=ValueType(type_name) if type_name else None,
                    layout=layout,
                )
            )
        except (TypeError, ValueError):
            logger.warning("Ignoring unreadable builder row %r", entry)
    segment = data.get("segment")
    channel = data.get("channel")
    saved = data.get("saved")
    next_row = data.get("next")
    return _Metadata(
        rows=tuple(rows),
        next_row=next_row if isinstance(next_row, int) else len(rows) + 1,
        segment_id=segment if isinstance(segment, int) else None,
        channel_id=channel if isinstance(channel, str) else None,
        saved_text=saved if isinstance(saved, str) else None,
    )


# Reading the state -----------------------------------------------------------------------------


def _element_values(element: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Return the values an input element holds, whatever its type, empty ones left out."""
    if not element:
        return ()
    if "selected_options" in element:
        options = element.get("selected_options") or []
        return tuple(str(option["value"]) for option in options if option.get("value"))
    if "selected_option" in element:
        option = element.get("selected_option")
        return (str(option["value"]),) if option and option.get("value") else ()
    if "selected_date" in element:
        day = element.get("selected_date")
        return (str(day),) if day else ()
    value = element.get("value")
    return (str(value),) if value not in (None, "") else ()


def _state_element(values: Mapping[str, Any], block_id: str, action_id: str) -> Mapping[str, Any]:
    block = values.get(block_id)
    if not isinstance(block, Mapping):
        return {}
    element = block.get(action_id)
    return element if isinstance(element, Mapping) else {}


def split_list_text(text: str) -> tuple[str, ...]:
    """Split comma-separated values, dropping blanks. Values cannot contain commas here."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _read_row(row: Row, values: Mapping[str, Any]) -> Row:
    property_element = _state_element(values, property_block_id(row.id), PROPERTY_ACTION)
    prop_values = _element_values(property_element)
    operator_values = _element_values(
        _state_element(values, operator_block_id(row.id, row.generation), OPERATOR_ACTION)
    )
    operator: Operator | None = None
    if operator_values:
        try:
            operator = Operator(operator_values[0])
        except ValueError:
            logger.warning("Ignoring unknown operator %r in row %s", operator_values[0], row.id)

    typed: tuple[str, ...] = ()
    if row.layout is not None:
        elements = [
            _state_element(values, block_id, VALUE_ACTION) for block_id in value_block_ids(row)
        ]
        if row.layout.pair:
            typed = tuple(next(iter(_element_values(element)), "") for element in elements)
        elif row.layout.base is ValueBase.LIST:
            typed = split_list_text(next(iter(_element_values(elements[0])), ""))
        else:
            typed = _element_values(elements[0])
    return replace(
        row,
        property_key=prop_values[0] if prop_values else None,
        operator=operator,
        values=typed,
    )


def read_form(view: Mapping[str, Any]) -> BuilderForm:
    """Read the form from a builder view of a `block_actions` or `view_submission` payload."""
    metadata = _decode_metadata(str(view.get("private_metadata") or ""))
    state = view.get("state")
    values = state.get("values", {}) if isinstance(state, Mapping) else {}
    name = _element_values(_state_element(values, NAME_BLOCK, NAME_ACTION))
    match = _element_values(_state_element(values, MATCH_BLOCK, MATCH_ACTION))
    rules_text = _element_values(_state_element(values, RULES_TEXT_BLOCK, RULES_TEXT_ACTION))
    return BuilderForm(
        name=name[0] if name else "",
        match=MatchMode.ANY if match and match[0] == MatchMode.ANY else MatchMode.ALL,
        rows=tuple(_read_row(row, values) for row in metadata.rows),
        rules_text=rules_text[0] if rules_text else "",
        segment_id=metadata.segment_id,
        channel_id=metadata.channel_id,
        next_row=metadata.next_row,
        saved_text=metadata.saved_text,
    )


def settle_rows(form: BuilderForm, catalog: PropertyCatalog) -> BuilderForm:
    """Match each row to its property's current type, starting a new generation on a change.

    A row whose property changed to another value type loses its comparison and values, and its
    comparison and value blocks get new ids, so Slack drops what was typed into them.
    """
    rows = []
    for row in form.rows:
        prop = _lookup_key(catalog, row.property_key)
        new_type = prop.type if prop is not None else None
        if new_type == row.value_type:
            rows.append(row)
        elif row.value_type is None:
            # No comparison blocks were drawn yet, so no typed value can be stale.
            rows.append(replace(row, value_type=new_type))
        else:
            rows.append(
                replace(
                    row,
                    generation=row.generation + 1,
                    value_type=new_type,
                    operator=None,
                    layout=None,
                    values=(),
                )
            )
    return replace(form, rows=tuple(rows))


def _lookup_key(catalog: PropertyCatalog, key: str | None) -> Property | None:
    if key is None:
        return None
    return next((prop for prop in catalog.properties() if prop.key == key), None)


# Pre-filling from rules ------------------------------------------------------------------------


def conditions_for_rows(node: RuleNode) -> tuple[MatchMode, tuple[Condition, ...]] | None:
    """Return the match mode and conditions when rows can show `node`, else None.

    Rows show one condition, or one all-of or any-of group of at most `MAX_ROWS` conditions.
    Nested groups and NOT can only be edited as text.
    """
    if isinstance(node, Condition):
        return MatchMode.ALL, (node,)
    if isinstance(node, AllOf | AnyOf):
        if len(node.children) > MAX_ROWS:
            return None
        if not all(isinstance(child, Condition) for child in node.children):
            return None
        mode = MatchMode.ALL if isinstance(node, AllOf) else MatchMode.ANY
        return mode, tuple(child for child in node.children if isinstance(child, Condition))
    return None


def _value_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def row_from_condition(condition: Condition, *, row_id: str, catalog: PropertyCatalog) -> Row:
    """Build a pre-filled row. Its value type stays unset when the catalog lacks the property."""
    prop = _lookup_key(catalog, condition.property)
    return Row(
        id=row_id,
        value_type=prop.type if prop is not None else None,
        property_key=condition.property,
        operator=condition.operator,
        values=tuple(_value_text(value) for value in condition.values),
    )


# Elements --------------------------------------------------------------------------------------


def _plain(text: str, limit: int | None = None) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(text, limit) if limit else text, "emoji": True}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def option(text: str, value: str) -> dict[str, Any]:
    """Return an option object, its text cut to Slack's 75 characters."""
    return {"text": _plain(text, MAX_OPTION_TEXT), "value": value}


def _property_option(prop: Property) -> dict[str, Any]:
    return option(prop.label, prop.key)


def _usable(prop: Property) -> bool:
    # Option values are limited to 150 characters, and the value is the property key.
    return len(prop.key) <= MAX_OPTION_VALUE


def property_option_groups(
    catalog: PropertyCatalog, *, query: str = "", limit: int = MAX_SELECT_OPTIONS
) -> list[dict[str, Any]]:
    """Return the "Built-in" and "Custom fields" option groups, filtered by `query`.

    At most `limit` options in all, the built-ins first. Properties whose key is longer than an
    option value may be are left out, because they cannot be selected.
    """
    folded = query.strip().casefold()
    groups = []
    remaining = limit
    for label, custom in (("Built-in", False), ("Custom fields", True)):
        options = [
            _property_option(prop)
            for prop in catalog.properties()
            if prop.is_custom == custom and _usable(prop) and folded in prop.label.casefold()
        ][:remaining]
        remaining -= len(options)
        if options:
            groups.append({"label": _plain(label, MAX_OPTION_TEXT), "options": options})
    return groups


def _unknown_property_option(key: str) -> dict[str, Any]:
    return option(key.removeprefix("custom."), key)


def _property_element(row: Row, context: ModalContext) -> dict[str, Any]:
    usable = [prop for prop in context.catalog.properties() if _usable(prop)]
    element: dict[str, Any] = {
        "action_id": PROPERTY_ACTION,
        "placeholder": _plain("Choose a property"),
    }
    if len(usable) <= MAX_SELECT_OPTIONS:
        groups = property_option_groups(context.catalog)
        element["type"] = "static_select"
        element["option_groups"] = groups
    else:
        # Too many fields for a static menu, so Slack requests options as the person types.
        element["type"] = "external_select"
        element["min_query_length"] = 0
        groups = []
    if row.property_key is not None:
        prop = _lookup_key(context.catalog, row.property_key)
        if prop is not None:
            initial = _property_option(prop)
        else:
            initial = _unknown_property_option(row.property_key)
        if prop is None and element["type"] == "static_select":
            # Keep a deleted or not yet loaded field selected, so the choice is not lost.
            groups.append({"label": _plain("Not found in Planhat"), "options": [initial]})
        element["initial_option"] = initial
    return element


def _operator_element(prop: Property, operator: Operator | None) -> dict[str, Any]:
    options = [
        option(operator_label(choice), choice.value) for choice in OPERATORS_BY_TYPE[prop.type]
    ]
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": OPERATOR_ACTION,
        "placeholder": _plain("Choose a comparison"),
        "options": options,
    }
    if operator is not None and operator in OPERATORS_BY_TYPE[prop.type]:
        element["initial_option"] = option(operator_label(operator), operator.value)
    return element


def _number_text(text: str, *, whole: bool) -> str | None:
    """Return `text` when it is a number a number_input accepts as its initial value."""
    try:
        number = float(text)
    except ValueError:
        return None
    if whole and not number.is_integer():
        return None
    return text.strip()


def _select_options(choices: Sequence[str], current: Sequence[str]) -> list[dict[str, Any]]:
    # A current value no longer seen in the data is kept first, so editing does not drop it.
    values = [value for value in current if value not in choices] + list(choices)
    values = [value for value in values if len(value) <= MAX_OPTION_VALUE]
    return [option(value, value) for value in dict.fromkeys(values)][:MAX_SELECT_OPTIONS]


def value_element(
    layout: ValueLayout, values: Sequence[str], choices: Sequence[str] = ()
) -> dict[str, Any]:
    """Return the input element for one value slot of `layout`, pre-filled with `values`."""
    first = values[0] if values else ""
    base = layout.base
    element: dict[str, Any] = {"action_id": VALUE_ACTION}
    if base in (ValueBase.NUMBER, ValueBase.DAYS):
        whole = base is ValueBase.DAYS
        element.update({"type": "number_input", "is_decimal_allowed": not whole})
        if whole:
            element["min_value"] = "0"
        initial = _number_text(first, whole=whole) if first else None
        if initial is not None:
            element["initial_value"] = initial
    elif base is ValueBase.DATE:
        element["type"] = "datepicker"
        if first:
            element["initial_date"] = first
    elif base is ValueBase.PICK:
        options = _select_options(choices, values[:1])
        element.update({"type": "static_select", "options": options})
        element["placeholder"] = _plain("Choose a value")
        if first and any(item["value"] == first for item in options):
            element["initial_option"] = option(first, first)
    elif base is ValueBase.MULTI:
        options = _select_options(choices, values)
        element.update({"type": "multi_static_select", "options": options})
        element["placeholder"] = _plain("Choose values")
        chosen = [value for value in values if any(item["value"] == value for item in options)]
        if chosen:
            element["initial_options"] = [option(value, value) for value in chosen]
    else:
        element["type"] = "plain_text_input"
        if base is ValueBase.LIST:
            element["placeholder"] = _plain("Values separated by commas, e.g. Onboarding, Active")
            text = ", ".join(values)
        else:
            text = first
        if text:
            element["initial_value"] = text
    return element


def _value_label(layout: ValueLayout, slot: str) -> str:
    if layout.pair:
        return "From" if slot == "low" else "To"
    return {
        ValueBase.DAYS: "Number of days",
        ValueBase.DATE: "Date",
        ValueBase.LIST: "Values",
        ValueBase.MULTI: "Values",
    }.get(layout.base, "Value")


def _slot_values(row: Row, layout: ValueLayout) -> list[tuple[str, list[str]]]:
    """Pair each slot of `layout` with the row's values that fit it."""
    fits = row.layout is None or row.layout == layout
    if not fits:
        return [(slot, []) for slot in layout.slots]
    if layout.pair:
        padded = [*row.values, "", ""]
        low, high = padded[0], padded[1]
        return [("low", [low] if low else []), ("high", [high] if high else [])]
    return [("value", list(row.values))]


# Blocks ----------------------------------------------------------------------------------------


def _input_block(
    block_id: str,
    label: str,
    element: dict[str, Any],
    *,
    dispatch: bool = False,
    optional: bool = True,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label, 2000),
        "element": element,
        "optional": optional,
        "dispatch_action": dispatch,
    }
    if hint:
        block["hint"] = _plain(hint, 2000)
    return block


def _context(block_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "block_id": block_id,
        "elements": [{"type": "mrkdwn", "text": _cut(text, MAX_SECTION_TEXT)}],
    }


def drawn_row(row: Row, context: ModalContext) -> Row:
    """Return `row` with the layout its value blocks get when drawn in `context`."""
    prop = _lookup_key(context.catalog, row.property_key)
    if prop is None or row.operator is None or row.operator not in OPERATORS_BY_TYPE[prop.type]:
        return replace(row, layout=None)
    layout = value_layout(prop, row.operator, context.choices.get(prop.key, ()))
    return replace(row, layout=layout)


def row_blocks(row: Row, *, number: int, context: ModalContext) -> list[dict[str, Any]]:
    """Return the blocks of one row: property, comparison, values and its Remove button.

    `row` is the row as read from the view (or pre-filled). Its values are carried into the
    value blocks only when they were typed into blocks of the same layout.
    """
    drawn = drawn_row(row, context)
    blocks = [
        _input_block(
            property_block_id(row.id),
            f"Rule {number}",
            _property_element(row, context),
            dispatch=True,
        )
    ]
    prop = _lookup_key(context.catalog, row.property_key)
    if prop is None and row.property_key is not None and context.catalog_complete:
        name = escape_mrkdwn(row.property_key.removeprefix("custom."))
        blocks.append(
            _context(
                row_note_block_id(row.id),
                f":warning: *{name}* is not a company field in Planhat any more. "
                "Choose another property or remove this rule.",
            )
        )
    if prop is not None:
        blocks.append(
            _input_block(
                operator_block_id(row.id, row.generation),
                "Comparison",
                _operator_element(prop, row.operator),
                dispatch=True,
            )
        )
    if prop is not None and drawn.layout is not None:
        choices = context.choices.get(prop.key, ())
        for slot, values in _slot_values(row, drawn.layout):
            blocks.append(
                _input_block(
                    value_block_id(row.id, row.generation, slot, drawn.layout.kind),
                    _value_label(drawn.layout, slot),
                    value_element(drawn.layout, values, choices),
                )
            )
    blocks.append(_row_buttons(row, number))
    return blocks


def _row_buttons(row: Row, number: int) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": row_buttons_block_id(row.id),
        "elements": [
            {
                "type": "button",
                "action_id": REMOVE_ROW_ACTION,
                "text": _plain(f"Remove rule {number}"),
                "value": row.id,
            }
        ],
    }


def _saved_rules_block(saved_text: str) -> dict[str, Any]:
    intro = (
        "*Saved rules* (they use nested groups or NOT, which rule rows cannot show, so edit "
        "them as text in *Rules as text* below):\n"
    )
    room = MAX_SECTION_TEXT - len(intro) - 10
    return {
        "type": "section",
        "block_id": SAVED_RULES_BLOCK,
        "text": {"type": "mrkdwn", "text": f"{intro}```{_cut(escape_mrkdwn(saved_text), room)}```"},
    }


def builder_view(
    form: BuilderForm,
    context: ModalContext,
    *,
    preview: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Return the builder modal for `form`, with every input pre-filled from it.

    Inputs keep their block and action ids across rebuilds, so Slack keeps what a person typed.
    Call `settle_rows` first when the form was read from a view. `preview` blocks go last.
    """
    drawn = tuple(drawn_row(row, context) for row in form.rows)
    blocks: list[dict[str, Any]] = []
    if context.notices:
        blocks.append(_context(NOTICES_BLOCK, "\n".join(context.notices)))
    name_element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": NAME_ACTION,
        "max_length": 80,
        "placeholder": _plain("e.g. At-risk renewals"),
    }
    if form.name:
        name_element["initial_value"] = form.name
    blocks.append(_input_block(NAME_BLOCK, "Segment name", name_element, optional=False))
    match_options = [
        option("All rules match (AND)", MatchMode.ALL.value),
        option("Any rule matches (OR)", MatchMode.ANY.value),
    ]
    match_element = {
        "type": "radio_buttons",
        "action_id": MATCH_ACTION,
        "options": match_options,
        "initial_option": match_options[0] if form.match is MatchMode.ALL else match_options[1],
    }
    blocks.append(_input_block(MATCH_BLOCK, "Companies must match", match_element, optional=False))
    if form.saved_text:
        blocks.append(_saved_rules_block(form.saved_text))

    for number, row in enumerate(form.rows, start=1):
        blocks.append({"type": "divider"})
        blocks.extend(row_blocks(row, number=number, context=context))

    buttons: list[dict[str, Any]] = []
    if len(form.rows) < MAX_ROWS:
        buttons.append({"type": "button", "action_id": ADD_ROW_ACTION, "text": _plain("Add rule")})
    buttons.append(
        {
            "type": "button",
            "action_id": PREVIEW_ACTION,
            "text": _plain("Preview"),
            "style": "primary",
        }
    )
    blocks.append({"type": "actions", "block_id": BUTTONS_BLOCK, "elements": buttons})
    if len(form.rows) >= MAX_ROWS:
        blocks.append(
            _context(
                "row_limit",
                f"The form holds at most {MAX_ROWS} rules. Write longer rules in *Rules as text*.",
            )
        )

    blocks.append({"type": "divider"})
    text_element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": RULES_TEXT_ACTION,
        "multiline": True,
        "max_length": MAX_RULES_TEXT_LENGTH,
        "placeholder": _plain(f"e.g. {RULES_TEXT_EXAMPLE}"),
    }
    if form.rules_text:
        text_element["initial_value"] = form.rules_text[:MAX_RULES_TEXT_LENGTH]
    blocks.append(
        _input_block(
            RULES_TEXT_BLOCK,
            "Rules as text",
            text_element,
            hint="When filled, this text is saved instead of the rule rows above. "
            "Use AND, OR, NOT and parentheses.",
        )
    )
    blocks.extend(preview)

    saved = replace(form, rows=drawn)
    title = "Edit segment" if form.segment_id is not None else "New segment"
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain(title, MAX_TITLE_LENGTH),
        "submit": _plain("Save", MAX_TITLE_LENGTH),
        "close": _plain("Cancel", MAX_TITLE_LENGTH),
        "private_metadata": encode_metadata(saved),
        "blocks": blocks,
    }


def not_allowed_view(message: str) -> dict[str, Any]:
    """Return the modal that replaces the builder when the person may not save segments."""
    return {
        "type": "modal",
        "callback_id": f"{CALLBACK_ID}_refused",
        "title": _plain("Not allowed", MAX_TITLE_LENGTH),
        "close": _plain("Close", MAX_TITLE_LENGTH),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": escape_mrkdwn(message)}}],
    }


# Preview ---------------------------------------------------------------------------------------


def _preview_section(text: str, block_id: str = PREVIEW_BLOCK) -> dict[str, Any]:
    return {
        "type": "section",
        "block_id": block_id,
        "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION_TEXT)},
    }


def preview_pending_blocks() -> list[dict[str, Any]]:
    text = "*Preview*\nPreviewing… reading companies from Planhat."
    return [{"type": "divider"}, _preview_section(text)]


def preview_problem_blocks(problems: Sequence[str]) -> list[dict[str, Any]]:
    """Return the preview area listing what to fix before the rules can be previewed."""
    lines = ["*Preview*", "Fix these rules first:"]
    lines.extend(f"• {escape_mrkdwn(problem)}" for problem in problems)
    return [{"type": "divider"}, _preview_section("\n".join(lines))]


def preview_error_blocks(message: str) -> list[dict[str, Any]]:
    return [{"type": "divider"}, _preview_section(f"*Preview*\n:warning: {escape_mrkdwn(message)}")]


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count:,} {singular if count == 1 else plural}"


def _join_lines(lines: Sequence[str], limit: int = MAX_SECTION_TEXT) -> str:
    """Join lines, leaving out whole lines at the end when the text would pass `limit`."""
    kept: list[str] = []
    length = 0
    for line in lines:
        if length + len(line) + 1 > limit - 20:
            kept.append("…")
            break
        kept.append(line)
        length += len(line) + 1
    return "\n".join(kept)


def _company_text(name: str, values: Mapping[str, str]) -> str:
    shown = ", ".join(f"{label} {value}" for label, value in values.items())
    text = f"{name} ({shown})" if shown else name
    return escape_mrkdwn(_cut(text, 200))


def _fetched_text(fetched_at: datetime) -> str:
    # Slack renders <!date^...> in each reader's own time zone; the fallback text is UTC.
    stamp = int(fetched_at.timestamp())
    fallback = fetched_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"Planhat data fetched <!date^{stamp}^{{date_short_pretty}} at {{time}}|{fallback}>."


def preview_audience_blocks(audience: Audience) -> list[dict[str, Any]]:
    """Return the preview area for a resolved audience.

    It shows the channel count, the first `PREVIEW_CHANNELS` channels with the values that
    matched, unmapped companies grouped by reason, warnings and when Planhat was read. All CRM
    text is escaped so company names cannot ping or link.
    """
    channels = _plural(len(audience.targets), "channel", "channels")
    matching = _plural(audience.matching_company_count, "company", "companies")
    lines = ["*Preview*", f"*{channels}* match, for {matching} of {audience.company_count:,}."]
    for target in audience.targets[:PREVIEW_CHANNELS]:
        first = target.companies[0] if target.companies else None
        line = f"• #{escape_mrkdwn(target.channel_name)}"
        if first is not None:
            line += f": {_company_text(first.company_name, first.values)}"
        others = len(target.companies) - 1
        if others > 0:
            line += f" and {others:,} other {'company' if others == 1 else 'companies'}"
        lines.append(line)
    hidden = len(audience.targets) - PREVIEW_CHANNELS
    if hidden > 0:
        lines.append(f"…and {_plural(hidden, 'more channel', 'more channels')}.")
    blocks: list[dict[str, Any]] = [{"type": "divider"}, _preview_section(_join_lines(lines))]

    if audience.unmapped:
        unmapped_companies = len({row.company_id for row in audience.unmapped})
        noun = "company reaches" if unmapped_companies == 1 else "companies reach"
        unmapped_lines = [f"*{unmapped_companies:,} matching {noun} no channel.* Top reasons:"]
        by_kind = Counter(row.kind for row in audience.unmapped)
        example = {row.kind: row for row in reversed(audience.unmapped)}
        for kind, count in by_kind.most_common(PREVIEW_UNMAPPED_REASONS):
            row = example[kind]
            unmapped_lines.append(
                f"• {count:,} × {escape_mrkdwn(_cut(row.reason, 300))} "
                f"(e.g. {escape_mrkdwn(_cut(row.company_name, 80))})"
            )
        blocks.append(_preview_section(_join_lines(unmapped_lines), f"{PREVIEW_BLOCK}_unmapped"))
    if audience.warnings:
        warning_lines = ["*Warnings*"]
        warning_lines.extend(f":warning: {escape_mrkdwn(warning)}" for warning in audience.warnings)
        blocks.append(_preview_section(_join_lines(warning_lines), f"{PREVIEW_BLOCK}_warnings"))
    blocks.append(_context(f"{PREVIEW_BLOCK}_fetched", _fetched_text(audience.fetched_at)))
    return blocks
