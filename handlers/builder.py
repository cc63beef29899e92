"""The rule-builder modal behind `/segment new` and `/segment edit NAME`.

`open_builder` opens the modal at once with the built-in properties, then adds the workspace's
Planhat custom fields with `views.update`. Property and comparison changes, Add rule, Remove rule
and Preview redraw the modal from its own state; Save validates every row inline, checks the
permission, stores the segment and confirms it to the person with the canonical rule text.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from db.stores import SegmentNotFound, validate_segment_name
from handlers.common import error_text, team_and_user, tell_user
from handlers.views.builder import (
    ADD_ROW_ACTION,
    CALLBACK_ID,
    MAX_SELECT_OPTIONS,
    NAME_BLOCK,
    OPERATOR_ACTION,
    PREVIEW_ACTION,
    PROPERTY_ACTION,
    REMOVE_ROW_ACTION,
    RULES_TEXT_BLOCK,
    BuilderForm,
    MatchMode,
    ModalContext,
    Row,
    ValueBase,
    builder_view,
    conditions_for_rows,
    layout_fits,
    not_allowed_view,
    operator_block_id,
    preview_audience_blocks,
    preview_error_blocks,
    preview_pending_blocks,
    preview_problem_blocks,
    property_block_id,
    property_option_groups,
    read_form,
    row_from_condition,
    settle_rows,
    value_block_ids,
)
from planhat.errors import PlanhatError
from segments.permissions import NOT_ALLOWED
from segments.ports import DuplicateSegmentName, SegmentRecord
from segments.properties import Property, PropertyCatalog, ValueType
from segments.rules import (
    OPERATORS_BY_TYPE,
    AllOf,
    AnyOf,
    Condition,
    Operator,
    RuleError,
    RuleNode,
    RuleValue,
    UnknownOperatorError,
    parse_iso_date,
    rule_properties,
    rules_from_json,
    rules_to_json,
    validate_condition,
)
from segments.slack_text import escape_mrkdwn
from segments.text import format_rules, parse_rules
from segments.values import read_list, read_text

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

# Built-in text and list properties whose values are offered in a select, from the values seen
# in the companies Planhat returns.
CHOICE_PROPERTIES = ("lifecycle_stage", "status", "tags")
# Slack closes a view_submission or options request that is not acknowledged within 3 seconds,
# so Planhat lookups before the ack are cut off after this many seconds.
ACK_BUDGET_SECONDS = 2.0
# views.open must use the trigger within 3 seconds of the slash command, so the custom fields a
# pre-filled rule needs are awaited at most this long before opening.
PREFILL_CATALOG_SECONDS = 1.0

LOADING_NOTICE = ":hourglass_flowing_sand: Loading custom fields from Planhat…"

_NO_VALUE_OPERATORS = frozenset(
    {Operator.IS_TRUE, Operator.IS_FALSE, Operator.IS_EMPTY, Operator.IS_NOT_EMPTY}
)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")


# Rows to rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormProblem:
    """Something to fix before saving: the input block it belongs to, where, and the fix."""

    block_id: str
    where: str
    message: str


class _InvalidValue(ValueError):
    """A typed value that cannot be read; the message is the sentence shown under the input."""


def _parse_number(text: str) -> int | float | None:
    if not _NUMBER.fullmatch(text):
        return None
    if _WHOLE_NUMBER.fullmatch(text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


def _read_value(base: ValueBase, text: str) -> RuleValue:
    """Read one typed, non-blank value, raising _InvalidValue with the fix."""
    text = text.strip()
    if base is ValueBase.NUMBER:
        number = _parse_number(text)
        if number is None:
            raise _InvalidValue(f'"{text}" is not a number. Enter a number such as 4 or 2.5.')
        return number
    if base is ValueBase.DAYS:
        if not _WHOLE_NUMBER.fullmatch(text):
            raise _InvalidValue(
                f'"{text}" is not a whole number of days. Enter a number such as 30.'
            )
        days = int(text)
        if days < 0:
            raise _InvalidValue(f"{days} days is negative. Enter 0 or more days.")
        return days
    if base is ValueBase.DATE:
        day = parse_iso_date(text)
        if day is None:
            raise _InvalidValue(f'"{text}" is not a date. Choose a date from the calendar.')
        return day
    return text


def _missing_value(base: ValueBase) -> str:
    return {
        ValueBase.NUMBER: "Enter a number.",
        ValueBase.DAYS: "Enter a number of days.",
        ValueBase.DATE: "Choose a date.",
        ValueBase.PICK: "Choose a value.",
        ValueBase.MULTI: "Choose at least one value.",
        ValueBase.LIST: "Enter at least one value, separated by commas.",
    }.get(base, "Enter a value.")


def _format_bound(value: RuleValue) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def condition_from_row(
    row: Row, *, number: int, catalog: PropertyCatalog
) -> Condition | FormProblem:
    """Build the row's condition, or return the first problem keyed to its input block.

    `row` must be read from the view being submitted, because the problem's block id names one
    of that view's input blocks.
    """
    where = f"Rule {number}"
    property_block = property_block_id(row.id)
    if row.property_key is None:
        return FormProblem(property_block, where, "Choose a property, or remove this rule.")
    try:
        prop = catalog.get(row.property_key)
    except RuleError as exc:
        return FormProblem(property_block, where, str(exc))
    if row.value_type is not prop.type:
        # The comparison blocks were drawn for another property type, or not yet at all.
        return FormProblem(
            property_block, where, "Choose a comparison for this property, then save again."
        )

    operator = row.operator
    operator_block = operator_block_id(row.id, row.generation)
    if operator is None:
        return FormProblem(operator_block, where, "Choose a comparison.")
    if operator not in OPERATORS_BY_TYPE[prop.type]:
        message = str(UnknownOperatorError.for_property(operator, prop))
        return FormProblem(operator_block, where, message)
    values = _row_values(row, prop, operator, where=where)
    if isinstance(values, FormProblem):
        return values

    condition = Condition(prop.key, operator, values)
    try:
        validate_condition(condition, prop)
    except RuleError as exc:
        blocks = value_block_ids(row) or (operator_block,)
        return FormProblem(blocks[-1], where, str(exc))
    return condition


def _row_values(
    row: Row, prop: Property, operator: Operator, *, where: str
) -> tuple[RuleValue, ...] | FormProblem:
    if operator in _NO_VALUE_OPERATORS:
        return ()
    if row.layout is None or not layout_fits(row.layout, prop, operator):
        # The value blocks were drawn for another comparison and the redraw has not come yet.
        return FormProblem(
            operator_block_id(row.id, row.generation),
            where,
            "Enter a value for this comparison, then save again.",
        )

    base = row.layout.base
    blocks = value_block_ids(row)
    if base in (ValueBase.LIST, ValueBase.MULTI):
        if not row.values:
            return FormProblem(blocks[0], where, _missing_value(base))
        return tuple(row.values)

    read: list[RuleValue] = []
    for index, block_id in enumerate(blocks):
        text = row.values[index] if index < len(row.values) else ""
        if not text.strip():
            return FormProblem(block_id, where, _missing_value(base))
        try:
            read.append(_read_value(base, text))
        except _InvalidValue as exc:
            return FormProblem(block_id, where, str(exc))
    if row.layout.pair and read[0] > read[1]:  # type: ignore[operator]
        low, high = (_format_bound(value) for value in read)
        return FormProblem(
            blocks[1],
            where,
            f"The range ends at {high}, below its start {low}. Put the lower value in From.",
        )
    return tuple(read)


def rules_from_form(
    form: BuilderForm, catalog: PropertyCatalog
) -> tuple[RuleNode | None, list[FormProblem]]:
    """Build the rule tree from the text box when filled, else from the rows.

    Returns the tree, or None with at least one problem. Blank rows are skipped. One row gives
    the bare condition, and several give an all-of or any-of group, following the match choice.
    """
    if form.rules_text.strip():
        try:
            return parse_rules(form.rules_text, catalog), []
        except RuleError as exc:
            return None, [FormProblem(RULES_TEXT_BLOCK, "Rules as text", str(exc))]

    conditions: list[Condition] = []
    problems: list[FormProblem] = []
    for number, row in enumerate(form.rows, start=1):
        if row.is_blank:
            continue
        result = condition_from_row(row, number=number, catalog=catalog)
        if isinstance(result, FormProblem):
            problems.append(result)
        else:
            conditions.append(result)
    if problems:
        return None, problems
    if not conditions:
        first_row = next(iter(form.rows), None)
        block_id = property_block_id(first_row.id) if first_row else RULES_TEXT_BLOCK
        return None, [
            FormProblem(block_id, "Rules", "Add at least one rule, or write the rules as text.")
        ]
    if len(conditions) == 1:
        return conditions[0], []
    group = AllOf if form.match is MatchMode.ALL else AnyOf
    return group(tuple(conditions)), []


def errors_by_block(problems: Sequence[FormProblem]) -> dict[str, str]:
    """Return the `response_action: errors` mapping, keeping the first problem of each block."""
    errors: dict[str, str] = {}
    for problem in problems:
        errors.setdefault(problem.block_id, problem.message)
    return errors


# Pre-filling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prefill:
    """Starting content of the builder: a saved segment's rules, or rule text from the command."""

    form: BuilderForm
    tree: RuleNode | None = None
    text: str | None = None
    unreadable: str | None = None

    def needs_custom_fields(self) -> bool:
        builtin = PropertyCatalog.builtin()
        if self.tree is not None:
            known = {prop.key for prop in builtin.properties()}
            return any(key not in known for key in rule_properties(self.tree))
        if self.text is not None:
            try:
                parse_rules(self.text, builtin)
            except RuleError:
                return True
        return False

    def build(self, catalog: PropertyCatalog, *, complete: bool) -> tuple[BuilderForm, list[str]]:
        """Return the form to draw with `catalog`, and notices about the pre-filled rules."""
        empty = self.form.add_row()
        if self.unreadable is not None:
            return empty, [f":warning: The saved rules could not be read: {self.unreadable}"]
        tree = self.tree
        if self.text is not None:
            try:
                tree = parse_rules(self.text, catalog)
            except RuleError as exc:
                return replace(empty, rules_text=self.text), [_text_notice(exc, complete=complete)]
        if tree is None:
            return empty, []

        shown = conditions_for_rows(tree)
        if shown is None:
            text = format_rules(tree, catalog)
            return replace(self.form, rules_text=text, saved_text=text), []
        mode, conditions = shown
        rows = tuple(
            row_from_condition(condition, row_id=f"r{number}", catalog=catalog)
            for number, condition in enumerate(conditions, start=1)
        )
        return replace(self.form, match=mode, rows=rows, next_row=len(rows) + 1), []


