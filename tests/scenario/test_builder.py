"""The rule-builder modal over HTTP: `/segment new` and `/segment edit`, actions, preview, save."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from handlers.views.builder import (
    ADD_ROW_ACTION,
    CALLBACK_ID,
    NAME_BLOCK,
    PREVIEW_ACTION,
    PREVIEW_BLOCK,
    PROPERTY_ACTION,
    REMOVE_ROW_ACTION,
    RULES_TEXT_BLOCK,
    SAVED_RULES_BLOCK,
    operator_block_id,
    property_block_id,
    row_buttons_block_id,
)
from segments.permissions import NOT_ALLOWED
from segments.properties import ValueType
from segments.rules import (
    OPERATORS_BY_TYPE,
    AllOf,
    AnyOf,
    Condition,
    Not,
    Operator,
    RuleError,
    operator_label,
    rules_from_json,
    rules_to_json,
)
from segments.slack_text import escape_mrkdwn
from segments.text import parse_rules
from tests.handlers.test_builder_views import (
    block,
    input_ids,
    option_texts,
    row_block_ids,
    submitted,
)
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID, MEMBER_ID, TEAM_ID, SlackSimulator

AT_RISK = Condition("health_score", Operator.LESS_THAN, (4,))


# Driving the modal -----------------------------------------------------------------------------


def builder_views(world: World) -> list[dict[str, Any]]:
    return [view for view in world.slack.views.values() if view.get("callback_id") == CALLBACK_ID]


def has_custom_fields(view: dict[str, Any]) -> bool:
    groups = block(view, property_block_id("r1"))["element"].get("option_groups", [])
    return any(group["label"]["text"] == "Custom fields" for group in groups)


async def open_with(world: World, text: str, *, ready: Any = None) -> str:
    """Run `/segment TEXT`, wait for the builder and for `ready(view)`, and return the view id."""
    ack = await world.sim.command(text)
    assert ack.status == 200
    views = await eventually(lambda: builder_views(world))
    view_id = str(views[0]["id"])
    if ready is not None:
        await eventually(lambda: ready(world.slack.views[view_id]))
    return view_id


async def open_new(world: World) -> str:
    """Open an empty builder and wait until the custom fields are offered."""
    return await open_with(world, "new", ready=has_custom_fields)


def select_action(
    view: dict[str, Any], block_id: str, value: str, *, answers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build the block_actions payload of choosing `value` in the select of `block_id`."""
    element = block(view, block_id)["element"]
    chosen = {"text": {"type": "plain_text", "text": value}, "value": value}
    return {
        "type": "block_actions",
        "user": SlackSimulator.user(ADMIN_ID),
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "container": {"type": "view", "view_id": view["id"]},
        "view": submitted(view, {**(answers or {}), block_id: value}),
        "actions": [
            {
                "type": element["type"],
                "action_id": element["action_id"],
                "block_id": block_id,
                "selected_option": chosen,
                "action_ts": "1700000000.000001",
            }
        ],
    }


def button_action(
    view: dict[str, Any],
    action_id: str,
    *,
    answers: dict[str, Any] | None = None,
    block_id: str | None = None,
) -> dict[str, Any]:
    """Build the block_actions payload of clicking the button `action_id`, in `block_id` if given."""
    found = next(
        (item, element)
        for item in view["blocks"]
        if item["type"] == "actions" and block_id in (None, item["block_id"])
        for element in item["elements"]
        if element["action_id"] == action_id
    )
    item, element = found
    return {
        "type": "block_actions",
        "user": SlackSimulator.user(ADMIN_ID),
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "container": {"type": "view", "view_id": view["id"]},
        "view": submitted(view, answers),
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": item["block_id"],
                "value": element.get("value", ""),
                "action_ts": "1700000000.000002",
            }
        ],
    }


def submission(
    view: dict[str, Any], answers: dict[str, Any], *, user_id: str = ADMIN_ID
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": SlackSimulator.user(user_id),
        "trigger_id": f"trigger-{uuid.uuid4().hex}",
        "view": submitted(view, answers),
    }


async def choose(
    world: World, view_id: str, block_id: str, value: str, *, expect_block: str
) -> dict[str, Any]:
    """Choose a select option and return the redrawn view once it contains `expect_block`."""
    response = await world.sim.interact(select_action(world.slack.views[view_id], block_id, value))
    assert response.status == 200
    return await eventually(
        lambda: (
            world.slack.views[view_id]
            if expect_block in input_ids(world.slack.views[view_id])
            else None
        )
    )


