"""The segment rule tree, its JSON form and its validation against a property catalog.

A rule tree is plain data: conditions (`property operator values`) combined with all-of, any-of
and not. The text form (`segments.text`), the JSON form (here) and the evaluator
(`segments.evaluate`) all work on this one model. Every error a person can cause is a `RuleError`
whose message states what was wrong and how to fix it:

    RuleError (ValueError)
    ├── RuleSyntaxError        text that does not parse, with the column
    ├── UnknownPropertyError   a property name not in the catalog, with the closest label
    ├── UnknownOperatorError   an operator not known at all, or not for the property's type
    └── InvalidValueError      a value of the wrong kind, count or range
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from segments.properties import ValueType

if TYPE_CHECKING:
    from segments.properties import Property, PropertyCatalog

# Numbers are int or float, text values str, dates datetime.date and day counts int.
RuleValue = int | float | str | date


class Operator(StrEnum):
    LESS_THAN = "less_than"
    AT_MOST = "at_most"
    GREATER_THAN = "greater_than"
    AT_LEAST = "at_least"
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    BETWEEN = "between"
    CONTAINS = "contains"
    DOES_NOT_CONTAIN = "does_not_contain"
    STARTS_WITH = "starts_with"
    IN = "in"
    NOT_IN = "not_in"
    WITHIN_DAYS = "within_days"
    WITHIN_LAST_DAYS = "within_last_days"
    BEFORE = "before"
    AFTER = "after"
    ON = "on"
    MORE_THAN_DAYS_AGO = "more_than_days_ago"
    MORE_THAN_DAYS_FROM_NOW = "more_than_days_from_now"
    IS_TRUE = "is_true"
    IS_FALSE = "is_false"
    CONTAINS_ANY_OF = "contains_any_of"
    CONTAINS_ALL_OF = "contains_all_of"
    IS_EMPTY = "is_empty"
    IS_NOT_EMPTY = "is_not_empty"


_OPERATOR_LABELS: dict[Operator, str] = {
    Operator.LESS_THAN: "less than",
    Operator.AT_MOST: "at most",
    Operator.GREATER_THAN: "greater than",
    Operator.AT_LEAST: "at least",
    Operator.EQUALS: "equals",
    Operator.NOT_EQUALS: "not equals",
    Operator.BETWEEN: "between",
    Operator.CONTAINS: "contains",
    Operator.DOES_NOT_CONTAIN: "does not contain",
    Operator.STARTS_WITH: "starts with",
    Operator.IN: "in",
    Operator.NOT_IN: "not in",
    Operator.WITHIN_DAYS: "within N days",
    Operator.WITHIN_LAST_DAYS: "within last N days",
    Operator.BEFORE: "before",
    Operator.AFTER: "after",
    Operator.ON: "on",
    Operator.MORE_THAN_DAYS_AGO: "more than N days ago",
    Operator.MORE_THAN_DAYS_FROM_NOW: "more than N days from now",
    Operator.IS_TRUE: "is true",
    Operator.IS_FALSE: "is false",
    Operator.CONTAINS_ANY_OF: "contains any of",
    Operator.CONTAINS_ALL_OF: "contains all of",
    Operator.IS_EMPTY: "is empty",
    Operator.IS_NOT_EMPTY: "is not empty",
}

_EMPTINESS = (Operator.IS_EMPTY, Operator.IS_NOT_EMPTY)

OPERATORS_BY_TYPE: dict[ValueType, tuple[Operator, ...]] = {
    ValueType.NUMBER: (
        Operator.LESS_THAN,
        Operator.AT_MOST,
        Operator.GREATER_THAN,
        Operator.AT_LEAST,
        Operator.EQUALS,
        Operator.NOT_EQUALS,
        Operator.BETWEEN,
        *_EMPTINESS,
    ),
    ValueType.TEXT: (
        Operator.EQUALS,
        Operator.NOT_EQUALS,
        Operator.CONTAINS,
        Operator.DOES_NOT_CONTAIN,
        Operator.STARTS_WITH,
        Operator.IN,
        Operator.NOT_IN,
        *_EMPTINESS,
    ),
    ValueType.DATE: (
        Operator.WITHIN_DAYS,
        Operator.WITHIN_LAST_DAYS,
        Operator.BEFORE,
        Operator.AFTER,
        Operator.ON,
        Operator.BETWEEN,
        Operator.MORE_THAN_DAYS_AGO,
        Operator.MORE_THAN_DAYS_FROM_NOW,
        *_EMPTINESS,
    ),
    ValueType.CHECKBOX: (Operator.IS_TRUE, Operator.IS_FALSE, *_EMPTINESS),
    ValueType.LIST: (
        Operator.CONTAINS,
        Operator.CONTAINS_ANY_OF,
        Operator.CONTAINS_ALL_OF,
        Operator.DOES_NOT_CONTAIN,
        *_EMPTINESS,
    ),
}

_TYPE_DESCRIPTIONS: dict[ValueType, str] = {
    ValueType.NUMBER: "a number",
    ValueType.TEXT: "text",
    ValueType.DATE: "a date",
    ValueType.CHECKBOX: "a checkbox",
    ValueType.LIST: "a list",
}

# Operators grouped by the values they take.
_NO_VALUE = frozenset(
    {Operator.IS_TRUE, Operator.IS_FALSE, Operator.IS_EMPTY, Operator.IS_NOT_EMPTY}
)
_ONE_NUMBER = frozenset(
    {Operator.LESS_THAN, Operator.AT_MOST, Operator.GREATER_THAN, Operator.AT_LEAST}
)
_ONE_NUMBER_OR_TEXT = frozenset({Operator.EQUALS, Operator.NOT_EQUALS})
_ONE_TEXT = frozenset({Operator.CONTAINS, Operator.DOES_NOT_CONTAIN, Operator.STARTS_WITH})
_SOME_TEXTS = frozenset(
    {Operator.IN, Operator.NOT_IN, Operator.CONTAINS_ANY_OF, Operator.CONTAINS_ALL_OF}
)
DAY_COUNT_OPERATORS = frozenset(
    {
        Operator.WITHIN_DAYS,
        Operator.WITHIN_LAST_DAYS,
        Operator.MORE_THAN_DAYS_AGO,
        Operator.MORE_THAN_DAYS_FROM_NOW,
    }
)
_ONE_DATE = frozenset({Operator.BEFORE, Operator.AFTER, Operator.ON})

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def operator_label(operator: Operator) -> str:
    """Return the operator as people read it: `less than`, `within N days`."""
    return _OPERATOR_LABELS[operator]


def describe_type(value_type: ValueType) -> str:
    """Return the type with its article, as used in messages: `a number`, `text`."""
    return _TYPE_DESCRIPTIONS[value_type]


def parse_iso_date(text: str) -> date | None:
    """Parse exactly `YYYY-MM-DD` into a date, or return None for other text or an invalid day."""
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


class RuleError(ValueError):
    """A rule that cannot be used. The message explains to its author what to change."""


class RuleSyntaxError(RuleError):
    """Rule text that does not parse. `column` is 1-based, or None at the end of the text."""

    def __init__(self, message: str, *, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class UnknownPropertyError(RuleError):
    """A property name or key that is not in the catalog, with the closest label if any."""

    def __init__(self, message: str, *, name: str, suggestion: str | None) -> None:
        super().__init__(message)
        self.name = name
        self.suggestion = suggestion

    @classmethod
    def for_name(cls, name: str, suggestion: str | None) -> UnknownPropertyError:
        if suggestion is not None:
            message = f'Unknown property "{name}". Did you mean "{suggestion}"?'
        else:
            message = (
                f'Unknown property "{name}". Use a built-in property such as Health Score or ARR, '
                "or the exact name of a Planhat custom field."
            )
        return cls(message, name=name, suggestion=suggestion)


class UnknownOperatorError(RuleError):
    """An operator that is not known at all, or not known for the type of its property."""

    @classmethod
    def for_property(
        cls, operator: Operator, prop: Property, *, written: str | None = None
    ) -> UnknownOperatorError:
        """Build the error for an operator that does not fit `prop`'s type.

        `written` is the operator as the person typed it (`=`), shown in place of its label.
        """
        choices = ", ".join(operator_label(choice) for choice in OPERATORS_BY_TYPE[prop.type])
        operator_text = written if written is not None else operator_label(operator)
        return cls(
            f'"{operator_text}" does not apply to {prop.label}, which is '
            f"{describe_type(prop.type)}. Use one of: {choices}."
        )


class InvalidValueError(RuleError):
    """A value of the wrong kind, count or range for its operator and property."""


@dataclass(frozen=True)
class Condition:
    """One rule: a property (canonical key), an operator and the operator's values."""

    property: str
    operator: Operator
    values: tuple[RuleValue, ...] = ()

    def __post_init__(self) -> None:
        # Accept any sequence, so a condition built from a list equals the parsed one.
        if not isinstance(self.values, tuple):
            object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class AllOf:
    """A group that matches when every child matches (AND)."""

    children: tuple[RuleNode, ...]

    def __post_init__(self) -> None:
        _check_group(self, "AllOf")


