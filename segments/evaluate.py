"""Evaluation of a rule tree against companies, and warnings about rules that cannot be useful.

`build_matcher` compiles a tree once into nested closures, with properties resolved and rule
values parsed, so matching many companies only reads and compares their values.

Matching uses three-valued (Kleene) logic so that a broadcast never reaches a company whose data
is unknown. A condition on an empty or unreadable value is UNKNOWN, except `is empty` and
`is not empty`. NOT keeps UNKNOWN, AND and OR follow Kleene's tables, and a company matches only
when the whole tree is TRUE. So neither `Health Score not equals 4` nor
`NOT (Health Score less than 4)` matches a company without a health score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from planhat.models import Company
from segments.properties import Property, PropertyCatalog, ValueType
from segments.rules import (
    AllOf,
    Condition,
    Not,
    Operator,
    RuleNode,
    UnknownPropertyError,
    iter_conditions,
    rule_properties,
    validate_rules,
)
from segments.text import format_comparison
from segments.values import format_value, read_bool, read_day, read_list, read_number, read_text

# True, False, or None for UNKNOWN.
Truth = bool | None
_Check = Callable[[Company], Truth]


@dataclass(frozen=True)
class EvaluationContext:
    """The day rules are evaluated on and the time zone that turns timestamps into days."""

    today: date
    timezone: ZoneInfo

    @classmethod
    def now(cls, timezone_name: str = "UTC") -> EvaluationContext:
        """Build a context for the current day in the IANA time zone `timezone_name`.

        Raises ValueError when the name is not a known IANA time zone.
        """
        try:
            timezone = ZoneInfo(timezone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'Unknown time zone "{timezone_name}". Use an IANA name such as "UTC" or '
                '"Europe/Stockholm".'
            ) from None
        return cls(today=datetime.now(timezone).date(), timezone=timezone)


class Matcher:
    """A compiled rule tree that decides whether a company matches and shows the values it used."""

    def __init__(
        self,
        *,
        check: _Check,
        properties: list[Property],
        timezone: ZoneInfo,
    ) -> None:
        self._check = check
        self._properties = properties
        self._timezone = timezone
        fields = ["_id", "name", *(prop.planhat_field for prop in properties)]
        self.planhat_fields: list[str] = list(dict.fromkeys(fields))

    def matches(self, company: Company) -> bool:
        """Tell whether the whole rule tree is TRUE for `company` (UNKNOWN does not match)."""
        return self._check(company) is True

    def values(self, company: Company) -> dict[str, str]:
        """Map each property label the rules use to the company's value, formatted for display."""
        return {
            prop.label: format_value(company.get(prop.source), prop, tz=self._timezone)
            for prop in self._properties
        }


def build_matcher(node: RuleNode, catalog: PropertyCatalog, context: EvaluationContext) -> Matcher:
    """Compile a rule tree into a Matcher, raising RuleError when it does not fit `catalog`."""
    validate_rules(node, catalog)
    properties = [catalog.get(key) for key in rule_properties(node)]
    check = _compile(node, catalog, context)
    return Matcher(check=check, properties=properties, timezone=context.timezone)


def _compile(node: RuleNode, catalog: PropertyCatalog, context: EvaluationContext) -> _Check:
    if isinstance(node, Condition):
        return _compile_condition(node, catalog.get(node.property), context)
    if isinstance(node, Not):
        return _negate(_compile(node.child, catalog, context))
    checks = tuple(_compile(child, catalog, context) for child in node.children)
    return _all_of(checks) if isinstance(node, AllOf) else _any_of(checks)


def _negate(check: _Check) -> _Check:
    def negated(company: Company) -> Truth:
        result = check(company)
        return None if result is None else not result

    return negated


def _all_of(checks: tuple[_Check, ...]) -> _Check:
    def all_of(company: Company) -> Truth:
        result: Truth = True
        for check in checks:
            outcome = check(company)
            if outcome is False:
                return False
            if outcome is None:
                result = None
        return result

    return all_of


