"""The `segment-bot` command run as a user runs it: a subprocess against loopback servers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import pytest

from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import SampleData, generate_sample
from loopback.server import RunningServer, start_server
from loopback.slack_server import SlackState, create_slack_app

TODAY = date(2026, 12, 4)
PLANHAT_TOKEN = "cli-planhat-token"
SLACK_TOKEN = "xoxb-cli-token"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Servers:
    sample: SampleData
    planhat: PlanhatState
    slack: SlackState
    env: dict[str, str]


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    sample = generate_sample(today=TODAY, company_count=300)
    planhat = PlanhatState(companies=sample.companies, custom_fields=sample.custom_fields, token=PLANHAT_TOKEN)
    slack = SlackState(channels=sample.channels, bot_token=SLACK_TOKEN)
    running: list[RunningServer] = [
        await start_server(create_planhat_app(planhat)),
        await start_server(create_slack_app(slack)),
    ]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PLANHAT_API_URL": running[0].url,
        "PLANHAT_API_TOKEN": PLANHAT_TOKEN,
        "SLACK_API_URL": f"{running[1].url}/api/",
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "PLANHAT_CHANNEL_FIELD": "custom.Slack Channel",
        "SLACK_SIGNING_SECRET": "cli-signing-secret",
    }
    try:
        yield Servers(sample=sample, planhat=planhat, slack=slack, env=env)
    finally:
        for server in running:
            await server.stop()


async def run_cli(*args: str, env: dict[str, str]) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Run(code=process.returncode, stdout=stdout.decode(), stderr=stderr.decode())


async def test_preview_json_has_documented_shape(servers: Servers) -> None:
    run = await run_cli(
        "preview", "--where", 'Lifecycle Stage equals "Onboarding"', "--format", "json",
        "--today", TODAY.isoformat(), env=servers.env,
    )

    assert run.code == 0, run.stderr
    result = json.loads(run.stdout)
    assert set(result) == {"matched", "unmapped", "warnings"}
    assert result["matched"], "the sample has onboarding companies"
    for row in result["matched"]:
        assert set(row) == {"company_id", "company_name", "channel_id", "channel_name", "reasons"}
        assert row["reasons"]["Lifecycle Stage"] == "Onboarding"
    for row in result["unmapped"]:
        assert set(row) == {"company_id", "company_name", "reason"}
        assert row["reason"]


async def test_preview_matches_the_sample_data(servers: Servers) -> None:
    expected = {
        company["_id"]
        for company in servers.sample.companies
        if isinstance(company.get("arr"), (int, float)) and company["arr"] > 50000
    }

    run = await run_cli("preview", "--where", "ARR greater than 50000", "--format", "json", env=servers.env)

    result = json.loads(run.stdout)
    reached = {row["company_id"] for row in result["matched"]} | {row["company_id"] for row in result["unmapped"]}
    # Numbers sent as strings ("62000") count too, so the rule can reach more than the numeric ones.
    assert expected <= reached
    assert all(float(row["reasons"]["ARR"].replace(",", "")) > 50000 for row in result["matched"])


async def test_preview_csv_lists_matched_and_unmapped(servers: Servers) -> None:
    run = await run_cli("preview", "--where", "ARR greater than 0", "--format", "csv", env=servers.env)

    lines = run.stdout.splitlines()
    assert run.code == 0, run.stderr
    assert lines[0] == "status,company_id,company_name,channel_id,channel_name,values,reason"
    assert any(line.startswith("matched,") for line in lines)
    assert any(line.startswith("unmapped,") for line in lines)


async def test_preview_table_warns_on_out_of_range_health(servers: Servers) -> None:
    run = await run_cli("preview", "--where", "Health Score less than 40", env=servers.env)

    assert run.code == 0, run.stderr
    assert "companies match, reaching" in run.stdout
    assert "Health Score is 0-10 in Planhat" in run.stdout


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("Helth Score less than 4", 'Did you mean "Health Score"?'),
        ("ARR greater than lots", "ARR"),
        ("Renewal Date within -5 days", "-5"),
        ("(ARR greater than 5", 'Missing ")"'),
    ],
)
async def test_preview_invalid_rules_exit_2_with_one_sentence(servers: Servers, rules: str, message: str) -> None:
    run = await run_cli("preview", "--where", rules, env=servers.env)

    assert run.code == 2
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1
    assert message in run.stderr


async def test_preview_planhat_failure_mid_pagination_prints_nothing(servers: Servers) -> None:
    env = {**servers.env, "PLANHAT_PAGE_SIZE": "100"}
    servers.planhat.fail_on_page = 2
    servers.planhat.fail_status = 500

    run = await run_cli("preview", "--where", "ARR greater than 0", "--format", "json", env=env)

    assert run.code == 1
    assert run.stdout == ""
    assert "Planhat" in run.stderr
    assert run.stderr.count("\n") == 1


async def test_preview_rejected_tokens_say_what_to_fix(servers: Servers) -> None:
    planhat = await run_cli("preview", "--where", "ARR > 1", env={**servers.env, "PLANHAT_API_TOKEN": "wrong"})
    slack = await run_cli("preview", "--where", "ARR > 1", env={**servers.env, "SLACK_BOT_TOKEN": "xoxb-wrong"})
    missing = await run_cli("preview", "--where", "ARR > 1", env={**servers.env, "PLANHAT_API_TOKEN": ""})

    assert planhat.code == 1
    assert "PLANHAT_API_TOKEN" in planhat.stderr
    assert slack.code == 1
    assert "SLACK_BOT_TOKEN" in slack.stderr
    assert missing.code == 2
    assert "PLANHAT_API_TOKEN is not set" in missing.stderr


async def test_check_passes_on_a_good_setup(servers: Servers) -> None:
    run = await run_cli("check", env=servers.env)

    assert run.code == 0, run.stdout + run.stderr
    assert "All checks passed." in run.stdout


async def test_check_names_missing_history_scopes_as_optional(servers: Servers) -> None:
    servers.slack.scopes = tuple(scope for scope in servers.slack.scopes if not scope.endswith(":history"))

    run = await run_cli("check", env=servers.env)

    assert run.code == 0, run.stdout + run.stderr
    assert "Optional scopes are missing" in run.stdout
    assert "without channels:history, posts to public channels whose outcome is unknown" in run.stdout


async def test_check_catches_custom_field_without_prefix(servers: Servers) -> None:
    run = await run_cli("check", env={**servers.env, "PLANHAT_CHANNEL_FIELD": "Slack Channel"})

    assert run.code == 1
    assert 'write it as "custom.Slack Channel"' in run.stdout


async def test_setting_errors_print_one_sentence_without_traceback(servers: Servers) -> None:
    bad_url = await run_cli("preview", "--where", "ARR > 1", env={**servers.env, "PLANHAT_API_URL": "127.0.0.1:1"})
    not_slack = await run_cli(
        "preview", "--where", "ARR > 1", env={**servers.env, "SLACK_API_URL": servers.env["PLANHAT_API_URL"] + "/"}
    )

    assert bad_url.code == 2
    assert bad_url.stderr.count("\n") == 1
    assert "must start with https:// or http://" in bad_url.stderr
    assert not_slack.code == 1
    assert "Traceback" not in not_slack.stderr
    assert not_slack.stderr.count("\n") == 1


async def test_check_reports_missing_scope_and_unknown_field(servers: Servers) -> None:
    servers.slack.scopes = ("chat:write", "commands")
    env = {**servers.env, "PLANHAT_CHANNEL_FIELD": "custom.Slack Chanel"}

    run = await run_cli("check", env=env)

    assert run.code == 1
    assert "channels:read" in run.stdout
    assert 'Did you mean "custom.Slack Channel"?' in run.stdout


async def test_demo_runs_end_to_end() -> None:
    run = await run_cli("demo", "--companies", "300", env={"PATH": os.environ.get("PATH", "")})

    assert run.code == 0, run.stderr
    assert "Saved 5 segments" in run.stdout
    assert "delivered" in run.stdout
    assert "hold the message exactly once" in run.stdout
    assert ", 0 do not" not in run.stdout