@dataclass(frozen=True)
class AnyOf:
    """A group that matches when at least one child matches (OR)."""

    children: tuple[RuleNode, ...]

    def __post_init__(self) -> None:
        _check_group(self, "AnyOf")


@dataclass(frozen=True)
class Not:
    """The negation of one rule node."""

    child: RuleNode


RuleNode = Condition | AllOf | AnyOf | Not


def _check_group(group: AllOf | AnyOf, kind: str) -> None:
    if not isinstance(group.children, tuple):
        object.__setattr__(group, "children", tuple(group.children))
    if len(group.children) < 2:
        raise RuleError(
            f"{kind} needs at least two rules, but got {len(group.children)}. "
            "Use a single rule on its own instead."
        )


def iter_conditions(node: RuleNode) -> Iterator[Condition]:
    """Yield every condition in the tree, depth first, left to right."""
    if isinstance(node, Condition):
        yield node
    elif isinstance(node, Not):
        yield from iter_conditions(node.child)
    else:
        for child in node.children:
            yield from iter_conditions(child)


def rule_properties(node: RuleNode) -> list[str]:
    """List the property keys the rules use, in order of first appearance."""
    return list(dict.fromkeys(condition.property for condition in iter_conditions(node)))


# Checking values -------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        # Evaluation compares numbers as floats, so an int beyond the float range is rejected.
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_date(value: object) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _is_day_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _describe_values(values: tuple[Any, ...]) -> str:
    if not values:
        return "no value"
    if len(values) > 1:
        return f"{len(values)} values"
    value = values[0]
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def values_problem(
    operator: Operator, values: tuple[Any, ...], value_type: ValueType | None = None
) -> str | None:
    """Describe what is wrong with `values` for `operator`, or return None when they fit.

    With `value_type`, `equals` and `between` must also match the property's type. The returned
    text completes a sentence that starts with the operator, e.g. `takes one number, but got "x"`.
    """
    described = _describe_values(values)
    if operator in _NO_VALUE:
        return None if not values else f"takes no value, but got {described}"

    if operator in _ONE_NUMBER or (
        operator in _ONE_NUMBER_OR_TEXT and value_type is ValueType.NUMBER
    ):
        if len(values) == 1 and _is_number(values[0]):
            return None
        return f"takes one number, but got {described}"

    if operator in _ONE_NUMBER_OR_TEXT and value_type is ValueType.TEXT:
        if len(values) == 1 and _is_text(values[0]):
            return None
        return f"takes one non-blank text value, but got {described}"

    if operator in _ONE_NUMBER_OR_TEXT:
        if len(values) == 1 and (_is_number(values[0]) or _is_text(values[0])):
            return None
        return f"takes one number or non-blank text value, but got {described}"

    if operator in _ONE_TEXT:
        if len(values) == 1 and _is_text(values[0]):
            return None
        return f"takes one non-blank text value, but got {described}"

    if operator in _SOME_TEXTS:
        if values and all(_is_text(value) for value in values):
            return None
        return f"takes one or more non-blank text values, but got {described}"

    if operator in DAY_COUNT_OPERATORS:
        if len(values) == 1 and _is_day_count(values[0]):
            return None
        return f"takes a whole number of days, 0 or more, but got {described}"

    if operator in _ONE_DATE:
        if len(values) == 1 and _is_date(values[0]):
            return None
        return f"takes one date written YYYY-MM-DD, but got {described}"

    return _between_problem(values, value_type)