def _any_of(checks: tuple[_Check, ...]) -> _Check:
    def any_of(company: Company) -> Truth:
        result: Truth = False
        for check in checks:
            outcome = check(company)
            if outcome is True:
                return True
            if outcome is None:
                result = None
        return result

    return any_of


def _normalize(text: str) -> str:
    return text.strip().casefold()


def _reader(prop: Property, context: EvaluationContext) -> Callable[[Any], Any]:
    """Return a function that reads a raw value as `prop`'s type, with None for empty."""
    if prop.type is ValueType.NUMBER:
        return read_number
    if prop.type is ValueType.DATE:
        timezone = context.timezone
        return lambda raw: read_day(raw, timezone)
    if prop.type is ValueType.CHECKBOX:
        return read_bool
    if prop.type is ValueType.LIST:

        def read_items(raw: Any) -> frozenset[str] | None:
            items = read_list(raw)
            return None if items is None else frozenset(_normalize(item) for item in items)

        return read_items

    def read_normalized(raw: Any) -> str | None:
        text = read_text(raw)
        return None if text is None else _normalize(text)

    return read_normalized


def _compile_condition(condition: Condition, prop: Property, context: EvaluationContext) -> _Check:
    source = prop.source
    read = _reader(prop, context)
    operator = condition.operator

    if operator in (Operator.IS_EMPTY, Operator.IS_NOT_EMPTY):
        want_empty = operator is Operator.IS_EMPTY

        def emptiness(company: Company) -> Truth:
            return (read(company.get(source)) is None) is want_empty

        return emptiness

    test = _value_test(condition, prop, context)

    def check(company: Company) -> Truth:
        value = read(company.get(source))
        return None if value is None else test(value)

    return check


def _value_test(
    condition: Condition, prop: Property, context: EvaluationContext
) -> Callable[[Any], bool]:
    """Build the comparison for a non-empty value already read as `prop`'s type."""
    if prop.type is ValueType.NUMBER:
        return _number_test(condition)
    if prop.type is ValueType.DATE:
        return _date_test(condition, context.today)
    if prop.type is ValueType.CHECKBOX:
        expected = condition.operator is Operator.IS_TRUE
        return lambda flag: flag is expected
    if prop.type is ValueType.LIST:
        return _list_test(condition)
    return _text_test(condition)


def _number_test(condition: Condition) -> Callable[[float], bool]:
    operator = condition.operator
    bounds = [float(value) for value in condition.values if isinstance(value, int | float)]
    first = bounds[0]
    if operator is Operator.LESS_THAN:
        return lambda number: number < first
    if operator is Operator.AT_MOST:
        return lambda number: number <= first
    if operator is Operator.GREATER_THAN:
        return lambda number: number > first
    if operator is Operator.AT_LEAST:
        return lambda number: number >= first
    if operator is Operator.EQUALS:
        return lambda number: number == first
    if operator is Operator.NOT_EQUALS:
        return lambda number: number != first
    low, high = bounds
    return lambda number: low <= number <= high