async def build_row(
    world: World, view_id: str, *, key: str, operator: Operator, value_block: str
) -> dict[str, Any]:
    """Choose the property and comparison of row r1 and return the view with its value input."""
    await choose(
        world, view_id, property_block_id("r1"), key, expect_block=operator_block_id("r1", 0)
    )
    return await choose(
        world, view_id, operator_block_id("r1", 0), operator.value, expect_block=value_block
    )


def messages_to_admin(world: World) -> list[str]:
    ephemeral = [
        message["text"] for message in world.slack.ephemeral_messages if message["user"] == ADMIN_ID
    ]
    return ephemeral + [message["text"] for message in world.slack.dm_messages(ADMIN_ID)]


async def save_segment(world: World, name: str, rules: Any) -> int:
    record = await world.services.segments.create(
        team_id=TEAM_ID, name=name, rules=rules_to_json(rules), user_id=ADMIN_ID
    )
    return record.id


# Opening ---------------------------------------------------------------------------------------


async def test_new_opens_builder_then_adds_custom_fields(world: World) -> None:
    view_id = await open_new(world)

    opened = world.slack.calls_to("views.open")
    view = world.slack.views[view_id]
    assert len(opened) == 1
    assert view["title"]["text"] == "New segment"
    assert NAME_BLOCK in input_ids(view)
    values = [
        option["value"]
        for group in block(view, property_block_id("r1"))["element"]["option_groups"]
        for option in group["options"]
    ]
    assert "health_score" in values
    assert "custom.Seats Purchased" in values


async def test_new_with_rules_prefills_row(world: World) -> None:
    view_id = await open_with(world, "new Health Score less than 4", ready=has_custom_fields)

    view = world.slack.views[view_id]

    assert (
        block(view, property_block_id("r1"))["element"]["initial_option"]["value"] == "health_score"
    )
    assert (
        block(view, operator_block_id("r1", 0))["element"]["initial_option"]["value"] == "less_than"
    )
    assert block(view, "rule:r1:value.0.number")["element"]["initial_value"] == "4"


async def test_new_with_custom_field_rules_prefills_row(world: World) -> None:
    view_id = await open_with(
        world,
        "new Seats Purchased greater than 100",
        ready=lambda view: "rule:r1:value.0.number" in input_ids(view),
    )

    view = world.slack.views[view_id]

    assert (
        block(view, property_block_id("r1"))["element"]["initial_option"]["value"]
        == "custom.Seats Purchased"
    )
    assert block(view, "rule:r1:value.0.number")["element"]["initial_value"] == "100"


async def test_new_with_invalid_rules_shows_parse_error(world: World) -> None:
    text = "Helth Score less than 4"
    catalog = await world.services.resolver.catalog()
    with pytest.raises(RuleError) as expected:
        parse_rules(text, catalog)

    view_id = await open_with(
        world, f"new {text}", ready=lambda view: "Could not read" in str(view["blocks"][0])
    )

    view = world.slack.views[view_id]
    assert escape_mrkdwn(str(expected.value)) in view["blocks"][0]["elements"][0]["text"]
    assert block(view, RULES_TEXT_BLOCK)["element"]["initial_value"] == text
    assert row_block_ids(view, "r1") == [property_block_id("r1")]


# Redrawing -------------------------------------------------------------------------------------


async def test_choosing_date_property_updates_operators(world: World) -> None:
    view_id = await open_new(world)
    previous_hash = world.slack.views[view_id]["hash"]

    view = await choose(
        world,
        view_id,
        property_block_id("r1"),
        "renewal_date",
        expect_block=operator_block_id("r1", 0),
    )

    update = world.slack.calls_to("views.update")[-1]
    assert update.params["view_id"] == view_id
    assert update.params["hash"] == previous_hash
    labels = option_texts(block(view, operator_block_id("r1", 0))["element"])
    assert labels == [operator_label(op) for op in OPERATORS_BY_TYPE[ValueType.DATE]]


