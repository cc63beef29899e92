"""The text form of segment rules: a parser for what people type and a canonical formatter.

A rule is `property operator value`, for example `Health Score less than 4` or
`"Seats Purchased" greater than 100`, and rules combine with NOT, AND, OR (binding in that order)
and parentheses. `format_rules` writes the canonical form, which `parse_rules` reads back to the
same tree: AND/OR/NOT upper-case, operators as lower-case words, text values double-quoted with
`"` and `\\` escaped by a backslash, and every nested group in parentheses.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from datetime import date
from enum import Enum, auto

from segments.properties import CUSTOM_PREFIX, Property, PropertyCatalog, ValueType
from segments.rules import (
    DAY_COUNT_OPERATORS,
    OPERATORS_BY_TYPE,
    AllOf,
    AnyOf,
    Condition,
    InvalidValueError,
    Not,
    Operator,
    RuleNode,
    RuleSyntaxError,
    RuleValue,
    UnknownOperatorError,
    UnknownPropertyError,
    operator_label,
    parse_iso_date,
    validate_condition,
)

_KEYWORDS = frozenset({"and", "or", "not"})
_SYMBOLS = ("<=", ">=", "!=", "==", "<", ">", "=")
# A bare word runs until whitespace or a character with a meaning of its own.
_BARE_WORD = re.compile(r'[^\s()"<>=!,]+')
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SIMPLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

_NO_VALUE = (Operator.IS_TRUE, Operator.IS_FALSE, Operator.IS_EMPTY, Operator.IS_NOT_EMPTY)
_TEXT_LIST = (Operator.IN, Operator.NOT_IN, Operator.CONTAINS_ANY_OF, Operator.CONTAINS_ALL_OF)

# Operator phrases as typed, longest first so `is not empty` wins over `is not` and `is`.
# `more than` means greater than for numbers and starts `more than N days ago` for dates.
_PHRASES: tuple[tuple[tuple[str, ...], Operator], ...] = tuple(
    sorted(
        (
            (("is", "not", "empty"), Operator.IS_NOT_EMPTY),
            (("is", "empty"), Operator.IS_EMPTY),
            (("is", "true"), Operator.IS_TRUE),
            (("is", "false"), Operator.IS_FALSE),
            (("is", "not"), Operator.NOT_EQUALS),
            (("is",), Operator.EQUALS),
            (("equals",), Operator.EQUALS),
            (("=",), Operator.EQUALS),
            (("==",), Operator.EQUALS),
            (("not", "equals"), Operator.NOT_EQUALS),
            (("!=",), Operator.NOT_EQUALS),
            (("less", "than"), Operator.LESS_THAN),
            (("<",), Operator.LESS_THAN),
            (("at", "most"), Operator.AT_MOST),
            (("<=",), Operator.AT_MOST),
            (("greater", "than"), Operator.GREATER_THAN),
            ((">",), Operator.GREATER_THAN),
            (("at", "least"), Operator.AT_LEAST),
            ((">=",), Operator.AT_LEAST),
            (("more", "than"), Operator.GREATER_THAN),
            (("between",), Operator.BETWEEN),
            (("contains", "any", "of"), Operator.CONTAINS_ANY_OF),
            (("contains", "all", "of"), Operator.CONTAINS_ALL_OF),
            (("contains",), Operator.CONTAINS),
            (("does", "not", "contain"), Operator.DOES_NOT_CONTAIN),
            (("starts", "with"), Operator.STARTS_WITH),
            (("in",), Operator.IN),
            (("not", "in"), Operator.NOT_IN),
            (("within", "the", "last"), Operator.WITHIN_LAST_DAYS),
            (("within", "last"), Operator.WITHIN_LAST_DAYS),
            (("within", "the", "next"), Operator.WITHIN_DAYS),
            (("within", "next"), Operator.WITHIN_DAYS),
            (("within",), Operator.WITHIN_DAYS),
            (("before",), Operator.BEFORE),
            (("after",), Operator.AFTER),
            (("on",), Operator.ON),
        ),
        key=lambda entry: -len(entry[0]),
    )
)

# The words that start each operator, used to suggest a fix for a mistyped operator.
_OPERATOR_HEADS: dict[Operator, str] = {
    Operator.WITHIN_DAYS: "within",
    Operator.WITHIN_LAST_DAYS: "within last",
    Operator.MORE_THAN_DAYS_AGO: "more than",
    Operator.MORE_THAN_DAYS_FROM_NOW: "more than",
}


class _Kind(Enum):
    WORD = auto()
    STRING = auto()
    SYMBOL = auto()
    OPEN = auto()
    CLOSE = auto()
    COMMA = auto()
    END = auto()


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str
    offset: int

    @property
    def folded(self) -> str:
        return self.text.casefold()

    def is_keyword(self, word: str) -> bool:
        return self.kind is _Kind.WORD and self.folded == word


# Parsing ---------------------------------------------------------------------------------------


def parse_rules(text: str, catalog: PropertyCatalog) -> RuleNode:
    """Parse rule text into a tree, resolving property names against `catalog`.

    Raises RuleSyntaxError, UnknownPropertyError, UnknownOperatorError or InvalidValueError with
    a message that names the offending text and the fix.
    """
    return _Parser(text, catalog).parse()


def _position(text: str, offset: int) -> str:
    if offset >= len(text):
        return "at the end of the text"
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    if line == 1:
        return f"at column {column}"
    return f"at line {line}, column {column}"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    offset = 0
    while offset < len(text):
        char = text[offset]
        if char.isspace():
            offset += 1
        elif char in "(),":
            kind = {"(": _Kind.OPEN, ")": _Kind.CLOSE, ",": _Kind.COMMA}[char]
            tokens.append(_Token(kind, char, offset))
            offset += 1
        elif char == '"':
            value, offset = _read_string(text, offset)
            tokens.append(value)
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, offset)), None)
            if symbol is not None:
                tokens.append(_Token(_Kind.SYMBOL, symbol, offset))
                offset += len(symbol)
                continue
            word = _BARE_WORD.match(text, offset)
            if word is None:
                raise RuleSyntaxError(
                    f'Unexpected "{char}" {_position(text, offset)}. Use "!=" for not equals, '
                    "and put text with special characters in double quotes.",
                    column=offset + 1,
                )
            tokens.append(_Token(_Kind.WORD, word.group(), offset))
            offset = word.end()
    tokens.append(_Token(_Kind.END, "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[_Token, int]:
    """Read the double-quoted string at `start`. A backslash escapes the next character."""
    chars: list[str] = []
    offset = start + 1
    while offset < len(text):
        char = text[offset]
        if char == "\\" and offset + 1 < len(text):
            chars.append(text[offset + 1])
            offset += 2
        elif char == '"':
            return _Token(_Kind.STRING, "".join(chars), start), offset + 1
        else:
            chars.append(char)
            offset += 1
    raise RuleSyntaxError(
        f'The quote {_position(text, start)} is never closed. Add a closing " after the text.',
        column=start + 1,
    )


class _Parser:
    def __init__(self, text: str, catalog: PropertyCatalog) -> None:
        self._text = text
        self._catalog = catalog
        self._tokens = _tokenize(text)
        self._pos = 0

    # Tokens

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._pos + ahead, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._peek()
        self._pos = min(self._pos + 1, len(self._tokens) - 1)
        return token

    def _where(self, token: _Token) -> str:
        return _position(self._text, token.offset)

    def _syntax_error(self, message: str, token: _Token) -> RuleSyntaxError:
        column = token.offset + 1 if token.kind is not _Kind.END else None
        return RuleSyntaxError(message, column=column)

    # Grammar: or := and (OR and)*, and := not (AND not)*, not := NOT not | primary

    def parse(self) -> RuleNode:
        if self._peek().kind is _Kind.END:
            raise RuleSyntaxError(
                "The rule text is empty. Write a rule such as: Health Score less than 4."
            )
        node = self._parse_or()
        token = self._peek()
        if token.kind is _Kind.CLOSE:
            raise self._syntax_error(
                f'Unexpected ")" {self._where(token)} with no matching "(".', token
            )
        if token.kind is not _Kind.END:
            raise self._syntax_error(
                f'Unexpected "{token.text}" {self._where(token)} after a complete rule. Join rules '
                "with AND or OR, and put text with spaces in double quotes.",
                token,
            )
        return node

    def _parse_or(self) -> RuleNode:
        nodes = [self._parse_and()]
        while self._peek().is_keyword("or"):
            self._advance()
            nodes.append(self._parse_and())
        return nodes[0] if len(nodes) == 1 else AnyOf(tuple(nodes))

    def _parse_and(self) -> RuleNode:
        nodes = [self._parse_not()]
        while self._peek().is_keyword("and"):
            self._advance()
            nodes.append(self._parse_not())
        return nodes[0] if len(nodes) == 1 else AllOf(tuple(nodes))

    def _parse_not(self) -> RuleNode:
        if self._peek().is_keyword("not"):
            self._advance()
            return Not(self._parse_not())
        return self._parse_primary()

    def _parse_primary(self) -> RuleNode:
        token = self._peek()
        if token.kind is not _Kind.OPEN:
            return self._parse_condition()

        self._advance()
        node = self._parse_or()
        closing = self._peek()
        if closing.kind is _Kind.END:
            raise self._syntax_error(f'Missing ")" to close the "(" {self._where(token)}.', token)
        if closing.kind is not _Kind.CLOSE:
            raise self._syntax_error(
                f'Unexpected "{closing.text}" {self._where(closing)}. Expected AND, OR or ")" '
                "after a rule, and text with spaces in double quotes.",
                closing,
            )
        self._advance()
        return node

    # Conditions

    def _parse_condition(self) -> Condition:
        start = self._peek()
        if start.kind is _Kind.END:
            previous = self._tokens[self._pos - 1].text if self._pos > 0 else ""
            raise self._syntax_error(
                f'Expected a rule after "{previous}", but the text ends there.', start
            )
        is_keyword = start.kind is _Kind.WORD and start.folded in _KEYWORDS
        if start.kind not in (_Kind.WORD, _Kind.STRING) or is_keyword:
            raise self._syntax_error(
                f'Expected a rule {self._where(start)}, but found "{start.text}".', start
            )

        prop = self._parse_property()
        operator, written = self._parse_operator(prop)
        operator, values = self._parse_values(prop, operator, written)
        condition = Condition(prop.key, operator, values)
        validate_condition(condition, prop)
        return condition

    def _parse_property(self) -> Property:
        token = self._peek()
        if token.kind is _Kind.STRING:
            self._advance()
            prop = self._catalog.lookup(token.text)
            if prop is None:
                raise UnknownPropertyError.for_name(token.text, self._catalog.suggest(token.text))
            return prop

        # An unquoted name may have several words, so take the longest run of words that names a
        # property and is followed by an operator.
        run_end = self._pos
        while _is_name_word(self._tokens[run_end]):
            run_end += 1
        fallback: tuple[Property, int] | None = None
        for end in range(run_end, self._pos, -1):
            prop = self._catalog.lookup(self._join(self._pos, end))
            if prop is None:
                continue
            if self._match_phrase(end) is not None:
                self._pos = end
                return prop
            fallback = fallback or (prop, end)
        if fallback is not None:
            self._pos = fallback[1]
            return fallback[0]
        raise self._unknown_property(run_end)

    def _join(self, start: int, end: int) -> str:
        return " ".join(token.text for token in self._tokens[start:end])

    def _unknown_property(self, run_end: int) -> UnknownPropertyError:
        # Name the words before the operator, or else the prefix closest to a known label, so a
        # typo in the name is not reported together with the rest of the rule.
        for end in range(self._pos + 1, run_end):
            if self._match_phrase(end) is not None:
                name = self._join(self._pos, end)
                return UnknownPropertyError.for_name(name, self._catalog.suggest(name))
        labels = [prop.label.casefold() for prop in self._catalog.properties()]
        best_name, best_score = self._join(self._pos, run_end), 0.0
        for end in range(self._pos + 1, run_end + 1):
            name = self._join(self._pos, end)
            for label in labels:
                score = difflib.SequenceMatcher(None, name.casefold(), label).ratio()
                if score > best_score:
                    best_name, best_score = name, score
        return UnknownPropertyError.for_name(best_name, self._catalog.suggest(best_name))

    # Operators

    def _match_phrase(self, index: int) -> tuple[Operator, int] | None:
        """Match an operator phrase at token `index`, returning it and the index after it."""
        for words, meaning in _PHRASES:
            tokens = self._tokens[index : index + len(words)]
            if len(tokens) == len(words) and all(
                token.kind in (_Kind.WORD, _Kind.SYMBOL) and token.folded == word
                for token, word in zip(tokens, words, strict=True)
            ):
                return meaning, index + len(words)
        return None

    def _parse_operator(self, prop: Property) -> tuple[Operator, str]:
        matched = self._match_phrase(self._pos)
        if matched is None:
            raise self._unknown_operator(prop)
        meaning, end = matched
        written = self._join(self._pos, end)
        self._pos = end

        if prop.type is ValueType.DATE and written.casefold() == "more than":
            return Operator.MORE_THAN_DAYS_AGO, written
        if meaning not in OPERATORS_BY_TYPE[prop.type]:
            raise UnknownOperatorError.for_property(meaning, prop, written=written)
        return meaning, written

    def _unknown_operator(self, prop: Property) -> RuleSyntaxError | UnknownOperatorError:
        token = self._peek()
        choices = [operator_label(op) for op in OPERATORS_BY_TYPE[prop.type]]
        end = self._pos
        while self._tokens[end].kind in (_Kind.WORD, _Kind.SYMBOL) and not _looks_like_value(
            self._tokens[end]
        ):
            end += 1
        if end == self._pos:
            return self._syntax_error(
                f"Expected an operator after {prop.label} {self._where(token)}, such as: "
                f"{', '.join(choices)}.",
                token,
            )

        heads = {
            _OPERATOR_HEADS.get(op, operator_label(op)): operator_label(op)
            for op in OPERATORS_BY_TYPE[prop.type]
        }
        best: tuple[float, str, str] | None = None
        for stop in range(self._pos + 1, end + 1):
            written = self._join(self._pos, stop)
            for head, label in heads.items():
                score = difflib.SequenceMatcher(None, written.casefold(), head).ratio()
                if score >= 0.6 and (best is None or score > best[0]):
                    best = (score, written, label)
        if best is not None:
            return UnknownOperatorError(
                f'Unknown operator "{best[1]}" after {prop.label}. Did you mean "{best[2]}"?'
            )
        return UnknownOperatorError(
            f'Unknown operator "{self._join(self._pos, end)}" after {prop.label}. '
            f"Use one of: {', '.join(choices)}."
        )

    # Values

    def _parse_values(
        self, prop: Property, operator: Operator, written: str
    ) -> tuple[Operator, tuple[RuleValue, ...]]:
        """Read the operator's values, and tell `more than N days` ago from `from now`."""
        if operator in _NO_VALUE:
            return operator, ()
        if operator in DAY_COUNT_OPERATORS:
            return self._parse_day_phrase(prop, operator, written)
        if operator in (Operator.BEFORE, Operator.AFTER, Operator.ON):
            return operator, (self._parse_date(prop, written),)
        if operator is Operator.BETWEEN:
            return operator, self._parse_between(prop, written)
        if operator in _TEXT_LIST:
            return operator, self._parse_text_list(prop, written)
        if prop.type is ValueType.NUMBER:
            return operator, (self._parse_number(prop, written),)
        return operator, (self._parse_text(prop, written),)

    def _expect_value(self, prop: Property, written: str, kind: str) -> _Token:
        token = self._peek()
        if token.kind is _Kind.END:
            raise self._syntax_error(
                f'{prop.label} "{written}" needs {kind} after it, but the text ends there.', token
            )
        is_keyword = token.kind is _Kind.WORD and token.folded in _KEYWORDS
        if token.kind not in (_Kind.WORD, _Kind.STRING) or is_keyword:
            raise self._syntax_error(
                f'{prop.label} "{written}" needs {kind} {self._where(token)}, '
                f'but found "{token.text}".',
                token,
            )
        self._advance()
        return token

    def _parse_number(self, prop: Property, written: str) -> int | float:
        token = self._expect_value(prop, written, "a number")
        number = _read_number(token.text)
        if number is None:
            raise InvalidValueError(
                f'{prop.label} is a number, so "{written}" needs a number, but got '
                f'"{token.text}" {self._where(token)}.'
            )
        # Previews print numbers as "62,000", so people copy that form back into rules.
        following = self._peek()
        if following.kind is _Kind.COMMA and re.fullmatch(r"\d{3}", self._peek(1).text):
            grouped = f"{token.text},{self._peek(1).text}"
            raise InvalidValueError(
                f'Write numbers without thousands separators: "{grouped.replace(",", "")}", '
                f'not "{grouped}" {self._where(token)}.'
            )
        return number

    def _parse_text(self, prop: Property, written: str) -> str:
        token = self._expect_value(prop, written, "a value")
        if not token.text.strip():
            raise InvalidValueError(
                f'{prop.label} "{written}" needs a non-blank value {self._where(token)}. '
                f'To match companies without a {prop.label}, write "{prop.label} is empty".'
            )
        return token.text

    def _parse_date(self, prop: Property, written: str) -> date:
        token = self._expect_value(prop, written, "a date (YYYY-MM-DD)")
        day = parse_iso_date(token.text.strip())
        if day is not None:
            return day
        if _DATE_SHAPE.fullmatch(token.text.strip()):
            raise InvalidValueError(
                f'"{token.text}" {self._where(token)} is not a real calendar date. '
                "Check the month and day."
            )
        raise InvalidValueError(
            f'{prop.label} is a date, so "{written}" needs a date written YYYY-MM-DD, '
            f'but got "{token.text}" {self._where(token)}.'
        )

    def _parse_day_phrase(
        self, prop: Property, operator: Operator, written: str
    ) -> tuple[Operator, tuple[int]]:
        token = self._expect_value(prop, written, "a number of days")
        days = _read_number(token.text)
        if not isinstance(days, int) or days < 0:
            raise InvalidValueError(
                f'"{written}" needs a whole number of days, 0 or more, but got "{token.text}" '
                f"{self._where(token)}."
            )

        unit = self._peek()
        if not (unit.is_keyword("days") or unit.is_keyword("day")):
            raise self._syntax_error(
                f'Expected "days" after "{written} {token.text}" {self._where(unit)}.', unit
            )
        self._advance()
        if operator is not Operator.MORE_THAN_DAYS_AGO:
            return operator, (days,)

        # `more than N days` was read as "ago" so far, and the words after the unit decide.
        tail = self._peek()
        if tail.is_keyword("ago"):
            self._advance()
            return Operator.MORE_THAN_DAYS_AGO, (days,)
        if tail.is_keyword("from") and self._peek(1).is_keyword("now"):
            self._advance()
            self._advance()
            return Operator.MORE_THAN_DAYS_FROM_NOW, (days,)
        raise self._syntax_error(
            f'Expected "ago" or "from now" after "{written} {token.text} days" '
            f"{self._where(tail)}.",
            tail,
        )

    def _parse_between(self, prop: Property, written: str) -> tuple[RuleValue, RuleValue]:
        low: RuleValue
        high: RuleValue
        if prop.type is ValueType.DATE:
            low = self._parse_date(prop, written)
        else:
            low = self._parse_number(prop, written)

        separator = self._peek()
        if not separator.is_keyword("and"):
            raise self._syntax_error(
                f'Expected "and" between the two values of "between" {self._where(separator)}, '
                f"as in: {prop.label} between 3 and 7.",
                separator,
            )
        self._advance()

        if prop.type is ValueType.DATE:
            high = self._parse_date(prop, written)
        else:
            high = self._parse_number(prop, written)
        if low > high:  # type: ignore[operator]
            low_text, high_text = _format_value(low), _format_value(high)
            raise InvalidValueError(
                f"{prop.label} between {low_text} and {high_text} can match nothing, because "
                f'{low_text} is above {high_text}. Write "between {high_text} and {low_text}".'
            )
        return low, high

    def _parse_text_list(self, prop: Property, written: str) -> tuple[str, ...]:
        opening = self._peek()
        if opening.kind is not _Kind.OPEN:
            raise self._syntax_error(
                f'Expected "(" after "{written}" {self._where(opening)}, as in: '
                f'{prop.label} {written} ("A", "B").',
                opening,
            )
        self._advance()
        if self._peek().kind is _Kind.CLOSE:
            raise InvalidValueError(
                f'{prop.label} "{written}" needs at least one value inside the parentheses '
                f"{self._where(opening)}."
            )

        items = [self._parse_text(prop, written)]
        while True:
            token = self._peek()
            if token.kind is _Kind.CLOSE:
                self._advance()
                return tuple(items)
            if token.kind is not _Kind.COMMA:
                raise self._syntax_error(
                    f'Expected "," or ")" {self._where(token)} in the list after "{written}", '
                    "and text with spaces in double quotes.",
                    token,
                )
            self._advance()
            items.append(self._parse_text(prop, written))


