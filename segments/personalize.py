"""Personalize a broadcast message with each company's Planhat values.

A message may contain variables such as `{{company.name}}`, `{{renewal_date}}` or
`{{custom.Seats Purchased}}`, with a fallback written as `{{renewal_date | default: "soon"}}`.
`parse_template` checks the variables against the property catalog, `capture_variables` reads a
company's display values when the audience is resolved, and `renderer_for` turns the stored values
of a delivery into the text and blocks that the sender posts. A channel with several companies
gets the values of its first company by name (`sample_company`).
"""

from __future__ import annotations

import copy
import difflib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from planhat.models import Company
from segments.errors import UserFacingError
from segments.evaluate import EvaluationContext
from segments.ports import DeliveryRecord, DeliveryTarget, QualifyingCompany
from segments.properties import CUSTOM_PREFIX, Property, PropertyCatalog, ValueType
from segments.sending import RenderedMessage, Renderer
from segments.slack_text import escape_mrkdwn
from segments.values import format_value, read_day, read_list, read_text

logger = logging.getLogger(__name__)

COMPANY_NAME = "company.name"
DAYS_UNTIL_RENEWAL = "days_until_renewal"
# The built-in property that `days_until_renewal` is computed from.
_RENEWAL_KEY = "renewal_date"
# The catalog's `name` property is reached as `company.name`, which reads `Company.name`.
_NAME_KEY = "name"

# Maximum company names listed when values are missing, so the sentence stays readable in Slack.
MAX_LISTED_COMPANIES = 20

# Shortest misspelled name compared with the start of longer names when suggesting a variable.
_MIN_PREFIX_LENGTH = 4

_OPEN = "{{"
_CLOSE = "}}"
_DEFAULT_FILTER = re.compile(r"default\s*:\s*(?P<value>.*)", re.IGNORECASE | re.DOTALL)
# Straight quotes, and the curly quotes that macOS and iOS substitute while a person types.
_DOUBLE_QUOTES = frozenset('"“”„')
_SINGLE_QUOTES = frozenset("'‘’")
_EXAMPLE_VARIABLES = (
    "{{company.name}}, {{health_score}}, {{lifecycle_stage}}, {{renewal_date}}, "
    "{{days_until_renewal}}, {{arr}} or {{custom.FIELD NAME}}"
)


class TemplateError(UserFacingError):
    """A message whose variables cannot be read, with the fix in the message.

    `variable` is the text between the braces as written, or None for an unclosed `{{`, and
    `suggestion` is the closest valid variable, if any.
    """

    def __init__(
        self, message: str, *, variable: str | None = None, suggestion: str | None = None
    ) -> None:
        super().__init__(message)
        self.variable = variable
        self.suggestion = suggestion


@dataclass(frozen=True)
class Placeholder:
    """One `{{...}}` in a message: the canonical variable name and the sender's fallback, if any."""

    name: str
    fallback: str | None = None


@dataclass(frozen=True)
class Template:
    """A message split into literal text and placeholders."""

    source: str
    parts: tuple[str | Placeholder, ...]

    @property
    def variables(self) -> tuple[str, ...]:
        """The canonical variable names the message uses, without repeats, in order of use."""
        names = (part.name for part in self.parts if isinstance(part, Placeholder))
        return tuple(dict.fromkeys(names))

    def render(self, variables: Mapping[str, str], *, escape_values: bool = True) -> str:
        """Fill in each placeholder from `variables`, or its fallback when the value is empty.

        Values are escaped with `escape_mrkdwn` unless `escape_values` is False, which is right
        only for text that Slack shows literally (rich text `text` elements). A value that is
        empty and has no fallback renders as empty text, so check `missing` first.
        """
        pieces: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = variables.get(part.name, "")
            if value:
                pieces.append(escape_mrkdwn(value) if escape_values else value)
            elif part.fallback is not None:
                pieces.append(part.fallback)
        return "".join(pieces)

    def missing(self, variables: Mapping[str, str]) -> list[str]:
        """List the variables used without a fallback whose value is empty, in order of use."""
        names = (
            part.name
            for part in self.parts
            if isinstance(part, Placeholder)
            and part.fallback is None
            and not variables.get(part.name)
        )
        return list(dict.fromkeys(names))


