"""The generated sample: reproducible, realistic, and containing every awkward case it records."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from loopback.sample_data import (
    CHANNEL_CASES,
    SLACK_CHANNEL_FIELD,
    SampleCase,
    SampleData,
    generate_companies,
    generate_sample,
)
from segments.slugs import slugify

TODAY = date(2026, 12, 4)
CHANNEL_ID = re.compile(r"^C[A-Z0-9]{10}$")
CHANNEL_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")
CHANNEL_KEYS = {
    "id",
    "name",
    "is_private",
    "is_archived",
    "is_member",
    "is_ext_shared",
    "restricted",
}
PHASES = {"Onboarding", "Adoption", "Expansion", "Renewal", "At Risk", "Churned"}
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_sample_data.py"


@pytest.fixture(scope="module")
def sample() -> SampleData:
    return generate_sample(today=TODAY)


def companies_in(sample: SampleData, case: SampleCase) -> list[dict[str, Any]]:
    ids = set(sample.cases[case])
    return [company for company in sample.companies if company["_id"] in ids]


def channel_by_name(sample: SampleData) -> dict[str, dict[str, Any]]:
    return {channel["name"]: channel for channel in sample.channels}


def template_channel_name(company: dict[str, Any]) -> str:
    return "customer-" + slugify(company["name"])


# Reproducibility


def test_same_seed_and_day_give_same_sample(sample: SampleData) -> None:
    again = generate_sample(today=TODAY)

    assert again.companies == sample.companies
    assert again.channels == sample.channels
    assert again.cases == sample.cases


def test_other_seed_gives_other_companies(sample: SampleData) -> None:
    other = generate_sample(seed=7, today=TODAY)

    assert other.companies[0]["_id"] != sample.companies[0]["_id"]


def test_sample_companies_match_generate_companies(sample: SampleData) -> None:
    companies = generate_companies(2000, 20261204, TODAY)

    assert companies == sample.companies


def test_dates_move_with_today() -> None:
    later = TODAY + timedelta(days=100)

    shifted = generate_sample(today=later)

    # Only ISO renewal dates can be compared with renewalDaysFromNow as text.
    checked = 0
    for company in shifted.companies:
        renewal = company.get("renewalDate")
        if isinstance(renewal, str):
            expected = later + timedelta(days=company["renewalDaysFromNow"])
            assert renewal.startswith(expected.isoformat())
            checked += 1
    assert checked > 1500


# Awkward company values


@pytest.mark.parametrize("case", [case for case in SampleCase if case not in CHANNEL_CASES])
def test_each_value_case_is_present(sample: SampleData, case: SampleCase) -> None:
    assert len(sample.cases[case]) >= 1


def test_awkward_names_are_as_recorded(sample: SampleData) -> None:
    accented = [company["name"] for company in companies_in(sample, SampleCase.ACCENTED_NAME)]
    emoji = [company["name"] for company in companies_in(sample, SampleCase.EMOJI_NAME)]
    ampersand = [company["name"] for company in companies_in(sample, SampleCase.AMPERSAND_NAME)]
    markup = [company["name"] for company in companies_in(sample, SampleCase.SLACK_MARKUP_NAME)]

    assert "Société Générale Énergie" in accented
    assert all(not name.isascii() for name in accented)
    assert "Rocket 🚀 Labs" in emoji
    assert all("&" in name for name in ampersand)
    assert any("<!channel>" in name for name in markup)
    assert any("<@U123>" in name for name in markup)


def test_duplicate_names_come_in_pairs(sample: SampleData) -> None:
    names = [company["name"] for company in companies_in(sample, SampleCase.DUPLICATE_NAME)]
    all_names = [company.get("name") for company in sample.companies]

    assert len(names) >= 2
    for name in set(names):
        assert all_names.count(name) == 2


def test_missing_names_are_absent_or_null(sample: SampleData) -> None:
    companies = companies_in(sample, SampleCase.MISSING_NAME)

    assert any("name" not in company for company in companies)
    assert any("name" in company and company["name"] is None for company in companies)


def test_names_without_slug_slugify_to_empty(sample: SampleData) -> None:
    companies = companies_in(sample, SampleCase.NO_SLUG_NAME)

    assert companies
    assert all(company["name"] and slugify(company["name"]) == "" for company in companies)


def test_health_cases_have_null_and_string_values(sample: SampleData) -> None:
    null_health = companies_in(sample, SampleCase.NULL_HEALTH)
    string_health = companies_in(sample, SampleCase.STRING_HEALTH)

    assert all(company["h"] is None for company in null_health)
    assert all(isinstance(company["h"], str) for company in string_health)
    assert "7" in [company["h"] for company in string_health]


def test_undefined_custom_values_are_literal_string(sample: SampleData) -> None:
    companies = companies_in(sample, SampleCase.UNDEFINED_CUSTOM)

    assert companies
    assert all("undefined" in company["custom"].values() for company in companies)


def test_epoch_ms_renewals_are_integers_matching_days(sample: SampleData) -> None:
    companies = companies_in(sample, SampleCase.EPOCH_MS_RENEWAL)

    assert companies
    for company in companies:
        renewal = company["renewalDate"]
        assert isinstance(renewal, int)
        renewal_day = date(1970, 1, 1) + timedelta(milliseconds=renewal)
        assert renewal_day == TODAY + timedelta(days=company["renewalDaysFromNow"])


def test_past_renewals_are_before_today(sample: SampleData) -> None:
    companies = companies_in(sample, SampleCase.PAST_RENEWAL)

    assert companies
    for company in companies:
        assert company["renewalDaysFromNow"] < 0
        assert company["renewalDate"][:10] < TODAY.isoformat()


def test_string_arr_and_owner_objects(sample: SampleData) -> None:
    string_arr = companies_in(sample, SampleCase.STRING_ARR)
    owner_objects = companies_in(sample, SampleCase.OWNER_OBJECT)

    assert all(isinstance(company["arr"], str) for company in string_arr)
    assert all(float(company["arr"]) >= 0 for company in string_arr)
    assert all(isinstance(company["owner"]["_id"], str) for company in owner_objects)


# Company shape and realistic proportions


def test_company_ids_are_unique_object_ids(sample: SampleData) -> None:
    ids = [company["_id"] for company in sample.companies]

    assert len(set(ids)) == len(ids) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{24}", company_id) for company_id in ids)


def test_status_and_phase_shares_are_realistic(sample: SampleData) -> None:
    statuses = [company["status"] for company in sample.companies]
    phases = [company["phase"] for company in sample.companies]

    assert 0.75 <= statuses.count("customer") / len(statuses) <= 0.92
    assert 0.04 <= phases.count("Churned") / len(phases) <= 0.15
    assert 0.05 <= phases.count("At Risk") / len(phases) <= 0.2
    assert set(phases) <= PHASES | {None}


def test_health_and_money_ranges_are_realistic(sample: SampleData) -> None:
    customers = [company for company in sample.companies if company["status"] == "customer"]
    health = [company["h"] for company in customers if isinstance(company["h"], int | float)]
    mrr = [company["mrr"] for company in customers]

    assert all(0 <= score <= 10 for score in health)
    assert 5.0 <= statistics.mean(health) <= 7.5
    assert 800 <= statistics.median(mrr) <= 3000
    with_arr_twelve_times_mrr = [
        company for company in customers if company["arr"] == 12 * company["mrr"]
    ]
    assert len(with_arr_twelve_times_mrr) / len(customers) >= 0.85
    assert all(1 <= company["csmScore"] <= 5 for company in customers if company["csmScore"])


def test_most_customer_renewals_fall_in_next_year(sample: SampleData) -> None:
    customers = [company for company in sample.companies if company["status"] == "customer"]
    offsets = [company["renewalDaysFromNow"] for company in customers]

    within_year = [offset for offset in offsets if 0 <= offset <= 365]
    assert len(within_year) / len(customers) >= 0.85


# Custom field definitions


def test_custom_field_definitions_cover_types_and_parents(sample: SampleData) -> None:
    company_fields = {
        definition["name"]: definition["type"]
        for definition in sample.custom_fields
        if definition["parent"] == "company"
    }
    other_parents = [
        definition for definition in sample.custom_fields if definition["parent"] != "company"
    ]

    assert company_fields[SLACK_CHANNEL_FIELD] == "text"
    assert company_fields["Seats Purchased"] == "number"
    assert company_fields["Plan"] == "list"
    assert company_fields["Reference OK"] == "checkbox"
    assert company_fields["Contract Signed"] == "date"
    assert company_fields["Modules"] == "multipicklist"
    assert company_fields["NPS Rating"] == "rating"
    assert company_fields["Executive Sponsor"] == "team member"
    assert company_fields["Region"] == "text"
    assert len(other_parents) >= 1


# Slack workspace


def test_channels_have_valid_unique_ids_and_names(sample: SampleData) -> None:
    ids = [channel["id"] for channel in sample.channels]
    names = [channel["name"] for channel in sample.channels]

    assert len(set(ids)) == len(ids)
    assert len(set(names)) == len(names)
    assert all(CHANNEL_ID.fullmatch(channel_id) for channel_id in ids)
    assert all(CHANNEL_NAME.fullmatch(name) for name in names)
    assert all(set(channel) == CHANNEL_KEYS for channel in sample.channels)


def test_every_company_has_exactly_one_channel_case(sample: SampleData) -> None:
    seen: dict[str, str] = {}
    for case in CHANNEL_CASES:
        for company_id in sample.cases[case]:
            assert company_id not in seen, f"{company_id} is in {seen.get(company_id)} and {case}"
            seen[company_id] = case

    assert set(seen) == {company["_id"] for company in sample.companies}


@pytest.mark.parametrize("case", CHANNEL_CASES)
def test_each_channel_case_is_present(sample: SampleData, case: SampleCase) -> None:
    assert len(sample.cases[case]) >= 2


@pytest.mark.parametrize(
    ("case", "expected_flags"),
    [
        (
            SampleCase.TEMPLATE_CHANNEL,
            {"is_private": False, "is_member": True, "is_archived": False},
        ),
        (SampleCase.ARCHIVED_CHANNEL, {"is_archived": True}),
        (SampleCase.PRIVATE_MEMBER_CHANNEL, {"is_private": True, "is_member": True}),
        (SampleCase.PRIVATE_NOT_MEMBER_CHANNEL, {"is_private": True, "is_member": False}),
        (SampleCase.PUBLIC_NOT_MEMBER_CHANNEL, {"is_private": False, "is_member": False}),
        (SampleCase.EXT_SHARED_CHANNEL, {"is_ext_shared": True}),
        (SampleCase.RESTRICTED_CHANNEL, {"restricted": True}),
    ],
)
def test_template_channels_have_case_flags(
    sample: SampleData, case: SampleCase, expected_flags: dict[str, bool]
) -> None:
    channels = channel_by_name(sample)

    for company in companies_in(sample, case):
        channel = channels[template_channel_name(company)]
        for flag, value in expected_flags.items():
            assert channel[flag] is value, f"{channel['name']} {flag}"


def test_no_channel_companies_have_no_template_channel(sample: SampleData) -> None:
    channels = channel_by_name(sample)

    for company in companies_in(sample, SampleCase.NO_CHANNEL):
        assert template_channel_name(company) not in channels
        assert SLACK_CHANNEL_FIELD not in company["custom"] or company["custom"][
            SLACK_CHANNEL_FIELD
        ] == "undefined"


def test_awkward_names_resolve_to_plain_template_channels(sample: SampleData) -> None:
    channels = channel_by_name(sample)

    assert channels["customer-societe-generale-energie"]["is_member"] is True
    assert "customer-rocket-labs" in channels
    assert "customer-smith-sons" in channels
    assert "customer-channel-alerts-inc" in channels


def test_duplicate_names_share_one_channel(sample: SampleData) -> None:
    channels = channel_by_name(sample)
    duplicates = companies_in(sample, SampleCase.DUPLICATE_NAME)

    channel_ids = {channels[template_channel_name(company)]["id"] for company in duplicates}

    assert len(channel_ids) == len(duplicates) // 2


def test_channel_field_forms_point_at_existing_channels(sample: SampleData) -> None:
    channels = channel_by_name(sample)
    channel_ids = {channel["id"] for channel in sample.channels}

    def field_value(company: dict[str, Any]) -> str:
        return str(company["custom"][SLACK_CHANNEL_FIELD])

    for company in companies_in(sample, SampleCase.FIELD_CHANNEL_ID):
        assert field_value(company) in channel_ids
    for company in companies_in(sample, SampleCase.FIELD_CHANNEL_NAME):
        assert not field_value(company).startswith("#")
        assert field_value(company) in channels
    for company in companies_in(sample, SampleCase.FIELD_CHANNEL_HASH_NAME):
        assert field_value(company).startswith("#")
        assert field_value(company)[1:] in channels
    for company in companies_in(sample, SampleCase.FIELD_TWO_CHANNELS):
        names = [part.strip().lstrip("#") for part in field_value(company).split(",")]
        assert len(names) == 2
        assert all(name in channels for name in names)
    for company in companies_in(sample, SampleCase.FIELD_MISSING_CHANNEL):
        assert field_value(company).lstrip("#") not in channels


def test_field_channels_do_not_follow_template(sample: SampleData) -> None:
    field_channel_ids = {
        company["custom"][SLACK_CHANNEL_FIELD]
        for company in companies_in(sample, SampleCase.FIELD_CHANNEL_ID)
    }

    for channel in sample.channels:
        if channel["id"] in field_channel_ids:
            assert not channel["name"].startswith("customer-")


def test_workspace_has_unrelated_channels(sample: SampleData) -> None:
    channels = channel_by_name(sample)

    assert {"general", "random", "cs-team"} <= set(channels)


def test_template_channel_share_is_realistic(sample: SampleData) -> None:
    reachable = len(sample.cases[SampleCase.TEMPLATE_CHANNEL])

    assert 0.7 <= reachable / len(sample.companies) <= 0.9


# Scale and the command-line script


def test_generate_companies_handles_100k() -> None:
    companies = generate_companies(100_000, 1, TODAY)

    ids = {company["_id"] for company in companies}
    assert len(companies) == 100_000
    assert len(ids) == 100_000


def test_script_writes_json_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate_sample_data", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    exit_code = script.main(["--out", str(tmp_path), "--today", "2026-12-04", "--companies", "300"])

    assert exit_code == 0
    companies = json.loads((tmp_path / "companies.json").read_text(encoding="utf-8"))
    channels = json.loads((tmp_path / "channels.json").read_text(encoding="utf-8"))
    custom_fields = json.loads((tmp_path / "customfields.json").read_text(encoding="utf-8"))
    assert len(companies) == 300
    assert channels
    assert custom_fields