def _is_name_word(token: _Token) -> bool:
    return token.kind is _Kind.WORD and token.folded not in ("and", "or")


def _looks_like_value(token: _Token) -> bool:
    return token.kind is _Kind.WORD and (
        _NUMBER.fullmatch(token.text) is not None or _DATE_SHAPE.fullmatch(token.text) is not None
    )


def _read_number(text: str) -> int | float | None:
    """Read a rule number: an int when written without a point or exponent, else a float."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        if any(char in text for char in ".eE"):
            number = float(text)
            return number if math.isfinite(number) else None
        return int(text)
    except ValueError:
        # Python refuses to convert ints with thousands of digits.
        return None


# Formatting ------------------------------------------------------------------------------------


def format_rules(node: RuleNode, catalog: PropertyCatalog) -> str:
    """Write a rule tree in the canonical text form, which `parse_rules` reads back unchanged.

    A property key missing from `catalog` (a deleted custom field) is written quoted as its key,
    so the text still shows the rule, but it no longer parses.
    """
    if isinstance(node, Condition):
        return f"{_format_property(node.property, catalog)} {format_comparison(node)}"
    if isinstance(node, Not):
        return f"NOT {_format_operand(node.child, catalog)}"
    joiner = " AND " if isinstance(node, AllOf) else " OR "
    return joiner.join(_format_operand(child, catalog) for child in node.children)


def _format_operand(node: RuleNode, catalog: PropertyCatalog) -> str:
    text = format_rules(node, catalog)
    return f"({text})" if isinstance(node, AllOf | AnyOf) else text


def format_comparison(condition: Condition) -> str:
    """Write a condition's operator and values without the property: `less than 4`, `in ("A")`."""
    operator = condition.operator
    values = [_format_value(value) for value in condition.values]
    if operator is Operator.BETWEEN:
        return f"between {values[0]} and {values[1]}"
    if operator in _TEXT_LIST:
        return f"{operator_label(operator)} ({', '.join(values)})"
    if operator is Operator.WITHIN_DAYS:
        return f"within {values[0]} days"
    if operator is Operator.WITHIN_LAST_DAYS:
        return f"within last {values[0]} days"
    if operator is Operator.MORE_THAN_DAYS_AGO:
        return f"more than {values[0]} days ago"
    if operator is Operator.MORE_THAN_DAYS_FROM_NOW:
        return f"more than {values[0]} days from now"
    return " ".join([operator_label(operator), *values])


def _format_value(value: RuleValue) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same float.
        return repr(value)
    return str(value)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _format_property(key: str, catalog: PropertyCatalog) -> str:
    try:
        prop = catalog.get(key)
    except UnknownPropertyError:
        return _quote(key)
    # A custom field named like a built-in is only reachable with the `custom.` prefix.
    name = prop.label
    if catalog.lookup(name) != prop:
        name = CUSTOM_PREFIX + prop.label
    return name if _can_stay_unquoted(name, prop, catalog) else _quote(name)


def _can_stay_unquoted(name: str, prop: Property, catalog: PropertyCatalog) -> bool:
    """Tell whether `name` reads back as `prop` without quotes.

    Built-in labels and single simple words qualify, unless another name in the catalog starts
    with the same words, because the parser takes the longest run of words that names a property.
    """
    if name.casefold().startswith(CUSTOM_PREFIX):
        return False
    if prop.is_custom and (not _SIMPLE_NAME.fullmatch(name) or name.casefold() in _KEYWORDS):
        return False
    longer = name.casefold() + " "
    return not any(other.startswith(longer) for other in catalog.names())