async def test_stale_hash_leaves_newer_view(world: World) -> None:
    view_id = await open_new(world)
    stale = world.slack.views[view_id]
    await choose(
        world, view_id, property_block_id("r1"), "arr", expect_block=operator_block_id("r1", 0)
    )
    newer_hash = world.slack.views[view_id]["hash"]

    response = await world.sim.interact(
        select_action(stale, property_block_id("r1"), "renewal_date")
    )
    await eventually(lambda: world.slack.calls_to("views.update")[-1].error == "hash_conflict")

    assert response.status == 200
    assert world.slack.views[view_id]["hash"] == newer_hash
    assert (
        block(world.slack.views[view_id], property_block_id("r1"))["element"]["initial_option"][
            "value"
        ]
        == "arr"
    )


async def test_add_rule_adds_a_row(world: World) -> None:
    view_id = await open_new(world)

    response = await world.sim.interact(button_action(world.slack.views[view_id], ADD_ROW_ACTION))
    view = await eventually(
        lambda: (
            world.slack.views[view_id]
            if property_block_id("r2") in input_ids(world.slack.views[view_id])
            else None
        )
    )

    assert response.status == 200
    assert input_ids(view).index(property_block_id("r1")) < input_ids(view).index(
        property_block_id("r2")
    )


async def test_remove_rule_drops_the_row(world: World) -> None:
    view_id = await open_new(world)
    await world.sim.interact(button_action(world.slack.views[view_id], ADD_ROW_ACTION))
    view = await eventually(
        lambda: (
            world.slack.views[view_id]
            if property_block_id("r2") in input_ids(world.slack.views[view_id])
            else None
        )
    )

    response = await world.sim.interact(
        button_action(view, REMOVE_ROW_ACTION, block_id=row_buttons_block_id("r1"))
    )
    view = await eventually(
        lambda: (
            world.slack.views[view_id]
            if property_block_id("r1") not in input_ids(world.slack.views[view_id])
            else None
        )
    )

    assert response.status == 200
    assert property_block_id("r2") in input_ids(view)


async def test_property_options_filter_by_typed_text(world: World) -> None:
    view_id = await open_new(world)
    payload = {
        "type": "block_suggestion",
        "user": SlackSimulator.user(ADMIN_ID),
        "container": {"type": "view", "view_id": view_id},
        "action_id": PROPERTY_ACTION,
        "block_id": property_block_id("r1"),
        "value": "seat",
        "view": submitted(world.slack.views[view_id]),
    }

    response = await world.sim.interact(payload)

    groups = response.json()["option_groups"]
    assert [group["label"]["text"] for group in groups] == ["Custom fields"]
    assert [option["value"] for option in groups[0]["options"]] == ["custom.Seats Purchased"]


async def test_lifecycle_stage_offers_values_seen_in_data(world: World) -> None:
    view_id = await open_new(world)
    view = await choose(
        world,
        view_id,
        property_block_id("r1"),
        "lifecycle_stage",
        expect_block=operator_block_id("r1", 0),
    )
    seen = {
        company["phase"]
        for company in world.sample.companies
        if isinstance(company.get("phase"), str)
    }

    await world.sim.interact(select_action(view, operator_block_id("r1", 0), Operator.EQUALS.value))
    view = await eventually(
        lambda: (
            world.slack.views[view_id]
            if len(row_block_ids(world.slack.views[view_id], "r1")) == 3
            else None
        )
    )

    element = block(view, row_block_ids(view, "r1")[-1])["element"]
    assert element["type"] == "static_select"
    assert {option["value"] for option in element["options"]} == {
        phase.strip() for phase in seen if phase.strip()
    }


async def test_open_with_planhat_down_offers_builtin_properties(world: World) -> None:
    world.planhat.token = "rotated-token"

    view_id = await open_with(
        world, "new", ready=lambda view: "could not be loaded" in str(view["blocks"][0])
    )

    view = world.slack.views[view_id]
    groups = block(view, property_block_id("r1"))["element"]["option_groups"]
    assert [group["label"]["text"] for group in groups] == ["Built-in"]
    assert "Planhat" in view["blocks"][0]["elements"][0]["text"]


# Preview ---------------------------------------------------------------------------------------