def _shift(day: date, days: int) -> date:
    """Move `day` by `days`, stopping at the first or last representable date."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _date_test(condition: Condition, today: date) -> Callable[[date], bool]:
    operator = condition.operator
    if operator in (Operator.BEFORE, Operator.AFTER, Operator.ON, Operator.BETWEEN):
        days = [value for value in condition.values if isinstance(value, date)]
        first = days[0]
        if operator is Operator.BEFORE:
            return lambda day: day < first
        if operator is Operator.AFTER:
            return lambda day: day > first
        if operator is Operator.ON:
            return lambda day: day == first
        last = days[1]
        return lambda day: first <= day <= last

    count = next(value for value in condition.values if isinstance(value, int))
    if operator is Operator.WITHIN_DAYS:
        end = _shift(today, count)
        return lambda day: today <= day <= end
    if operator is Operator.WITHIN_LAST_DAYS:
        start = _shift(today, -count)
        return lambda day: start <= day <= today
    if operator is Operator.MORE_THAN_DAYS_AGO:
        cutoff = _shift(today, -count)
        return lambda day: day < cutoff
    cutoff = _shift(today, count)
    return lambda day: day > cutoff


def _text_test(condition: Condition) -> Callable[[str], bool]:
    operator = condition.operator
    needles = [_normalize(str(value)) for value in condition.values]
    first = needles[0]
    if operator is Operator.EQUALS:
        return lambda text: text == first
    if operator is Operator.NOT_EQUALS:
        return lambda text: text != first
    if operator is Operator.CONTAINS:
        return lambda text: first in text
    if operator is Operator.DOES_NOT_CONTAIN:
        return lambda text: first not in text
    if operator is Operator.STARTS_WITH:
        return lambda text: text.startswith(first)
    choices = frozenset(needles)
    if operator is Operator.IN:
        return lambda text: text in choices
    return lambda text: text not in choices


def _list_test(condition: Condition) -> Callable[[frozenset[str]], bool]:
    operator = condition.operator
    needles = frozenset(_normalize(str(value)) for value in condition.values)
    if operator is Operator.CONTAINS:
        return lambda items: not needles.isdisjoint(items)
    if operator is Operator.DOES_NOT_CONTAIN:
        return lambda items: needles.isdisjoint(items)
    if operator is Operator.CONTAINS_ANY_OF:
        return lambda items: not needles.isdisjoint(items)
    return lambda items: needles <= items


# Warnings --------------------------------------------------------------------------------------


def rule_warnings(node: RuleNode, catalog: PropertyCatalog) -> list[str]:
    """List warnings for number rules that match every or no company given the property's range.

    Only properties with a known `value_range` are checked (Health Score 0-10, CSM Score 1-5).
    Unknown properties are skipped, because `validate_rules` reports those.
    """
    warnings: list[str] = []
    for condition in iter_conditions(node):
        try:
            prop = catalog.get(condition.property)
        except UnknownPropertyError:
            continue
        if prop.value_range is None:
            continue
        warning = _range_warning(condition, prop, prop.value_range)
        if warning is not None and warning not in warnings:
            warnings.append(warning)
    return warnings


def _range_warning(
    condition: Condition, prop: Property, value_range: tuple[float, float]
) -> str | None:
    numbers = [
        float(value)
        for value in condition.values
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    if not numbers or len(numbers) != len(condition.values):
        return None
    low, high = value_range
    first = numbers[0]
    everything: bool
    nothing: bool
    operator = condition.operator
    if operator is Operator.LESS_THAN:
        everything, nothing = first > high, first <= low
    elif operator is Operator.AT_MOST:
        everything, nothing = first >= high, first < low
    elif operator is Operator.GREATER_THAN:
        everything, nothing = first < low, first >= high
    elif operator is Operator.AT_LEAST:
        everything, nothing = first <= low, first > high
    elif operator is Operator.EQUALS:
        everything, nothing = False, not low <= first <= high
    elif operator is Operator.NOT_EQUALS:
        everything, nothing = not low <= first <= high, False
    elif operator is Operator.BETWEEN:
        last = numbers[1]
        everything, nothing = first <= low and last >= high, last < low or first > high
    else:
        return None

    scale = f"{prop.label} is {_plain(low)}-{_plain(high)} in Planhat"
    rule = format_comparison(condition)
    if everything:
        return f'{scale}, so "{rule}" matches every company that has a {prop.label}.'
    if nothing:
        return f'{scale}, so "{rule}" matches no company.'
    outside = [number for number in numbers if not low <= number <= high]
    if outside:
        return (
            f'{scale}, so {_plain(outside[0])} in "{rule}" is outside that range and '
            "acts like the nearest end of it."
        )
    return None


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))