def _between_problem(values: tuple[Any, ...], value_type: ValueType | None) -> str | None:
    both_numbers = len(values) == 2 and all(_is_number(value) for value in values)
    both_dates = len(values) == 2 and all(_is_date(value) for value in values)
    if value_type is ValueType.NUMBER and not both_numbers:
        return f"takes two numbers, but got {_describe_values(values)}"
    if value_type is ValueType.DATE and not both_dates:
        return f"takes two dates written YYYY-MM-DD, but got {_describe_values(values)}"
    if not (both_numbers or both_dates):
        return f"takes two numbers or two dates, but got {_describe_values(values)}"
    low, high = values
    if low > high:
        return (
            f"takes the lower bound first, but {_format_bound(low)} is above {_format_bound(high)}"
        )
    return None


def _format_bound(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else repr(value)


def validate_condition(condition: Condition, prop: Property) -> None:
    """Raise UnknownOperatorError or InvalidValueError unless the condition fits `prop`."""
    if condition.operator not in OPERATORS_BY_TYPE[prop.type]:
        raise UnknownOperatorError.for_property(condition.operator, prop)
    problem = values_problem(condition.operator, condition.values, prop.type)
    if problem is not None:
        raise InvalidValueError(
            f'"{operator_label(condition.operator)}" on {prop.label} {problem}.'
        )


def validate_rules(node: RuleNode, catalog: PropertyCatalog) -> None:
    """Raise a RuleError unless every property is known and every operator and value fits its type.

    Use it on rules loaded from storage, because the catalog may have changed since they were saved.
    """
    for condition in iter_conditions(node):
        validate_condition(condition, catalog.get(condition.property))


# JSON form -------------------------------------------------------------------------------------


def rules_to_json(node: RuleNode) -> dict[str, Any]:
    """Convert a rule tree to plain JSON data (dates as `YYYY-MM-DD` strings)."""
    if isinstance(node, Condition):
        return {
            "property": node.property,
            "operator": node.operator.value,
            "values": [
                value.isoformat() if isinstance(value, date) else value for value in node.values
            ],
        }
    if isinstance(node, Not):
        return {"not": rules_to_json(node.child)}
    key = "all" if isinstance(node, AllOf) else "any"
    return {key: [rules_to_json(child) for child in node.children]}


def rules_from_json(data: Any) -> RuleNode:
    """Build a rule tree from `rules_to_json` output, raising RuleError on any malformed part.

    The operator decides how values are read: `before`, `after`, `on` and a `between` of strings
    take dates, so no catalog is needed. Use `validate_rules` to check the tree against one.
    """
    return _node_from_json(data, "rules")


def _json_error(path: str, problem: str) -> RuleError:
    return RuleError(f"Invalid rule JSON at {path}: {problem}.")


def _node_from_json(data: Any, path: str) -> RuleNode:
    if not isinstance(data, dict):
        raise _json_error(path, f"expected an object, but got {type(data).__name__}")
    if "property" in data or "operator" in data:
        return _condition_from_json(data, path)

    group_keys = [key for key in ("all", "any", "not") if key in data]
    if len(group_keys) != 1 or len(data) != 1:
        keys = ", ".join(f'"{key}"' for key in data) or "no keys"
        raise _json_error(
            path,
            f'expected exactly one of "all", "any", "not" or a condition with "property", '
            f"but got {keys}",
        )
    key = group_keys[0]
    if key == "not":
        return Not(_node_from_json(data["not"], f"{path}.not"))

    children = data[key]
    if not isinstance(children, list) or len(children) < 2:
        raise _json_error(f"{path}.{key}", "expected a list of at least two rules")
    nodes = tuple(_node_from_json(child, f"{path}.{key}[{i}]") for i, child in enumerate(children))
    return AllOf(nodes) if key == "all" else AnyOf(nodes)


def _condition_from_json(data: dict[str, Any], path: str) -> Condition:
    unexpected = set(data) - {"property", "operator", "values"}
    if unexpected:
        names = ", ".join(f'"{key}"' for key in sorted(unexpected))
        raise _json_error(path, f"unexpected keys {names} in a condition")

    key = data.get("property")
    if not isinstance(key, str) or not key.strip():
        raise _json_error(path, '"property" must be a non-empty string')

    operator_name = data.get("operator")
    if not isinstance(operator_name, str):
        raise _json_error(path, '"operator" must be a string such as "less_than"')
    try:
        operator = Operator(operator_name)
    except ValueError:
        close = difflib.get_close_matches(operator_name, [op.value for op in Operator], n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise UnknownOperatorError(
            f'Unknown operator "{operator_name}" in rule JSON at {path}.{hint}'
        ) from None

    raw_values = data.get("values", [])
    if not isinstance(raw_values, list):
        raise _json_error(path, '"values" must be a list')
    values = tuple(_value_from_json(operator, raw_values, path))
    problem = values_problem(operator, values)
    if problem is not None:
        raise InvalidValueError(f'Invalid rule JSON at {path}: "{operator.value}" {problem}.')
    return Condition(key, operator, values)


def _value_from_json(operator: Operator, raw_values: list[Any], path: str) -> Iterator[RuleValue]:
    dates_expected = operator in _ONE_DATE or (
        operator is Operator.BETWEEN and any(isinstance(value, str) for value in raw_values)
    )
    for raw in raw_values:
        if dates_expected and isinstance(raw, str):
            day = parse_iso_date(raw)
            if day is None:
                raise InvalidValueError(
                    f'Invalid rule JSON at {path}: "{raw}" is not a valid date written YYYY-MM-DD.'
                )
            yield day
        elif isinstance(raw, str | int | float) and not isinstance(raw, bool):
            yield raw
        else:
            raise InvalidValueError(
                f"Invalid rule JSON at {path}: values must be numbers or strings, "
                f"but got {_json_type_name(raw)}."
            )


def _json_type_name(value: Any) -> str:
    """Name the JSON type of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
