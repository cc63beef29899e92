"""AudienceResolver end to end: loopback Planhat and Slack servers, real clients, the sample data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import SampleCase, SampleData, generate_sample
from loopback.server import start_server
from loopback.slack_server import SlackState, create_slack_app
from planhat.client import PlanhatClient
from planhat.errors import PlanhatServerError
from segments.audience import AudienceResolver
from segments.channels import ChannelMapping

TODAY = date(2026, 12, 4)
TOKEN = "audience-token"


@dataclass
class Setup:
    sample: SampleData
    planhat: PlanhatState
    slack: SlackState
    resolver: AudienceResolver


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    sample = generate_sample(today=TODAY, company_count=600)
    planhat = PlanhatState(companies=sample.companies, custom_fields=sample.custom_fields, token=TOKEN)
    slack = SlackState(channels=sample.channels, bot_token="xoxb-audience")
    planhat_server = await start_server(create_planhat_app(planhat))
    slack_server = await start_server(create_slack_app(slack))
    client = PlanhatClient(base_url=planhat_server.url, token=TOKEN, page_size=100)
    resolver = AudienceResolver(
        source=client,
        slack=AsyncWebClient(token="xoxb-audience", base_url=f"{slack_server.url}/api/"),
        mapping=ChannelMapping(field="custom.Slack Channel", template="customer-{slug}"),
    )
    try:
        yield Setup(sample=sample, planhat=planhat, slack=slack, resolver=resolver)
    finally:
        await client.aclose()
        await slack_server.stop()
        await planhat_server.stop()


@pytest.mark.parametrize(
    "text",
    [
        "Health Score less than 40",
        "Renewal Date within 60 days",
        'Lifecycle Stage equals "Onboarding"',
        "Health Score less than 40 AND ARR greater than 50000",
        "ARR greater than 10000",
    ],
)
async def test_example_rules_resolve_to_channels(setup: Setup, text: str) -> None:
    rules, catalog = await setup.resolver.parse(text)

    audience = await setup.resolver.resolve(rules, catalog=catalog, today=TODAY)

    assert audience.matched
    assert audience.company_count == len({company["_id"] for company in setup.sample.companies})
    assert len(audience.targets) == len({row.channel_id for row in audience.matched})
    assert {target.channel_id for target in audience.targets} <= {c["id"] for c in setup.sample.channels}


async def test_renewal_within_60_days_reasons_are_in_window(setup: Setup) -> None:
    rules, catalog = await setup.resolver.parse("Renewal Date within 60 days")

    audience = await setup.resolver.resolve(rules, catalog=catalog, today=TODAY)

    for row in audience.matched:
        renewal = date.fromisoformat(row.reasons["Renewal Date"])
        assert TODAY <= renewal <= date(2027, 2, 2)


async def test_duplicate_company_names_share_one_target(setup: Setup) -> None:
    duplicate_ids = set(setup.sample.cases[SampleCase.DUPLICATE_NAME])
    rules, catalog = await setup.resolver.parse("Name is not empty")

    audience = await setup.resolver.resolve(rules, catalog=catalog, today=TODAY)

    targets = [t for t in audience.targets if {c.company_id for c in t.companies} & duplicate_ids]
    assert targets
    assert any(len(target.companies) > 1 for target in targets)
    assert len({t.channel_id for t in audience.targets}) == len(audience.targets)


async def test_planhat_failure_mid_pagination_gives_no_audience(setup: Setup) -> None:
    rules, catalog = await setup.resolver.parse("ARR greater than 0")
    setup.planhat.fail_on_page = 3
    setup.planhat.fail_status = 500

    with pytest.raises(PlanhatServerError):
        await setup.resolver.resolve(rules, catalog=catalog, fresh=True)


async def test_fresh_resolve_fetches_again_and_preview_uses_cache(setup: Setup) -> None:
    rules, catalog = await setup.resolver.parse("ARR greater than 0")

    await setup.resolver.resolve(rules, catalog=catalog)
    after_first = len(setup.planhat.requests_to("/companies"))
    await setup.resolver.resolve(rules, catalog=catalog)
    after_cached = len(setup.planhat.requests_to("/companies"))
    await setup.resolver.resolve(rules, catalog=catalog, fresh=True)
    after_fresh = len(setup.planhat.requests_to("/companies"))

    assert after_first == 7
    assert after_cached == after_first
    assert after_fresh == after_first * 2


async def test_missing_health_scores_are_warned_about(setup: Setup) -> None:
    rules, catalog = await setup.resolver.parse("Health Score less than 4")

    audience = await setup.resolver.resolve(rules, catalog=catalog, today=TODAY)

    assert any("no Health Score" in warning for warning in audience.warnings)
    null_health = set(setup.sample.cases[SampleCase.NULL_HEALTH])
    assert not null_health & {row.company_id for row in audience.matched}


async def test_matching_company_count_counts_distinct_companies(setup: Setup) -> None:
    expected = {
        company["_id"]
        for company in setup.sample.companies
        if isinstance(company.get("name"), str) and company["name"].strip() and company["name"] != "undefined"
    }
    rules, catalog = await setup.resolver.parse("Name is not empty")

    audience = await setup.resolver.resolve(rules, catalog=catalog, today=TODAY)

    assert audience.matching_company_count == len(expected)
    assert audience.companies_without_channel == len(
        {row.company_id for row in audience.unmapped} - {row.company_id for row in audience.matched}
    )


async def test_misspelled_text_value_suggests_closest(setup: Setup) -> None:
    rules, catalog = await setup.resolver.parse('Lifecycle Stage equals "Onbording"')

    audience = await setup.resolver.resolve(rules, catalog=catalog, today=TODAY)

    assert audience.matched == []
    assert 'No company in Planhat has Lifecycle Stage "Onbording". Did you mean "Onboarding"?' in audience.warnings


async def test_wrong_channel_field_is_warned_about(setup: Setup) -> None:
    rules, catalog = await setup.resolver.parse("ARR greater than 0")
    wrong = ChannelMapping(field="Slack Channel", template="customer-{slug}")

    audience = await setup.resolver.resolve(rules, catalog=catalog, mapping=wrong, today=TODAY)

    assert any('channel field "Slack Channel"' in warning for warning in audience.warnings)