def _text_notice(error: RuleError, *, complete: bool) -> str:
    if not complete:
        return (
            "Your rules are in *Rules as text* below, because Planhat custom fields are still "
            "loading. They are read when you save."
        )
    return (
        f":warning: Could not read the rules you typed: {escape_mrkdwn(str(error))} Fix them in "
        "*Rules as text* below, or clear that box and use the rule rows."
    )


def _prefill(
    *, segment: SegmentRecord | None, rules_text: str | None, channel_id: str | None
) -> _Prefill:
    if segment is None:
        form = BuilderForm(channel_id=channel_id)
        text = rules_text.strip() if rules_text and rules_text.strip() else None
        return _Prefill(form=form, text=text)
    form = BuilderForm(name=segment.name, segment_id=segment.id, channel_id=channel_id)
    try:
        return _Prefill(form=form, tree=rules_from_json(segment.rules))
    except RuleError as exc:
        logger.warning("Segment %s has unreadable rules: %s", segment.id, exc)
        return _Prefill(form=form, unreadable=escape_mrkdwn(str(exc)))


# Loading what the modal offers -----------------------------------------------------------------


async def _value_choices(services: Services, catalog: PropertyCatalog) -> dict[str, list[str]]:
    """Return, per choice property, its most common values in the data, sorted by name.

    The Planhat client caches this fetch for a minute, so redraws seldom wait for it.
    """
    props = [catalog.get(key) for key in CHOICE_PROPERTIES]
    snapshot = await services.planhat.fetch_companies(fields=[prop.source for prop in props])
    choices: dict[str, list[str]] = {}
    for prop in props:
        counts: Counter[str] = Counter()
        for company in snapshot.companies:
            raw = company.get(prop.source)
            if prop.type is ValueType.LIST:
                counts.update(read_list(raw) or ())
            else:
                text = read_text(raw)
                if text is not None:
                    counts[text] += 1
        common = [value for value, _ in counts.most_common(MAX_SELECT_OPTIONS)]
        choices[prop.key] = sorted(common, key=str.casefold)
    return choices