async def test_preview_shows_channel_count(world: World) -> None:
    view_id = await open_new(world)
    view = await build_row(
        world,
        view_id,
        key="health_score",
        operator=Operator.LESS_THAN,
        value_block="rule:r1:value.0.number",
    )
    mapping, timezone = await world.services.mapping_for(TEAM_ID)
    expected = await world.services.resolver.resolve(AT_RISK, mapping=mapping, timezone=timezone)

    response = await world.sim.interact(
        button_action(view, PREVIEW_ACTION, answers={"rule:r1:value.0.number": "4"})
    )
    shown = await eventually(
        lambda: next(
            (
                item["text"]["text"]
                for item in world.slack.views[view_id]["blocks"]
                if item.get("block_id") == PREVIEW_BLOCK and "match" in item["text"]["text"]
            ),
            None,
        ),
        timeout=10,
    )

    assert response.status == 200
    assert expected.targets
    assert f"*{len(expected.targets):,} channels* match" in shown
    assert f"#{expected.targets[0].channel_name}" in shown
    assert any(
        "Previewing" in str(call.params.get("view"))
        for call in world.slack.calls_to("views.update")
    )


async def test_preview_planhat_failure_shows_sentence(world: World) -> None:
    view_id = await open_new(world)
    view = await build_row(
        world,
        view_id,
        key="health_score",
        operator=Operator.LESS_THAN,
        value_block="rule:r1:value.0.number",
    )
    world.planhat.token = "rotated-token"

    await world.sim.interact(
        button_action(view, PREVIEW_ACTION, answers={"rule:r1:value.0.number": "4"})
    )
    shown = await eventually(
        lambda: next(
            (
                item["text"]["text"]
                for item in world.slack.views[view_id]["blocks"]
                if item.get("block_id") == PREVIEW_BLOCK and ":warning:" in item["text"]["text"]
            ),
            None,
        ),
        timeout=10,
    )

    assert "Planhat" in shown
    assert "Something went wrong on our side" not in shown


async def test_preview_of_invalid_row_shows_problem(world: World) -> None:
    view_id = await open_new(world)
    view = await build_row(
        world,
        view_id,
        key="arr",
        operator=Operator.GREATER_THAN,
        value_block="rule:r1:value.0.number",
    )

    await world.sim.interact(
        button_action(view, PREVIEW_ACTION, answers={"rule:r1:value.0.number": "many"})
    )
    shown = await eventually(
        lambda: next(
            (
                item["text"]["text"]
                for item in world.slack.views[view_id]["blocks"]
                if item.get("block_id") == PREVIEW_BLOCK
            ),
            None,
        )
    )

    assert "Fix these rules first" in shown
    assert 'Rule 1: "many" is not a number' in shown


# Saving ----------------------------------------------------------------------------------------


async def test_text_in_number_field_is_rejected_inline(world: World) -> None:
    view_id = await open_new(world)
    view = await build_row(
        world,
        view_id,
        key="arr",
        operator=Operator.GREATER_THAN,
        value_block="rule:r1:value.0.number",
    )

    response = await world.sim.interact(
        submission(view, {NAME_BLOCK: "Big", "rule:r1:value.0.number": "fifty"})
    )

    body = response.json()
    assert body["response_action"] == "errors"
    assert list(body["errors"]) == ["rule:r1:value.0.number"]
    assert await world.services.segments.get_by_name(team_id=TEAM_ID, name="Big") is None


async def test_negative_days_are_rejected_inline(world: World) -> None:
    view_id = await open_new(world)
    view = await build_row(
        world,
        view_id,
        key="renewal_date",
        operator=Operator.WITHIN_DAYS,
        value_block="rule:r1:value.0.days",
    )

    response = await world.sim.interact(
        submission(view, {NAME_BLOCK: "Soon", "rule:r1:value.0.days": "-30"})
    )

    body = response.json()
    assert body["response_action"] == "errors"
    assert "negative" in body["errors"]["rule:r1:value.0.days"]


async def test_empty_form_is_rejected_inline(world: World) -> None:
    view_id = await open_new(world)

    response = await world.sim.interact(submission(world.slack.views[view_id], {NAME_BLOCK: " "}))

    errors = response.json()["errors"]
    assert set(errors) == {NAME_BLOCK, property_block_id("r1")}


async def test_valid_submit_saves_and_confirms(world: World) -> None:
    view_id = await open_new(world)
    view = await build_row(
        world,
        view_id,
        key="health_score",
        operator=Operator.LESS_THAN,
        value_block="rule:r1:value.0.number",
    )

    response = await world.sim.interact(
        submission(view, {NAME_BLOCK: "At risk", "rule:r1:value.0.number": "4"})
    )
    confirmations = await eventually(
        lambda: [text for text in messages_to_admin(world) if "At risk" in text]
    )

    assert response.status == 200
    assert response.body == ""
    saved = await world.services.segments.get_by_name(team_id=TEAM_ID, name="at RISK")
    assert saved is not None
    assert rules_from_json(saved.rules) == AT_RISK
    assert "Health Score less than 4" in confirmations[0]