def parse_template(text: str, catalog: PropertyCatalog) -> Template:
    """Split `text` into literal text and placeholders, checking each variable against `catalog`.

    Variable names ignore case and the spaces inside the braces. A `}}` without an opening `{{`
    is kept as text. Raises TemplateError for an unclosed `{{`, an empty or unknown variable, or
    a filter other than `default: "text"`.
    """
    return _parse(text, _VariableNames(catalog))


def check_template_syntax(text: str) -> None:
    """Raise TemplateError for anything `parse_template` rejects, except unknown custom fields.

    Needs no Planhat call, so a Slack handler can run it before its 3-second ack. Every
    `{{custom.NAME}}` passes here and is checked later by `parse_template` with the real catalog.
    """
    _parse(text, _VariableNames(PropertyCatalog.builtin(), accept_any_custom=True))


def _parse(text: str, names: _VariableNames) -> Template:
    parts: list[str | Placeholder] = []
    position = 0
    while (start := text.find(_OPEN, position)) != -1:
        end = text.find(_CLOSE, start + len(_OPEN))
        reopened = text.find(_OPEN, start + len(_OPEN))
        if end == -1 or (reopened != -1 and reopened < end):
            shown = text[start : start + 30].split("\n", 1)[0]
            raise TemplateError(
                f'The variable starting "{shown}" has no closing "}}}}". '
                "Close it, as in {{company.name}}."
            )
        if start > position:
            parts.append(text[position:start])
        parts.append(_placeholder(text[start + len(_OPEN) : end], names))
        position = end + len(_CLOSE)
    if position < len(text):
        parts.append(text[position:])
    return Template(source=text, parts=tuple(parts))


def _placeholder(inside: str, names: _VariableNames) -> Placeholder:
    written, bar, filter_text = inside.partition("|")
    name = names.canonical(" ".join(written.split()))
    if not bar:
        return Placeholder(name=name)

    fallback_example = f'{{{{{name} | default: "soon"}}}}'
    match = _DEFAULT_FILTER.fullmatch(filter_text.strip())
    if match is None:
        raise TemplateError(
            f'"{{{{{inside.strip()}}}}}" uses an unknown filter. The only filter is default, '
            f"as in {fallback_example}.",
            variable=inside.strip(),
        )
    quoted = match["value"].strip()
    if len(quoted) < 2 or not any(
        quoted[0] in quotes and quoted[-1] in quotes for quotes in (_DOUBLE_QUOTES, _SINGLE_QUOTES)
    ):
        raise TemplateError(
            f'The fallback in "{{{{{inside.strip()}}}}}" must be in double quotes, as in '
            f"{fallback_example}.",
            variable=inside.strip(),
        )
    return Placeholder(name=name, fallback=quoted[1:-1])