async def load_context(
    services: Services, form: BuilderForm, *, notices: Sequence[str] = ()
) -> ModalContext:
    """Load the catalog, and the values seen in the data when a row needs them.

    A Planhat failure does not stop the redraw. The modal then offers the built-in properties
    and text inputs, with a notice naming what failed and what to do.
    """
    shown = list(notices)
    try:
        catalog = await services.resolver.catalog()
        complete = True
    except PlanhatError as exc:
        logger.warning("Could not load Planhat custom fields for the builder: %s", exc)
        catalog = PropertyCatalog.builtin()
        complete = False
        shown.append(
            f":warning: Custom fields could not be loaded, so only built-in properties are "
            f"offered. {escape_mrkdwn(error_text(exc))}"
        )

    choices: dict[str, list[str]] = {}
    if any(row.property_key in CHOICE_PROPERTIES for row in form.rows):
        try:
            choices = await _value_choices(services, catalog)
        except PlanhatError as exc:
            logger.warning("Could not load values seen in Planhat for the builder: %s", exc)
            shown.append(
                ":warning: The values seen in Planhat could not be loaded, so type values "
                f"instead. {escape_mrkdwn(error_text(exc))}"
            )
    return ModalContext(catalog=catalog, choices=choices, catalog_complete=complete, notices=shown)