async def test_rules_text_saves_nested_rules(world: World) -> None:
    view_id = await open_new(world)
    text = 'Health Score less than 4 AND (Plan is "Enterprise" OR ARR greater than 50000)'

    response = await world.sim.interact(
        submission(world.slack.views[view_id], {NAME_BLOCK: "Nested", RULES_TEXT_BLOCK: text})
    )

    assert response.body == ""
    saved = await world.services.segments.get_by_name(team_id=TEAM_ID, name="Nested")
    assert saved is not None
    tree = rules_from_json(saved.rules)
    assert isinstance(tree, AllOf)
    assert isinstance(tree.children[1], AnyOf)


async def test_duplicate_name_is_rejected_inline(world: World) -> None:
    await save_segment(world, "Renewals", AT_RISK)
    view_id = await open_with(world, "new Health Score less than 4", ready=has_custom_fields)

    response = await world.sim.interact(
        submission(world.slack.views[view_id], {NAME_BLOCK: "renewals"})
    )

    body = response.json()
    assert body["response_action"] == "errors"
    assert "already exists" in body["errors"][NAME_BLOCK]
    assert len(await world.services.segments.list(team_id=TEAM_ID)) == 1


async def test_member_submit_is_refused_and_not_saved(world: World) -> None:
    view_id = await open_with(world, "new Health Score less than 4", ready=has_custom_fields)

    response = await world.sim.interact(
        submission(world.slack.views[view_id], {NAME_BLOCK: "Sneaky"}, user_id=MEMBER_ID)
    )

    body = response.json()
    assert body["response_action"] == "update"
    assert NOT_ALLOWED in str(body["view"])
    assert await world.services.segments.get_by_name(team_id=TEAM_ID, name="Sneaky") is None


# Editing ---------------------------------------------------------------------------------------


async def test_edit_opens_filled_and_saving_updates(world: World) -> None:
    segment_id = await save_segment(world, "At risk", AT_RISK)
    view_id = await open_with(world, "edit at risk", ready=has_custom_fields)
    view = world.slack.views[view_id]

    response = await world.sim.interact(submission(view, {"rule:r1:value.0.number": "3.5"}))
    confirmations = await eventually(
        lambda: [text for text in messages_to_admin(world) if "Updated" in text]
    )

    assert view["title"]["text"] == "Edit segment"
    assert block(view, NAME_BLOCK)["element"]["initial_value"] == "At risk"
    assert response.body == ""
    saved = await world.services.segments.get_by_name(team_id=TEAM_ID, name="At risk")
    assert saved is not None
    assert saved.id == segment_id
    assert rules_from_json(saved.rules) == Condition("health_score", Operator.LESS_THAN, (3.5,))
    assert "Health Score less than 3.5" in confirmations[0]


async def test_edit_keeps_own_name(world: World) -> None:
    await save_segment(world, "At risk", AT_RISK)
    view_id = await open_with(world, "edit At risk", ready=has_custom_fields)

    response = await world.sim.interact(
        submission(world.slack.views[view_id], {NAME_BLOCK: "AT RISK"})
    )

    assert response.body == ""
    saved = await world.services.segments.get_by_name(team_id=TEAM_ID, name="at risk")
    assert saved is not None
    assert saved.name == "AT RISK"


async def test_edit_of_nested_rules_offers_text(world: World) -> None:
    nested = AllOf((AT_RISK, Not(Condition("custom.Plan", Operator.EQUALS, ("Starter",)))))
    await save_segment(world, "Nested", nested)
    view_id = await open_with(world, "edit Nested")
    view = world.slack.views[view_id]

    response = await world.sim.interact(submission(view, {}))

    text = block(view, RULES_TEXT_BLOCK)["element"]["initial_value"]
    assert text == 'Health Score less than 4 AND NOT Plan equals "Starter"'
    assert "edit them as text" in block(view, SAVED_RULES_BLOCK)["text"]["text"]
    assert response.body == ""
    saved = await world.services.segments.get_by_name(team_id=TEAM_ID, name="Nested")
    assert saved is not None
    assert rules_from_json(saved.rules) == nested
