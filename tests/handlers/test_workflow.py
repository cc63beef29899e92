"""The Workflow Builder step: its manifest variant, input checks, outputs and repeat detection."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from handlers.views.send import MAX_MESSAGE_CHARS
from handlers.workflow import (
    CALLBACK_ID,
    DELIVERED_OUTPUT,
    FAILED_OUTPUT,
    MESSAGE_INPUT,
    SEGMENT_INPUT,
    USER_INPUT,
    RecentExecutions,
    read_step_inputs,
    step_outputs,
)
from segments.errors import UserFacingError
from segments.ports import BroadcastRecord, BroadcastStatus, DeliveryRecord, DeliveryStatus

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _load(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    return manifest


def _rich_text(text: str) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }


def _inputs(**overrides: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        SEGMENT_INPUT: "At risk",
        MESSAGE_INPUT: _rich_text("Hello"),
        USER_INPUT: "U0ADMIN",
    }
    inputs.update(overrides)
    return inputs


def _record(*statuses: DeliveryStatus) -> BroadcastRecord:
    deliveries = [
        DeliveryRecord(
            id=index,
            broadcast_id=1,
            channel_id=f"C{index:08d}",
            channel_name=f"customer-{index}",
            status=status,
            attempts=1,
            ts=None,
            error=None,
            reason=None,
        )
        for index, status in enumerate(statuses, start=1)
    ]
    return BroadcastRecord(
        id=1,
        team_id="T0SEGMENT",
        segment_name="At risk",
        status=BroadcastStatus.PARTIALLY_SENT,
        created_at=NOW,
        deliveries=deliveries,
    )


# manifest.workflow.yml and manifest.yml


def test_workflow_manifest_declares_step_inputs_and_outputs() -> None:
    function = _load("manifest.workflow.yml")["functions"][CALLBACK_ID]

    inputs = function["input_parameters"]
    outputs = function["output_parameters"]
    assert set(inputs["properties"]) == {SEGMENT_INPUT, MESSAGE_INPUT, USER_INPUT}
    assert set(inputs["required"]) == {SEGMENT_INPUT, MESSAGE_INPUT, USER_INPUT}
    assert inputs["properties"][SEGMENT_INPUT]["type"] == "string"
    assert inputs["properties"][MESSAGE_INPUT]["type"] == "slack#/types/rich_text"
    assert inputs["properties"][USER_INPUT]["type"] == "slack#/types/user_id"
    assert set(outputs["properties"]) == {DELIVERED_OUTPUT, FAILED_OUTPUT}
    assert set(outputs["required"]) == {DELIVERED_OUTPUT, FAILED_OUTPUT}
    for output in outputs["properties"].values():
        assert output["type"] == "integer"
    assert len(CALLBACK_ID) <= 100
    assert len(function["title"]) <= 255


def test_workflow_manifest_has_custom_step_settings() -> None:
    manifest = _load("manifest.workflow.yml")

    settings = manifest["settings"]
    assert manifest["_metadata"]["major_version"] == 2
    assert "function_executed" in settings["event_subscriptions"]["bot_events"]
    assert settings["org_deploy_enabled"] is True
    assert settings["function_runtime"] == "remote"


def test_public_manifest_has_no_custom_step() -> None:
    manifest = _load("manifest.yml")

    settings = manifest["settings"]
    assert "functions" not in manifest
    assert "function_executed" not in settings["event_subscriptions"]["bot_events"]
    assert settings.get("org_deploy_enabled") is not True
    assert "function_runtime" not in settings


def test_workflow_manifest_is_public_manifest_plus_step() -> None:
    workflow = copy.deepcopy(_load("manifest.workflow.yml"))
    public = _load("manifest.yml")

    del workflow["functions"]
    del workflow["settings"]["function_runtime"]
    workflow["settings"]["event_subscriptions"]["bot_events"].remove("function_executed")
    workflow["settings"]["org_deploy_enabled"] = public["settings"]["org_deploy_enabled"]
    assert workflow == public


# read_step_inputs


def test_inputs_accept_rich_text_message() -> None:
    message = _rich_text("Office <!channel> hours")

    inputs = read_step_inputs(_inputs(**{MESSAGE_INPUT: message, SEGMENT_INPUT: "  At risk "}))

    assert inputs.segment_name == "At risk"
    assert inputs.user_id == "U0ADMIN"
    assert inputs.message_blocks == [message]
    assert inputs.message_text == "Office &lt;!channel&gt; hours"


def test_inputs_accept_plain_text_message() -> None:
    inputs = read_step_inputs(_inputs(**{MESSAGE_INPUT: "Renewal call on *Friday*"}))

    assert inputs.message_blocks is None
    assert inputs.message_text == "Renewal call on *Friday*"


def test_inputs_accept_list_of_rich_text_blocks() -> None:
    blocks = [_rich_text("First"), _rich_text("Second")]

    inputs = read_step_inputs(_inputs(**{MESSAGE_INPUT: blocks}))

    assert inputs.message_blocks == blocks
    assert inputs.message_text == "First\nSecond"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({SEGMENT_INPUT: "  "}, "The step has no segment."),
        ({SEGMENT_INPUT: None}, "The step has no segment."),
        ({USER_INPUT: ""}, "The step has no Sender."),
        ({MESSAGE_INPUT: ""}, "The step's message is empty."),
        ({MESSAGE_INPUT: None}, "The step's message is empty."),
        ({MESSAGE_INPUT: _rich_text("   ")}, "The step's message is empty."),
        ({MESSAGE_INPUT: 42}, "Slack sent int"),
        ({MESSAGE_INPUT: {"type": "section"}}, "Slack sent dict"),
        ({MESSAGE_INPUT: []}, "Slack sent list"),
        ({MESSAGE_INPUT: "x" * (MAX_MESSAGE_CHARS + 1)}, "Shorten it in Workflow Builder."),
    ],
)
def test_invalid_inputs_raise_sentence_with_fix(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserFacingError) as raised:
        read_step_inputs(_inputs(**overrides))

    assert fragment in str(raised.value)
    assert "Workflow Builder" in str(raised.value)


# step_outputs


def test_outputs_count_sent_and_not_delivered() -> None:
    record = _record(
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.UNCONFIRMED,
        DeliveryStatus.PENDING,
        DeliveryStatus.SENDING,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.CANCELLED,
    )

    outputs = step_outputs(record)

    assert outputs == {DELIVERED_OUTPUT: 2, FAILED_OUTPUT: 4}


def test_outputs_of_empty_broadcast_are_zero() -> None:
    outputs = step_outputs(_record())

    assert outputs == {DELIVERED_OUTPUT: 0, FAILED_OUTPUT: 0}


# RecentExecutions


def test_repeated_execution_id_is_not_first_time() -> None:
    executions = RecentExecutions()

    first = executions.first_time("Fx1")
    again = executions.first_time("Fx1")
    other = executions.first_time("Fx2")

    assert first is True
    assert again is False
    assert other is True


def test_oldest_execution_ids_are_forgotten() -> None:
    executions = RecentExecutions(max_size=2)
    for execution_id in ("Fx1", "Fx2", "Fx3"):
        executions.first_time(execution_id)

    assert executions.first_time("Fx3") is False
    assert executions.first_time("Fx1") is True
