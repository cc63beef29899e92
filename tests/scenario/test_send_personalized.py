"""Personalized sends over HTTP: each channel reads its own company's Planhat values."""

from __future__ import annotations

import json
from typing import Any

from handlers.views import send as views
from segments.ports import DeliveryTarget
from segments.slack_text import escape_mrkdwn
from tests.scenario.conftest import World
from tests.scenario.helpers import eventually
from tests.scenario.slack_sim import ADMIN_ID
from tests.scenario.test_send import (
    SLOW_TIMEOUT,
    _audience,
    _channel_posts,
    _confirmation,
    _final_report,
    _form_values,
    _last_dm_containing,
    _open_with_shortcut,
    _rich_text,
    _save_segment,
    _submit,
    _view_text,
)

# Two companies named "Acme Corp" share one channel, and two names carry Slack markup.
NAMED = 'Name in ("Acme Corp", "<!channel> Alerts Inc", "Team <@U123> Corp", "Smith & Sons")'
GREETING = "Hi {{company.name}}, ARR {{arr}}"


def _company_record(world: World, company_id: str) -> dict[str, Any]:
    return next(company for company in world.sample.companies if company["_id"] == company_id)


def _first_company_id(target: DeliveryTarget) -> str:
    """Pick the company a shared channel's message uses: the first by name, then by id."""
    first = min(
        target.companies, key=lambda company: (company.company_name.casefold(), company.company_id)
    )
    return first.company_id


def _arr_text(raw: Any) -> str:
    return f"{round(float(str(raw).replace(',', ''))):,}"


def _notice_shown(world: World, view_id: str) -> str | None:
    """Return the send modal's text once a warning notice was added to it, else None."""
    view = world.slack.views[view_id]
    text = _view_text(view)
    if view["callback_id"] == views.SEND_CALLBACK and ":warning:" in text:
        return text
    return None


def _reachable(world: World, targets: list[DeliveryTarget]) -> list[DeliveryTarget]:
    return [
        target
        for target in targets
        if not (world.slack.channel(target.channel_id) or {}).get("restricted")
    ]


async def test_personalized_message_names_each_channels_company(world: World) -> None:
    segment_id = await _save_segment(world, "Named", NAMED)
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text(GREETING)))
    confirmation = await _confirmation(world, view["id"])

    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    audience = await _audience(world, segment_id)
    targets = _reachable(world, list(audience.targets))
    assert any(len(target.companies) > 1 for target in targets)
    assert _channel_posts(world) == {target.channel_id: 1 for target in targets}
    for target in targets:
        company = _company_record(world, _first_company_id(target))
        post = world.slack.posts_in(target.channel_id)[0]
        arr = _arr_text(company["arr"])
        assert post["text"] == f"Hi {escape_mrkdwn(company['name'])}, ARR {arr}"
        element = post["blocks"][0]["elements"][0]["elements"][0]
        assert element == {"type": "text", "text": f"Hi {company['name']}, ARR {arr}"}


async def test_markup_in_company_names_pings_nobody(world: World) -> None:
    segment_id = await _save_segment(world, "Named", NAMED)
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text(GREETING)))
    confirmation = await _confirmation(world, view["id"])

    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    texts = [
        post["text"]
        for channel_id in _channel_posts(world)
        for post in world.slack.posts_in(channel_id)
    ]
    assert any("&lt;!channel&gt; Alerts Inc" in text for text in texts)
    assert any("Team &lt;@U123&gt; Corp" in text for text in texts)
    for text in texts:
        assert "<!channel>" not in text
        assert "<@U123>" not in text


async def test_confirmation_shows_sample_rendering(world: World) -> None:
    segment_id = await _save_segment(world, "Named", NAMED)
    view = await _open_with_shortcut(world)

    await _submit(world, view, _form_values(segment_id, _rich_text(GREETING)))
    confirmation = await _confirmation(world, view["id"])

    audience = await _audience(world, segment_id)
    sample = min(audience.targets, key=lambda target: (target.channel_name, target.channel_id))
    company = _company_record(world, _first_company_id(sample))
    preview = confirmation["blocks"][-1]
    shared = sum(len(target.companies) > 1 for target in audience.targets)
    assert preview["type"] == "rich_text"
    assert (
        preview["elements"][0]["elements"][0]["text"]
        == f"Hi {company['name']}, ARR {_arr_text(company['arr'])}"
    )
    assert f"As <#{sample.channel_id}> will see it" in _view_text(confirmation)
    assert escape_mrkdwn(company["name"]) in _view_text(confirmation)
    assert f"{shared} channel has more than one company" in _view_text(confirmation)
    assert "{{company.name}}" not in _view_text(confirmation)
    assert _channel_posts(world) == {}