class _VariableNames:
    """The variable names a catalog allows, mapped to their canonical form, with suggestions."""

    def __init__(self, catalog: PropertyCatalog, *, accept_any_custom: bool = False) -> None:
        self._catalog = catalog
        self._accept_any_custom = accept_any_custom
        builtins = [prop for prop in catalog.properties() if not prop.is_custom]
        self._builtin_keys = {
            prop.key.casefold(): prop.key for prop in builtins if prop.key != _NAME_KEY
        }
        self._builtin_keys[COMPANY_NAME] = COMPANY_NAME
        self._builtin_keys[DAYS_UNTIL_RENEWAL] = DAYS_UNTIL_RENEWAL

        # Close spellings people may type, each mapped to the variable it most likely means.
        self._spellings: dict[str, str] = {
            "company": COMPANY_NAME,
            "days until renewal": DAYS_UNTIL_RENEWAL,
        }
        for prop in builtins:
            canonical = COMPANY_NAME if prop.key == _NAME_KEY else prop.key
            for spelling in (prop.key, prop.label, *prop.aliases):
                self._spellings.setdefault(spelling.casefold(), canonical)
        for prop in catalog.properties():
            if prop.is_custom:
                self._spellings.setdefault(prop.label.casefold(), CUSTOM_PREFIX + prop.label)
                self._spellings.setdefault(
                    (CUSTOM_PREFIX + prop.label).casefold(), CUSTOM_PREFIX + prop.label
                )
        for canonical in self._builtin_keys.values():
            self._spellings.setdefault(canonical, canonical)

    def canonical(self, written: str) -> str:
        if not written:
            raise TemplateError(
                '"{{}}" names no variable. Write one such as {{company.name}}, '
                "or remove the braces.",
                variable="",
            )
        folded = written.casefold()
        if folded.startswith(CUSTOM_PREFIX):
            return self._custom(written, field_name=written[len(CUSTOM_PREFIX) :].strip())
        known = self._builtin_keys.get(folded)
        if known is not None:
            return known
        suggestion = self._suggest(folded, self._spellings)
        if suggestion is not None:
            message = f'Unknown variable "{{{{{written}}}}}". Did you mean {{{{{suggestion}}}}}?'
        else:
            message = f'Unknown variable "{{{{{written}}}}}". Use {_EXAMPLE_VARIABLES}.'
        raise TemplateError(message, variable=written, suggestion=suggestion)

    def _custom(self, written: str, *, field_name: str) -> str:
        prop = self._catalog.lookup(CUSTOM_PREFIX + field_name) if field_name else None
        if prop is not None:
            return CUSTOM_PREFIX + prop.label
        if self._accept_any_custom and field_name:
            return CUSTOM_PREFIX + field_name
        labels = {
            prop.label.casefold(): CUSTOM_PREFIX + prop.label
            for prop in self._catalog.properties()
            if prop.is_custom
        }
        suggestion = self._suggest(field_name.casefold(), labels)
        if suggestion is not None:
            message = (
                f'No Planhat custom field is named "{field_name}". '
                f"Did you mean {{{{{suggestion}}}}}?"
            )
        else:
            message = (
                f'No Planhat custom field is named "{field_name}". Write the field name exactly as '
                "Planhat shows it, as in {{custom.Seats Purchased}}."
            )
        raise TemplateError(message, variable=written, suggestion=suggestion)

    @staticmethod
    def _suggest(folded: str, candidates: Mapping[str, str]) -> str | None:
        if folded in candidates:
            return candidates[folded]
        matches = difflib.get_close_matches(folded, list(candidates), n=1, cutoff=0.6)
        if matches:
            return candidates[matches[0]]
        # A misspelled start of a long name ("Seets" for "Seats Purchased") is compared with the
        # same number of leading characters, since the whole name is too different.
        if len(folded) >= _MIN_PREFIX_LENGTH:
            prefixes = {candidate[: len(folded)]: candidate for candidate in candidates}
            matches = difflib.get_close_matches(folded, list(prefixes), n=1, cutoff=0.75)
            if matches:
                return candidates[prefixes[matches[0]]]
        return None


# Reading values


def template_fields(template: Template, catalog: PropertyCatalog) -> list[str]:
    """Return the raw Planhat field paths the template's variables read, for the company select."""
    fields: list[str] = []
    for name in template.variables:
        prop = _property_for(name, catalog)
        if prop is not None:
            fields.append(prop.source)
    return fields


def capture_variables(
    company: Company, template: Template, catalog: PropertyCatalog, context: EvaluationContext
) -> dict[str, str]:
    """Read the display value of each variable the template uses, leaving out empty values.

    Numbers read as `62,000`, dates as `YYYY-MM-DD` in the context's time zone, lists as
    `A, B`, and `days_until_renewal` as whole days from the context's today, negative once the
    renewal date has passed.
    """
    variables: dict[str, str] = {}
    for name in template.variables:
        value = _display_value(company, name, catalog=catalog, context=context)
        if value:
            variables[name] = value
    return variables


