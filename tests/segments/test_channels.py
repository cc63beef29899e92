"""Channel resolution: exact matches by template or field, reasons for every miss, directory loading."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from loopback.server import start_server
from loopback.slack_server import SlackState
from planhat.models import Company
from segments.channels import (
    Channel,
    ChannelDirectory,
    ChannelListError,
    ChannelMapping,
    UnmappedKind,
    load_channel_directory,
    resolve_channels,
)
from tests.fakes import SlackStarter, slack_channel

FIELD = "custom.Slack Channel"


def _channel(channel_id: str, name: str, **flags: bool) -> Channel:
    values = {"is_private": False, "is_archived": False, "is_member": True, "is_ext_shared": False, **flags}
    return Channel(id=channel_id, name=name, **values)


def _company(company_id: str, name: str, channel_field: Any = None, **fields: Any) -> Company:
    custom = {} if channel_field is None else {"Slack Channel": channel_field}
    return Company(id=company_id, name=name, fields={"custom": custom, **fields})


DIRECTORY = ChannelDirectory(
    [
        _channel("C0ACME001", "customer-acme"),
        _channel("C0ACMEINC", "customer-acme-inc"),
        _channel("C0GLOBEX1", "customer-globex"),
        _channel("C0CAFE001", "customer-cafe-unicode"),
        _channel("C0ROCKET1", "customer-rocket-co"),
        _channel("C0PINGALL", "customer-channel-acme"),
        _channel("G0PRIVATE", "customer-initech", is_private=True),
        _channel("G0NOTBOT1", "customer-hooli", is_private=True, is_member=False),
        _channel("C0ARCHIVE", "customer-oldco", is_archived=True),
        _channel("C0OUTSIDE", "customer-umbrella", is_member=False, is_ext_shared=True),
        _channel("C0SUPPORT", "support-acme"),
    ]
)
TEMPLATE_ONLY = ChannelMapping()
WITH_FIELD = ChannelMapping(field=FIELD)


def test_template_matches_slug_channel() -> None:
    company = _company("co1", "Acme")

    resolution = resolve_channels([company], DIRECTORY, TEMPLATE_ONLY)

    assert [(row.company.id, row.channel.id) for row in resolution.matched] == [("co1", "C0ACME001")]
    assert resolution.unmapped == []


@pytest.mark.parametrize(
    ("name", "channel_id"),
    [
        ("Café Ünicode", "C0CAFE001"),
        ("🚀 Rocket & Co", "C0ROCKET1"),
        ("<!channel> Acme", "C0PINGALL"),
        ("  ACME  ", "C0ACME001"),
    ],
)
def test_template_slugs_unusual_names(name: str, channel_id: str) -> None:
    resolution = resolve_channels([_company("co1", name)], DIRECTORY, TEMPLATE_ONLY)

    assert [row.channel.id for row in resolution.matched] == [channel_id]


def test_template_never_matches_longer_name() -> None:
    directory = ChannelDirectory([_channel("C0ACMEINC", "customer-acme-inc"), _channel("C0ACMECO1", "customer-acmeco")])

    resolution = resolve_channels([_company("co1", "Acme")], directory, TEMPLATE_ONLY)

    assert resolution.matched == []
    assert resolution.unmapped[0].kind == UnmappedKind.NO_CHANNEL
    assert "No channel named #customer-acme is visible" in resolution.unmapped[0].reason


@pytest.mark.parametrize(
    "field_value",
    ["C0GLOBEX1", "customer-globex", "#customer-globex", " #Customer-Globex ", "<#C0GLOBEX1|customer-globex>"],
)
def test_field_accepts_id_name_and_link(field_value: str) -> None:
    company = _company("co1", "Acme", field_value)

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert [row.channel.id for row in resolution.matched] == ["C0GLOBEX1"]
    assert resolution.unmapped == []


def test_field_with_two_names_matches_both() -> None:
    company = _company("co1", "Acme", "#customer-globex, support-acme")

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert [row.channel.id for row in resolution.matched] == ["C0GLOBEX1", "C0SUPPORT"]


def test_field_list_value_matches_each_item() -> None:
    company = _company("co1", "Acme", ["customer-globex", "C0SUPPORT"])

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert [row.channel.id for row in resolution.matched] == ["C0GLOBEX1", "C0SUPPORT"]


def test_field_takes_precedence_over_template() -> None:
    company = _company("co1", "Acme", "#customer-globex")

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert "C0ACME001" not in [row.channel.id for row in resolution.matched]


@pytest.mark.parametrize("field_value", [None, "", "  ", "undefined", "Undefined", " , "])
def test_empty_field_falls_back_to_template(field_value: str | None) -> None:
    company = _company("co1", "Acme", field_value)

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert [row.channel.id for row in resolution.matched] == ["C0ACME001"]


def test_field_naming_unknown_channel_is_unmapped() -> None:
    company = _company("co1", "Acme", "#customer-acmee")

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert resolution.matched == []
    [unmapped] = resolution.unmapped
    assert unmapped.kind == UnmappedKind.FIELD_CHANNEL_NOT_FOUND
    assert '"Slack Channel" field names #customer-acmee' in unmapped.reason
    assert "invite @segment-bot if the channel is private" in unmapped.reason


def test_field_naming_unknown_id_says_id() -> None:
    resolution = resolve_channels([_company("co1", "Acme", "C0NOSUCH1")], DIRECTORY, WITH_FIELD)

    assert "the channel id C0NOSUCH1" in resolution.unmapped[0].reason


def test_field_with_one_missing_name_keeps_the_other() -> None:
    company = _company("co1", "Acme", "customer-globex, customer-nowhere")

    resolution = resolve_channels([company], DIRECTORY, WITH_FIELD)

    assert [row.channel.id for row in resolution.matched] == ["C0GLOBEX1"]
    assert len(resolution.unmapped) == 1
    assert "#customer-nowhere" in resolution.unmapped[0].reason


@pytest.mark.parametrize(
    ("company", "mapping"),
    [
        (_company("co1", "OldCo"), TEMPLATE_ONLY),
        (_company("co1", "Acme", "#customer-oldco"), WITH_FIELD),
    ],
)
def test_archived_channel_is_unmapped(company: Company, mapping: ChannelMapping) -> None:
    resolution = resolve_channels([company], DIRECTORY, mapping)

    assert resolution.matched == []
    assert resolution.unmapped[0].kind == UnmappedKind.ARCHIVED
    assert resolution.unmapped[0].reason.startswith("#customer-oldco is archived. Unarchive it")


def test_private_channel_with_bot_is_matched() -> None:
    resolution = resolve_channels([_company("co1", "Initech")], DIRECTORY, TEMPLATE_ONLY)

    assert [row.channel.id for row in resolution.matched] == ["G0PRIVATE"]


def test_hidden_private_channel_names_both_fixes() -> None:
    # A bot token never lists private channels it is not in, so the directory cannot tell
    # "missing" from "private without the bot" and the reason names both fixes.
    directory = ChannelDirectory([_channel("C0ACME001", "customer-acme")])

    resolution = resolve_channels([_company("co1", "Hooli")], directory, WITH_FIELD)

    reason = resolution.unmapped[0].reason
    assert "No channel named #customer-hooli is visible to @segment-bot" in reason
    assert "Create it" in reason
    assert "invite @segment-bot" in reason
    assert '"Slack Channel" field' in reason


def test_listed_private_channel_without_bot_asks_for_invite() -> None:
    resolution = resolve_channels([_company("co1", "Hooli")], DIRECTORY, TEMPLATE_ONLY)

    assert resolution.matched == []
    assert resolution.unmapped[0].kind == UnmappedKind.PRIVATE_WITHOUT_BOT
    assert "Invite @segment-bot to #customer-hooli" in resolution.unmapped[0].reason


def test_public_channel_without_bot_is_matched() -> None:
    resolution = resolve_channels([_company("co1", "Umbrella")], DIRECTORY, TEMPLATE_ONLY)

    assert [row.channel.id for row in resolution.matched] == ["C0OUTSIDE"]


def test_duplicate_company_names_give_one_target() -> None:
    companies = [_company("co1", "Acme"), _company("co2", "ACME"), _company("co3", "Globex")]

    targets = resolve_channels(companies, DIRECTORY, TEMPLATE_ONLY).targets()

    assert [target.channel.name for target in targets] == ["customer-acme", "customer-globex"]
    assert [company.id for company in targets[0].companies] == ["co1", "co2"]


def test_targets_are_ordered_by_channel_name() -> None:
    companies = [_company("co1", "Globex"), _company("co2", "Acme", "support-acme"), _company("co3", "Café Ünicode")]

    targets = resolve_channels(companies, DIRECTORY, WITH_FIELD).targets()

    assert [target.channel.name for target in targets] == ["customer-cafe-unicode", "customer-globex", "support-acme"]


def test_same_company_twice_is_matched_once() -> None:
    company = _company("co1", "Acme", "customer-acme, #customer-acme, C0ACME001")

    resolution = resolve_channels([company, company], DIRECTORY, WITH_FIELD)

    assert len(resolution.matched) == 1


@pytest.mark.parametrize("name", ["🎉🎉", "---", "   "])
def test_empty_slug_is_unmapped(name: str) -> None:
    resolution = resolve_channels([_company("co1", name)], DIRECTORY, WITH_FIELD)

    [unmapped] = resolution.unmapped
    assert unmapped.kind == UnmappedKind.EMPTY_SLUG
    assert "has no letters or digits to build a channel name from" in unmapped.reason
    assert '"Slack Channel" field' in unmapped.reason


def test_ambiguous_name_is_never_guessed() -> None:
    directory = ChannelDirectory([_channel("C0FIRST01", "customer-acme"), _channel("C0SECOND1", "Customer-Acme")])

    resolution = resolve_channels([_company("co1", "Acme")], directory, WITH_FIELD)

    assert resolution.matched == []
    assert resolution.unmapped[0].kind == UnmappedKind.AMBIGUOUS_NAME
    assert "Several channels are named #customer-acme" in resolution.unmapped[0].reason


def test_id_and_external_id_templates() -> None:
    directory = ChannelDirectory([_channel("C0EXT0001", "cs-ext-42"), _channel("C0ID00001", "cs-5f3a")])
    by_external_id = ChannelMapping(template="cs-ext-{external_id}")
    by_id = ChannelMapping(template="cs-{id}")
    company = _company("5F3A", "Acme", externalId=42)

    external = resolve_channels([company], directory, by_external_id)
    internal = resolve_channels([company], directory, by_id)

    assert [row.channel.id for row in external.matched] == ["C0EXT0001"]
    assert [row.channel.id for row in internal.matched] == ["C0ID00001"]


def test_missing_external_id_is_unmapped() -> None:
    mapping = ChannelMapping(template="cs-ext-{external_id}")

    resolution = resolve_channels([_company("co1", "Acme")], DIRECTORY, mapping)

    assert resolution.unmapped[0].kind == UnmappedKind.MISSING_TEMPLATE_VALUE
    assert "no usable External ID" in resolution.unmapped[0].reason
    assert "Set its External ID in Planhat" in resolution.unmapped[0].reason


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("customer-{name}", "{name}"),
        ("customer-{}", "{}"),
        ("customer", "has no placeholder"),
        ("customer-{slug!r}", "without a format spec"),
        ("customer-{slug:>10}", "without a format spec"),
        ("customer-{slug", "Invalid channel name template"),
    ],
)
def test_mapping_rejects_bad_template(template: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        ChannelMapping(template=template)

    assert message in str(raised.value)


def test_mapping_lists_planhat_fields() -> None:
    mapping = ChannelMapping(field=FIELD, template="cs-{external_id}")

    assert mapping.planhat_fields() == ("custom", "externalId")
    assert ChannelMapping().planhat_fields() == ()


def test_directory_looks_up_by_id_and_name() -> None:
    assert DIRECTORY.by_id("C0ACME001") is not None
    assert DIRECTORY.by_name("#Customer-Acme") == DIRECTORY.by_id("C0ACME001")
    assert DIRECTORY.by_name("customer-nothing") is None
    assert len(DIRECTORY) == 11


async def test_load_directory_follows_short_and_empty_pages(start_slack: SlackStarter) -> None:
    # Pages are cut before filtering, so the middle page of 200 hidden channels comes back empty.
    channels = [
        *[slack_channel(f"C1{index:07d}", f"visible-{index}") for index in range(200)],
        *[slack_channel(f"G2{index:07d}", f"hidden-{index}", is_private=True, is_member=False) for index in range(200)],
        *[slack_channel(f"C3{index:07d}", f"archived-{index}", is_archived=True) for index in range(50)],
    ]
    state = SlackState(channels=channels, bot_token="xoxb-test", short_pages=True)
    client = await start_slack(state)

    directory = await load_channel_directory(client)

    assert len(directory) == 250
    assert directory.calls == 3
    assert directory.by_name("archived-3") is not None
    assert directory.by_name("hidden-3") is None
    params = state.calls_to("conversations.list")[0].params
    assert params["types"] == "public_channel,private_channel"
    assert params["exclude_archived"] == "0"
    assert params["limit"] == "200"


async def test_load_directory_reads_channel_flags(start_slack: SlackStarter) -> None:
    channels = [
        slack_channel("G0PRIVATE", "customer-initech", is_private=True),
        slack_channel("C0SHARED1", "customer-umbrella", is_member=False, is_ext_shared=True),
    ]
    client = await start_slack(SlackState(channels=channels, bot_token="xoxb-test"))

    directory = await load_channel_directory(client)

    assert directory.by_id("G0PRIVATE") == _channel("G0PRIVATE", "customer-initech", is_private=True)
    assert directory.by_id("C0SHARED1") == _channel(
        "C0SHARED1", "customer-umbrella", is_member=False, is_ext_shared=True
    )


@pytest.fixture
async def repeating_cursor_url() -> AsyncIterator[str]:
    async def list_channels(request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "channels": [], "response_metadata": {"next_cursor": "same-cursor"}}
        )

    app = web.Application()
    app.router.add_route("*", "/api/conversations.list", list_channels)
    server = await start_server(app)
    yield f"{server.url}/api/"
    await server.stop()


async def test_load_directory_stops_on_repeated_cursor(repeating_cursor_url: str) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=repeating_cursor_url, retry_handlers=[])

    with pytest.raises(ChannelListError) as raised:
        await load_channel_directory(client)

    assert "same-cursor" in str(raised.value)