async def _catalog_within(services: Services, seconds: float) -> PropertyCatalog:
    """Return the catalog, raising PlanhatError or TimeoutError when it takes over `seconds`."""
    return await asyncio.wait_for(services.resolver.catalog(), timeout=seconds)


# Views -----------------------------------------------------------------------------------------


async def _update_view(
    client: AsyncWebClient, *, view_id: str, view_hash: str | None, view: dict[str, Any]
) -> str | None:
    """Replace the modal and return its new hash, or None when a newer change or close won.

    On `hash_conflict` a later action has changed the view, and that action redraws it.
    """
    try:
        response = await client.views_update(view_id=view_id, hash=view_hash, view=view)
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error == "hash_conflict":
            logger.debug("Skipping the update of view %s: a newer change won", view_id)
            return None
        if error == "not_found":
            logger.info("Skipping the update of view %s: it was closed", view_id)
            return None
        raise
    new_view = response.get("view") or {}
    return str(new_view.get("hash") or "") or None


async def open_builder(
    *,
    client: AsyncWebClient,
    services: Services,
    trigger_id: str,
    team_id: str,
    user_id: str,
    channel_id: str | None = None,
    segment: SegmentRecord | None = None,
    rules_text: str | None = None,
) -> None:
    """Open the builder: empty, pre-filled from `rules_text`, or filled from a saved `segment`.

    The modal opens with the built-in properties and is then updated with the Planhat custom
    fields. When the pre-filled rules need custom fields, they are awaited for at most
    `PREFILL_CATALOG_SECONDS` first. Failures reach the person as one sentence.
    """
    prefill = _prefill(segment=segment, rules_text=rules_text, channel_id=channel_id)
    catalog = PropertyCatalog.builtin()
    complete = False
    if prefill.needs_custom_fields():
        try:
            catalog = await _catalog_within(services, PREFILL_CATALOG_SECONDS)
            complete = True
        except (PlanhatError, TimeoutError) as exc:
            logger.info(
                "Opening the builder before custom fields loaded (team %s): %r", team_id, exc
            )

    form, notices = prefill.build(catalog, complete=complete)
    first_notices = notices if complete else [LOADING_NOTICE, *notices]
    first = ModalContext(catalog=catalog, catalog_complete=complete, notices=first_notices)
    try:
        response = await client.views_open(trigger_id=trigger_id, view=builder_view(form, first))
    except SlackApiError as exc:
        logger.warning(
            "views.open failed for the builder (team %s, user %s): %s",
            team_id,
            user_id,
            exc.response.get("error"),
        )
        await _tell(client, user_id=user_id, channel_id=channel_id, text=error_text(exc))
        return
    opened = response.get("view") or {}
    view_id = str(opened.get("id"))
    logger.info("Opened the segment builder %s for user %s in team %s", view_id, user_id, team_id)

    needs_choices = any(row.property_key in CHOICE_PROPERTIES for row in form.rows)
    if complete and not needs_choices:
        return
    if not complete and prefill.text is not None and form.rules_text:
        # The text needed custom fields to be read. Keep the form as opened, so the rules are
        # never in both the text box and the rows, and only report problems left in the text.
        full_catalog = await _catalog_or_builtin(services)
        _, notices = prefill.build(full_catalog, complete=True)
    context = await load_context(services, form, notices=notices)
    try:
        await _update_view(
            client, view_id=view_id, view_hash=opened.get("hash"), view=builder_view(form, context)
        )
    except SlackApiError as exc:
        logger.warning("views.update failed for builder %s: %s", view_id, exc.response.get("error"))
        await _tell(client, user_id=user_id, channel_id=channel_id, text=error_text(exc))