def _property_for(name: str, catalog: PropertyCatalog) -> Property | None:
    """Return the catalog property behind a canonical variable name, None for `company.name`."""
    if name == COMPANY_NAME:
        return None
    if name == DAYS_UNTIL_RENEWAL:
        return catalog.get(_RENEWAL_KEY)
    if name.startswith(CUSTOM_PREFIX):
        prop = catalog.lookup(name)
        if prop is None:
            raise TemplateError(
                f'No Planhat custom field is named "{name.removeprefix(CUSTOM_PREFIX)}" any more. '
                "Update the message and send again.",
                variable=name,
            )
        return prop
    return catalog.get(name)


def _display_value(
    company: Company, name: str, *, catalog: PropertyCatalog, context: EvaluationContext
) -> str | None:
    if name == COMPANY_NAME:
        return company.name.strip() or None
    prop = _property_for(name, catalog)
    assert prop is not None
    raw = company.get(prop.source)
    if name == DAYS_UNTIL_RENEWAL:
        day = read_day(raw, context.timezone)
        return None if day is None else f"{(day - context.today).days:,}"
    # Text and lists are read without `format_value`, which cuts them to 80 characters for tables.
    if prop.type is ValueType.TEXT:
        return read_text(raw)
    if prop.type is ValueType.LIST:
        items = read_list(raw)
        return None if items is None else ", ".join(items)
    text = format_value(raw, prop, tz=context.timezone)
    # `format_value` shows an empty or unreadable number, date or checkbox as "empty".
    return None if text == "empty" else text


# Which company's values a channel gets


def sample_company(companies: Sequence[QualifyingCompany]) -> QualifyingCompany | None:
    """Return the company whose values a channel's message uses: the first by name.

    Companies without a name come last, and equal names are ordered by company id, so the choice
    is the same at confirmation, at send time and on resume.
    """
    if not companies:
        return None
    return min(
        companies,
        key=lambda company: (
            not company.company_name.strip(),
            company.company_name.casefold(),
            company.company_id,
        ),
    )


def sample_target(targets: Sequence[DeliveryTarget]) -> DeliveryTarget | None:
    """Return the channel shown in a preview: the first by channel name, then by id."""
    if not targets:
        return None
    return min(targets, key=lambda target: (target.channel_name, target.channel_id))


@dataclass(frozen=True)
class MissingValues:
    """Companies whose message would need a value they lack, and the variables concerned."""

    variables: tuple[str, ...]
    company_names: tuple[str, ...]

    def describe(self) -> str:
        """Return one mrkdwn sentence with the fix, listing the first 20 companies by name."""
        count = len(self.company_names)
        subject = "1 company has" if count == 1 else f"{count:,} companies have"
        variables = " or ".join(f"`{{{{{name}}}}}`" for name in self.variables)
        listed = [
            escape_mrkdwn(name) if name.strip() else "(no name)" for name in self.company_names
        ]
        shown = listed[:MAX_LISTED_COMPANIES]
        if count > len(shown):
            shown.append(f"and {count - len(shown):,} more")
        example = f'`{{{{{self.variables[0]} | default: "…"}}}}`'
        return (
            f"Not sent: {subject} no value for {variables}, and the message has no fallback "
            "for it: "
            f"{', '.join(shown)}. Add a fallback such as {example}, or fill in the values in "
            "Planhat, then send again."
        )


def find_missing_values(
    targets: Iterable[DeliveryTarget], template: Template
) -> MissingValues | None:
    """Check each channel's message company for values the template needs and lacks.

    Only the company whose values a channel gets (`sample_company`) is checked, because the
    other companies of a shared channel do not appear in its message. Returns None when every
    channel's message can be filled in.
    """
    missing_names: dict[str, None] = {}
    companies: dict[str, str] = {}
    for target in targets:
        company = sample_company(target.companies)
        if company is None:
            continue
        missing = template.missing(company.variables)
        if missing:
            missing_names.update(dict.fromkeys(missing))
            companies[company.company_id] = company.company_name
    if not companies:
        return None
    names = sorted(companies.values(), key=lambda name: (not name.strip(), name.casefold(), name))
    return MissingValues(variables=tuple(missing_names), company_names=tuple(names))