async def test_missing_renewal_date_blocks_send_with_names(world: World) -> None:
    segment_id = await _save_segment(world, "Lost", 'Status equals "lost"')
    view = await _open_with_shortcut(world)
    message = _rich_text("Your renewal is on {{renewal_date}}.")

    await _submit(world, view, _form_values(segment_id, message, test_first=True))
    shown = await eventually(lambda: _notice_shown(world, view["id"]), timeout=SLOW_TIMEOUT)

    audience = await _audience(world, segment_id)
    lacking = sorted(
        {
            _company_record(world, _first_company_id(target))["name"]
            for target in audience.targets
            if _company_record(world, _first_company_id(target))["renewalDate"] is None
        },
        key=str.casefold,
    )
    having = [
        _company_record(world, _first_company_id(target))["name"]
        for target in audience.targets
        if _company_record(world, _first_company_id(target))["renewalDate"] is not None
    ]
    modal = world.slack.views[view["id"]]
    message_input = next(
        block for block in modal["blocks"] if block.get("block_id") == views.MESSAGE_BLOCK
    )
    assert lacking
    assert having
    assert f"{len(lacking)} companies have no value for `{{{{renewal_date}}}}`" in shown
    for name in lacking[:20]:
        assert json.dumps(escape_mrkdwn(name))[1:-1] in shown
    for name in having:
        assert json.dumps(escape_mrkdwn(name))[1:-1] not in shown
    assert message_input["element"]["initial_value"] == message
    assert _channel_posts(world) == {}
    assert world.slack.dm_messages(ADMIN_ID) == []


async def test_fallback_unblocks_the_send(world: World) -> None:
    segment_id = await _save_segment(world, "Lost", 'Status equals "lost"')
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text("Renews {{renewal_date}}.")))
    await eventually(lambda: _notice_shown(world, view["id"]), timeout=SLOW_TIMEOUT)
    returned = world.slack.views[view["id"]]

    fixed = _rich_text('Renews {{renewal_date | default: "at the end of your term"}}.')
    await _submit(world, returned, _form_values(segment_id, fixed))
    confirmation = await _confirmation(world, view["id"])
    await _submit(world, confirmation, {})
    await eventually(lambda: _final_report(world), timeout=SLOW_TIMEOUT)

    audience = await _audience(world, segment_id)
    texts = {}
    for target in _reachable(world, list(audience.targets)):
        company = _company_record(world, _first_company_id(target))
        texts[target.channel_id] = world.slack.posts_in(target.channel_id)[0]["text"]
        expected = (
            company["renewalDate"][:10] if company["renewalDate"] else "at the end of your term"
        )
        assert texts[target.channel_id] == f"Renews {expected}."
    assert "Renews at the end of your term." in texts.values()


async def test_unknown_variable_is_rejected_inline(world: World) -> None:
    segment_id = await _save_segment(world, "Named", NAMED)
    view = await _open_with_shortcut(world)

    ack = await _submit(world, view, _form_values(segment_id, _rich_text("Hi {{helth_score}}")))

    assert ack is not None
    assert ack["response_action"] == "errors"
    assert ack["errors"] == {
        views.MESSAGE_BLOCK: 'Unknown variable "{{helth_score}}". Did you mean {{health_score}}?'
    }


async def test_unknown_custom_field_returns_to_send_modal(world: World) -> None:
    segment_id = await _save_segment(world, "Named", NAMED)
    view = await _open_with_shortcut(world)

    await _submit(
        world, view, _form_values(segment_id, _rich_text("Seats: {{custom.Seats Purchasd}}"))
    )
    shown = await eventually(lambda: _notice_shown(world, view["id"]), timeout=SLOW_TIMEOUT)

    assert 'No Planhat custom field is named \\"Seats Purchasd\\"' in shown
    assert "Did you mean {{custom.Seats Purchased}}?" in shown
    assert _channel_posts(world) == {}


async def test_test_send_reaches_only_the_sender(world: World) -> None:
    segment_id = await _save_segment(world, "Named", NAMED)
    view = await _open_with_shortcut(world)

    await _submit(world, view, _form_values(segment_id, _rich_text(GREETING), test_first=True))
    confirmation = await _confirmation(world, view["id"])

    audience = await _audience(world, segment_id)
    sample = min(audience.targets, key=lambda target: (target.channel_name, target.channel_id))
    company = _company_record(world, _first_company_id(sample))
    test_dm = world.slack.dm_messages(ADMIN_ID)
    assert len(test_dm) == 1
    assert (
        test_dm[0]["text"]
        == f"Hi {escape_mrkdwn(company['name'])}, ARR {_arr_text(company['arr'])}"
    )
    assert f"As <#{sample.channel_id}> will see it" in json.dumps(test_dm[0]["blocks"])
    assert views.TEST_SENT in _view_text(confirmation)
    assert _channel_posts(world) == {}


async def test_value_lost_before_confirm_blocks_the_send(world: World) -> None:
    segment_id = await _save_segment(world, "Tiny", "ARR greater than 200000")
    view = await _open_with_shortcut(world)
    await _submit(world, view, _form_values(segment_id, _rich_text("Renews {{renewal_date}}.")))
    confirmation = await _confirmation(world, view["id"])
    audience = await _audience(world, segment_id)
    cleared = _company_record(world, _first_company_id(audience.targets[0]))
    cleared["renewalDate"] = None

    await _submit(world, confirmation, {})
    text = await eventually(lambda: _last_dm_containing(world, "Not sent"), timeout=SLOW_TIMEOUT)

    assert "1 company has no value for `{{renewal_date}}`" in text
    assert escape_mrkdwn(cleared["name"]) in text
    assert "Some channels may already have" not in text
    assert _channel_posts(world) == {}