async def _catalog_or_builtin(services: Services) -> PropertyCatalog:
    try:
        return await services.resolver.catalog()
    except PlanhatError:
        return PropertyCatalog.builtin()


async def _tell(client: AsyncWebClient, *, user_id: str, channel_id: str | None, text: str) -> None:
    """Tell the person something, logging instead when Slack refuses that too."""
    try:
        await tell_user(client, user_id=user_id, channel_id=channel_id, text=text)
    except SlackApiError as exc:
        logger.warning("Could not tell user %s: %s (%s)", user_id, text, exc.response.get("error"))


# Listeners -------------------------------------------------------------------------------------


async def _redraw(
    *,
    client: AsyncWebClient,
    services: Services,
    body: dict[str, Any],
    change: Callable[[BuilderForm], BuilderForm] | None = None,
) -> None:
    """Read the modal from the action's payload, apply `change`, and draw it again."""
    view = body["view"]
    form = read_form(view)
    if change is not None:
        form = change(form)
    context = await load_context(services, form)
    form = settle_rows(form, context.catalog)
    await _update_view(
        client, view_id=view["id"], view_hash=view.get("hash"), view=builder_view(form, context)
    )


async def _preview(*, client: AsyncWebClient, services: Services, body: dict[str, Any]) -> None:
    """Show "Previewing…", resolve the audience of the current rules, then show the result."""
    view = body["view"]
    team_id, _ = team_and_user(body)
    form = read_form(view)
    context = await load_context(services, form)
    tree, problems = rules_from_form(form, context.catalog)
    form = settle_rows(form, context.catalog)
    if tree is None:
        lines = [f"{problem.where}: {problem.message}" for problem in problems]
        await _update_view(
            client,
            view_id=view["id"],
            view_hash=view.get("hash"),
            view=builder_view(form, context, preview=preview_problem_blocks(lines)),
        )
        return

    pending = builder_view(form, context, preview=preview_pending_blocks())
    view_hash = await _update_view(
        client, view_id=view["id"], view_hash=view.get("hash"), view=pending
    )
    if view_hash is None:
        return
    try:
        mapping, timezone = await services.mapping_for(team_id)
        audience = await services.resolver.resolve(
            tree, catalog=context.catalog, mapping=mapping, timezone=timezone
        )
        preview = preview_audience_blocks(audience)
    # Any failure must replace "Previewing…", or the modal would wait forever; error_text logs
    # the unexpected ones with their traceback.
    except Exception as exc:  # noqa: BLE001
        preview = preview_error_blocks(error_text(exc))
    final = builder_view(form, context, preview=preview)
    await _update_view(client, view_id=view["id"], view_hash=view_hash, view=final)


async def _name_problems(
    services: Services, *, form: BuilderForm, team_id: str
) -> list[FormProblem]:
    try:
        name = validate_segment_name(form.name)
    except ValueError as exc:
        return [FormProblem(NAME_BLOCK, "Name", str(exc))]
    existing = await services.segments.get_by_name(team_id=team_id, name=name)
    if existing is not None and existing.id != form.segment_id:
        return [FormProblem(NAME_BLOCK, "Name", str(DuplicateSegmentName(name)))]
    return []


def _main_rules_block(form: BuilderForm) -> str:
    """Return the input block that represents the rules as a whole in inline errors."""
    if form.rules_text.strip() or not form.rows:
        return RULES_TEXT_BLOCK
    return property_block_id(form.rows[0].id)