# Rendering messages


class MessageRenderer:
    """Render a message's mrkdwn text and `rich_text` blocks with one company's values.

    Values from Planhat are escaped with `escape_mrkdwn` in the mrkdwn text, so CRM text such as
    `<!channel> Acme` shows literally and notifies nobody. In `rich_text` blocks they are inserted
    as they are, because a rich text `text` element is plain text: mentions and broadcasts are
    separate `user` and `broadcast` elements in Slack's Block Kit reference. A fallback is the
    sender's own text, so it stays as the sender wrote it in each form, like the rest of the
    message.
    """

    def __init__(
        self,
        *,
        message_text: str,
        message_blocks: Sequence[Mapping[str, Any]] | None,
        catalog: PropertyCatalog,
    ) -> None:
        self._text = parse_template(message_text, catalog)
        self._blocks = (
            [copy.deepcopy(dict(block)) for block in message_blocks] if message_blocks else None
        )
        self._block_texts: dict[str, Template] = {}
        for text in _block_texts(self._blocks or []):
            if text not in self._block_texts:
                self._block_texts[text] = parse_template(text, catalog)
        self.is_personalized = bool(self._text.variables) or any(
            template.variables for template in self._block_texts.values()
        )

    @property
    def template(self) -> Template:
        """The template of the mrkdwn text, which the send modal derives from the blocks."""
        return self._text

    def render(self, variables: Mapping[str, str]) -> RenderedMessage:
        """Return the text (values escaped) and blocks (values as typed) for these values."""
        if not self.is_personalized:
            return RenderedMessage(text=self._text.source, blocks=copy.deepcopy(self._blocks))
        blocks = None
        if self._blocks is not None:
            blocks = [self._render_block(block, variables) for block in self._blocks]
        return RenderedMessage(text=self._text.render(variables), blocks=blocks)

    def render_for(self, companies: Sequence[QualifyingCompany]) -> RenderedMessage:
        """Render the message a channel with these qualifying companies gets."""
        company = sample_company(companies)
        return self.render(company.variables if company is not None else {})

    def render_delivery(self, delivery: DeliveryRecord) -> RenderedMessage:
        """Render a delivery's message from the company values stored with it (a `Renderer`)."""
        if self.is_personalized and not delivery.companies:
            # NOTE: without stored companies the placeholders render as their fallback or as
            # empty text. Deliveries recorded before values were stored have none.
            logger.warning(
                "Delivery %d to %s has no stored company values, so its variables render empty",
                delivery.id,
                delivery.channel_id,
            )
        return self.render_for(delivery.companies)

    def _render_block(
        self, block: Mapping[str, Any], variables: Mapping[str, str]
    ) -> dict[str, Any]:
        rendered = copy.deepcopy(dict(block))
        for element in _inline_elements(rendered):
            text = element.get("text")
            if (
                element.get("type") in _TEXT_ELEMENT_TYPES
                and isinstance(text, str)
                and text in self._block_texts
            ):
                # Rich text shows this text literally, so values go in unescaped.
                element["text"] = self._block_texts[text].render(variables, escape_values=False)
        return rendered


def renderer_for(
    message_text: str, message_blocks: Sequence[Mapping[str, Any]] | None, catalog: PropertyCatalog
) -> Renderer:
    """Return the sender's hook that renders each delivery with its stored company values.

    The values come from `DeliveryRecord.companies`, captured when the audience was resolved, so
    a fresh send and a resume after a restart post the same text. Raises TemplateError at once
    when the message no longer fits `catalog`, for example after a custom field was renamed.
    """
    renderer = MessageRenderer(
        message_text=message_text, message_blocks=message_blocks, catalog=catalog
    )
    return renderer.render_delivery


# Rich text inline elements whose `text` may hold variables. A link's `text` is its label.
# NOTE: a variable in a link's URL is filled in only in the mrkdwn text, not in the block.
_TEXT_ELEMENT_TYPES = frozenset({"text", "link"})
_SECTION_TYPES = frozenset({"rich_text_section", "rich_text_quote", "rich_text_preformatted"})


def _inline_elements(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the inline elements of a `rich_text` block, in list items too, as live references."""
    if block.get("type") != "rich_text":
        return []
    found: list[dict[str, Any]] = []
    for element in block.get("elements") or []:
        for inline_list in _inline_lists(element):
            found.extend(item for item in inline_list if isinstance(item, dict))
    return found


def _inline_lists(element: Mapping[str, Any]) -> list[list[Any]]:
    if element.get("type") in _SECTION_TYPES:
        return [element.setdefault("elements", [])] if isinstance(element, dict) else []
    if element.get("type") == "rich_text_list":
        return [
            item.setdefault("elements", [])
            for item in element.get("elements") or []
            if isinstance(item, dict)
        ]
    return []


def _block_texts(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    texts: list[str] = []
    for block in blocks:
        for element in _inline_elements(block):
            text = element.get("text")
            if (
                element.get("type") in _TEXT_ELEMENT_TYPES
                and isinstance(text, str)
                and _OPEN in text
            ):
                texts.append(text)
    return texts


def join_split_variables(block: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a `rich_text` block where no variable spans several inline elements.

    Slack's editor splits text where the style changes and may turn a name such as
    `company.name` into a link, so `{{company.name}}` can arrive in pieces. From an element
    with an unclosed `{{`, the visible text of the following text and link elements is joined
    into it until the `}}`, keeping the first element's style. Other elements end the join.
    """
    joined = copy.deepcopy(dict(block))
    for element in joined.get("elements") or []:
        if not isinstance(element, dict):
            continue
        for inline_list in _inline_lists(element):
            inline_list[:] = _join_inline(inline_list)
    return joined


def _join_inline(elements: Sequence[Any]) -> list[Any]:
    result: list[Any] = []
    open_element: dict[str, Any] | None = None
    for element in elements:
        if open_element is not None:
            visible = _visible_text(element)
            if visible is None:
                result.append(open_element)
                open_element = None
            else:
                rest = _join_until_closed(open_element, element, visible)
                if _has_unclosed_variable(open_element["text"]):
                    continue
                result.append(open_element)
                open_element = None
                if not rest:
                    continue
                element = {**element, "text": rest}
        if (
            isinstance(element, dict)
            and element.get("type") == "text"
            and _has_unclosed_variable(str(element.get("text", "")))
        ):
            open_element = dict(element)
            continue
        result.append(element)
    if open_element is not None:
        result.append(open_element)
    return result


def _join_until_closed(open_element: dict[str, Any], element: Any, visible: str) -> str:
    """Append `visible` to `open_element` up to the `}}` and return the text left over.

    Only a text element is split, so the rest keeps its own style. A link joins whole.
    """
    joined = open_element["text"] + visible
    close = joined.find(_CLOSE, open_element["text"].rfind(_OPEN))
    end = close + len(_CLOSE)
    if close == -1 or not isinstance(element, Mapping) or element.get("type") != "text":
        end = len(joined)
    open_element["text"] = joined[:end]
    return joined[end:]


def _visible_text(element: Any) -> str | None:
    if not isinstance(element, Mapping):
        return None
    if element.get("type") == "text":
        return str(element.get("text", ""))
    if element.get("type") == "link":
        label = element.get("text")
        if label:
            return str(label)
        # An automatic link shows its address as typed, without the scheme Slack added.
        return re.sub(r"^https?://", "", str(element.get("url", "")))
    return None


def _has_unclosed_variable(text: str) -> bool:
    return text.rfind(_OPEN) > text.rfind(_CLOSE)