async def _submit(
    *, ack: AsyncAck, client: AsyncWebClient, services: Services, body: dict[str, Any]
) -> None:
    """Validate and save the segment. Problems go back in the ack as inline errors."""
    view = body["view"]
    team_id, user_id = team_and_user(body)
    form = read_form(view)
    try:
        catalog = await _catalog_within(services, ACK_BUDGET_SECONDS)
    except PlanhatError as exc:
        logger.warning("Builder submission in team %s: custom fields failed: %s", team_id, exc)
        await ack(response_action="errors", errors={_main_rules_block(form): error_text(exc)})
        return
    except TimeoutError:
        logger.warning("Builder submission in team %s: custom fields timed out", team_id)
        message = "Loading custom fields from Planhat timed out. Press Save again."
        await ack(response_action="errors", errors={_main_rules_block(form): message})
        return

    tree, problems = rules_from_form(form, catalog)
    problems = [*await _name_problems(services, form=form, team_id=team_id), *problems]
    if tree is None or problems:
        logger.info(
            "Builder submission by %s in team %s has %d problems", user_id, team_id, len(problems)
        )
        await ack(response_action="errors", errors=errors_by_block(problems))
        return

    editing = form.segment_id is not None
    action = "segment.update" if editing else "segment.create"
    target = f"segment:{form.segment_id}" if editing else form.name.strip()
    allowed = await services.permissions.check(
        team_id=team_id, user_id=user_id, action=action, target=target
    )
    if not allowed:
        await ack(response_action="update", view=not_allowed_view(NOT_ALLOWED))
        return

    rules = rules_to_json(tree)
    try:
        if form.segment_id is not None:
            saved = await services.segments.update(
                form.segment_id, name=form.name, rules=rules, user_id=user_id
            )
        else:
            saved = await services.segments.create(
                team_id=team_id, name=form.name, rules=rules, user_id=user_id
            )
    except (DuplicateSegmentName, ValueError) as exc:
        # Another person may have taken the name after the check above.
        logger.info("Segment name rejected in team %s on save: %s", team_id, exc)
        await ack(response_action="errors", errors={NAME_BLOCK: str(exc)})
        return
    except SegmentNotFound:
        logger.info("Segment %s was deleted while user %s edited it", form.segment_id, user_id)
        message = "This segment was deleted after you opened it. Cancel, then use /segment new."
        await ack(response_action="errors", errors={NAME_BLOCK: message})
        return
    await ack()

    verb = "Updated" if editing else "Saved"
    rules_text = escape_mrkdwn(format_rules(tree, catalog))
    text = f"{verb} segment *{escape_mrkdwn(saved.name)}*: {rules_text}"
    await _tell(client, user_id=user_id, channel_id=form.channel_id, text=text)


async def _report_failure(client: AsyncWebClient, body: dict[str, Any], exc: SlackApiError) -> None:
    """Tell the person that redrawing the modal failed, since the modal itself cannot show it."""
    team_id, user_id = team_and_user(body)
    view_id = body.get("view", {}).get("id")
    logger.warning(
        "Redrawing builder %s failed (team %s, user %s): %s",
        view_id,
        team_id,
        user_id,
        exc.response.get("error"),
    )
    channel_id = read_form(body.get("view") or {}).channel_id
    await _tell(client, user_id=user_id, channel_id=channel_id, text=error_text(exc))


def register(app: AsyncApp, services: Services) -> None:
    """Register the builder's actions, options load and submission on `app`."""

    async def redraw(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:
            await _redraw(client=client, services=services, body=body)
        except SlackApiError as exc:
            await _report_failure(client, body, exc)

    async def add_row(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:
            await _redraw(client=client, services=services, body=body, change=BuilderForm.add_row)
        except SlackApiError as exc:
            await _report_failure(client, body, exc)

    async def remove_row(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        row_id = str(body["actions"][0].get("value") or "")
        try:
            await _redraw(
                client=client,
                services=services,
                body=body,
                change=lambda form: form.remove_row(row_id),
            )
        except SlackApiError as exc:
            await _report_failure(client, body, exc)

    async def preview(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:
            await _preview(client=client, services=services, body=body)
        except SlackApiError as exc:
            await _report_failure(client, body, exc)

    async def property_options(ack: AsyncAck, body: dict[str, Any]) -> None:
        # Only used when the catalog is too large for a static menu.
        try:
            catalog = await _catalog_within(services, ACK_BUDGET_SECONDS)
        except (PlanhatError, TimeoutError) as exc:
            logger.warning("Offering built-in properties only: custom fields failed: %r", exc)
            catalog = PropertyCatalog.builtin()
        query = str(body.get("value") or "")
        await ack(option_groups=property_option_groups(catalog, query=query))

    async def submit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await _submit(ack=ack, client=client, services=services, body=body)

    app.action(PROPERTY_ACTION)(redraw)
    app.action(OPERATOR_ACTION)(redraw)
    app.action(ADD_ROW_ACTION)(add_row)
    app.action(REMOVE_ROW_ACTION)(remove_row)
    app.action(PREVIEW_ACTION)(preview)
    app.options(PROPERTY_ACTION)(property_options)
    app.view_submission(CALLBACK_ID)(submit)
