"""Message personalization: parsing variables, reading company values, rendering text and blocks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from handlers.views.send import (
    MESSAGE_BLOCK,
    SendForm,
    mrkdwn_to_rich_text,
    preview_note,
    rich_text_to_mrkdwn,
    send_form_errors,
)
from planhat.models import Company, CustomFieldDefinition
from segments.evaluate import EvaluationContext
from segments.personalize import (
    MAX_LISTED_COMPANIES,
    MessageRenderer,
    Placeholder,
    TemplateError,
    capture_variables,
    check_template_syntax,
    find_missing_values,
    join_split_variables,
    parse_template,
    renderer_for,
    sample_company,
    template_fields,
)
from segments.ports import DeliveryRecord, DeliveryStatus, DeliveryTarget, QualifyingCompany
from segments.properties import PropertyCatalog

TODAY = date(2026, 12, 4)
CONTEXT = EvaluationContext(today=TODAY, timezone=ZoneInfo("UTC"))


@pytest.fixture
def catalog() -> PropertyCatalog:
    definitions = [
        CustomFieldDefinition(id="1", name="Seats Purchased", type="number", parent="company"),
        CustomFieldDefinition(
            id="2", name="Executive Sponsor", type="team member", parent="company"
        ),
        CustomFieldDefinition(id="3", name="Modules", type="multipicklist", parent="company"),
        CustomFieldDefinition(id="4", name="Contract Signed", type="date", parent="company"),
    ]
    return PropertyCatalog.builtin().with_custom_fields(definitions)


def _company(name: str = "Acme Corp", **fields: Any) -> Company:
    return Company(id=f"id-{name}", name=name, fields=fields)


def _qualifying(
    name: str, variables: dict[str, str], company_id: str | None = None
) -> QualifyingCompany:
    return QualifyingCompany(
        company_id=company_id or f"id-{name}", company_name=name, variables=variables
    )


def _target(channel: str, *companies: QualifyingCompany) -> DeliveryTarget:
    return DeliveryTarget(
        channel_id=f"C{channel.upper()}",
        channel_name=channel,
        is_private=False,
        companies=companies,
    )


def _rich_text(*elements: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": list(elements)}],
    }


def _delivery(*companies: QualifyingCompany) -> DeliveryRecord:
    return DeliveryRecord(
        id=7,
        broadcast_id=3,
        channel_id="CACME",
        channel_name="customer-acme",
        status=DeliveryStatus.PENDING,
        attempts=0,
        ts=None,
        error=None,
        reason=None,
        companies=companies,
    )


def _render(
    text: str, company: Company, catalog: PropertyCatalog, context: EvaluationContext = CONTEXT
) -> str:
    template = parse_template(text, catalog)
    return template.render(capture_variables(company, template, catalog, context))


# Parsing


def test_parse_splits_text_and_placeholders(catalog: PropertyCatalog) -> None:
    template = parse_template(
        'Hi {{company.name}}, renewal {{renewal_date | default: "soon"}}.', catalog
    )

    assert template.parts == (
        "Hi ",
        Placeholder(name="company.name"),
        ", renewal ",
        Placeholder(name="renewal_date", fallback="soon"),
        ".",
    )
    assert template.variables == ("company.name", "renewal_date")


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("{{company.name}}", "company.name"),
        ("{{ Company.Name }}", "company.name"),
        ("{{HEALTH_SCORE}}", "health_score"),
        ("{{lifecycle_stage}}", "lifecycle_stage"),
        ("{{ renewal_date }}", "renewal_date"),
        ("{{Days_Until_Renewal}}", "days_until_renewal"),
        ("{{arr}}", "arr"),
        ("{{custom.Seats Purchased}}", "custom.Seats Purchased"),
        ("{{ custom.seats  purchased }}", "custom.Seats Purchased"),
        ("{{CUSTOM.Executive Sponsor}}", "custom.Executive Sponsor"),
    ],
)
def test_variable_names_ignore_case_and_spaces(
    catalog: PropertyCatalog, written: str, canonical: str
) -> None:
    template = parse_template(written, catalog)

    assert template.variables == (canonical,)


def test_variables_are_listed_once_in_order(catalog: PropertyCatalog) -> None:
    template = parse_template("{{arr}} {{company.name}} {{ARR}} {{company.name}}", catalog)

    assert template.variables == ("arr", "company.name")


def test_closing_braces_without_opening_stay_text(catalog: PropertyCatalog) -> None:
    template = parse_template("Scores }} and {{arr}}", catalog)

    assert template.render({"arr": "1"}) == "Scores }} and 1"


@pytest.mark.parametrize(
    ("written", "suggestion"),
    [
        ("{{helth_score}}", "health_score"),
        ("{{Health Score}}", "health_score"),
        ("{{renewl}}", "renewal_date"),
        ("{{name}}", "company.name"),
        ("{{company}}", "company.name"),
        ("{{Seats Purchased}}", "custom.Seats Purchased"),
        ("{{custom.Seets}}", "custom.Seats Purchased"),
        ("{{custom.seats purchase}}", "custom.Seats Purchased"),
    ],
)
def test_unknown_variable_suggests_closest(
    catalog: PropertyCatalog, written: str, suggestion: str
) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template(f"Hello {written}", catalog)

    assert raised.value.suggestion == suggestion
    assert f"Did you mean {{{{{suggestion}}}}}?" in str(raised.value)


def test_unknown_variable_without_close_match_lists_variables(catalog: PropertyCatalog) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template("{{zebra}}", catalog)

    assert raised.value.suggestion is None
    assert raised.value.variable == "zebra"
    assert 'Unknown variable "{{zebra}}"' in str(raised.value)
    assert "{{custom.FIELD NAME}}" in str(raised.value)


def test_unknown_custom_field_names_the_field(catalog: PropertyCatalog) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template("{{custom.Zebra Count}}", catalog)

    assert 'No Planhat custom field is named "Zebra Count"' in str(raised.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Hi {{company.name", 'The variable starting "{{company.name" has no closing "}}"'),
        (
            "Hi {{company.name {{arr}}",
            'The variable starting "{{company.name {{arr}}" has no closing',
        ),
        ("Hi {{ }}", '"{{}}" names no variable'),
        ("{{arr | upper}}", '"{{arr | upper}}" uses an unknown filter'),
        (
            "{{arr | default: none}}",
            'The fallback in "{{arr | default: none}}" must be in double quotes',
        ),
        ('{{arr | default: "none}}', "must be in double quotes"),
    ],
)
def test_bad_syntax_is_explained(catalog: PropertyCatalog, text: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as raised:
        parse_template(text, catalog)

    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    "written",
    [
        '{{renewal_date | default: "soon"}}',
        "{{renewal_date|default:“soon”}}",
        "{{renewal_date | DEFAULT: 'soon'}}",
    ],
)
def test_fallback_accepts_straight_and_curly_quotes(catalog: PropertyCatalog, written: str) -> None:
    template = parse_template(written, catalog)

    assert template.parts == (Placeholder(name="renewal_date", fallback="soon"),)


def test_syntax_check_defers_custom_fields_to_catalog() -> None:
    check_template_syntax("{{custom.Any Field}} {{company.name}}")

    with pytest.raises(TemplateError):
        check_template_syntax("{{helth_score}}")
    with pytest.raises(TemplateError):
        check_template_syntax("{{company.name")


# Reading and formatting values


def test_every_variable_reads_its_value(catalog: PropertyCatalog) -> None:
    company = _company(
        "Acme Corp",
        h=7,
        phase="Renewal",
        renewalDate="2027-01-15T00:00:00.000Z",
        arr=62000,
        custom={"Seats Purchased": 1250, "Executive Sponsor": "Dev Patel"},
    )
    text = (
        "{{company.name}}|{{health_score}}|{{lifecycle_stage}}|{{renewal_date}}|"
        "{{days_until_renewal}}|{{arr}}|{{custom.Seats Purchased}}|{{custom.Executive Sponsor}}"
    )

    rendered = _render(text, company, catalog)

    assert rendered == "Acme Corp|7|Renewal|2027-01-15|42|62,000|1,250|Dev Patel"


def test_numbers_and_dates_are_formatted(catalog: PropertyCatalog) -> None:
    renewal_ms = int(datetime(2027, 3, 1, tzinfo=UTC).timestamp() * 1000)
    company = _company(
        h=" 4.5 ",
        arr="1,234,567.5",
        renewalDate=renewal_ms,
        custom={"Contract Signed": "2025-06-30", "Modules": ["API", "SSO"]},
    )

    rendered = _render(
        "{{health_score}} {{arr}} {{renewal_date}} {{custom.Contract Signed}} {{custom.Modules}}",
        company,
        catalog,
    )

    assert rendered == "4.5 1,234,567.5 2027-03-01 2025-06-30 API, SSO"


def test_days_until_renewal_is_negative_for_past_renewals(catalog: PropertyCatalog) -> None:
    past = _company(renewalDate="2026-11-30T00:00:00.000Z")
    today = _company(renewalDate="2026-12-04")

    assert _render("{{days_until_renewal}}", past, catalog) == "-4"
    assert _render("{{days_until_renewal}}", today, catalog) == "0"


def test_days_until_renewal_counts_from_the_context_day(catalog: PropertyCatalog) -> None:
    company = _company(renewalDate="2026-12-10T00:00:00.000Z")
    later = EvaluationContext(today=date(2026, 12, 8), timezone=ZoneInfo("Europe/Stockholm"))

    assert _render("{{days_until_renewal}}", company, catalog, later) == "2"


def test_empty_values_are_left_out(catalog: PropertyCatalog) -> None:
    company = Company(
        id="c1",
        name="  ",
        fields={
            "h": None,
            "arr": "undefined",
            "phase": "",
            "renewalDate": "not a date",
            "custom": {},
        },
    )
    template = parse_template(
        "{{company.name}}{{health_score}}{{arr}}{{lifecycle_stage}}{{renewal_date}}{{days_until_renewal}}"
        "{{custom.Seats Purchased}}",
        catalog,
    )

    variables = capture_variables(company, template, catalog, CONTEXT)

    assert variables == {}


def test_long_text_values_are_not_cut(catalog: PropertyCatalog) -> None:
    name = "The International Association of Independent Regional Healthcare Providers and Allied Professionals"
    company = _company(name, custom={"Executive Sponsor": "x" * 120})

    rendered = _render("{{company.name}} {{custom.Executive Sponsor}}", company, catalog)

    assert rendered == f"{name} {'x' * 120}"


def test_template_fields_name_the_planhat_fields(catalog: PropertyCatalog) -> None:
    template = parse_template(
        "{{company.name}} {{days_until_renewal}} {{health_score}} {{custom.Modules}}", catalog
    )

    assert template_fields(template, catalog) == ["renewalDate", "h", "custom.Modules"]


# Fallbacks and missing values


def test_fallback_replaces_an_empty_value(catalog: PropertyCatalog) -> None:
    template = parse_template('Renews {{renewal_date | default: "soon"}}', catalog)

    assert template.render({}) == "Renews soon"
    assert template.render({"renewal_date": "2027-01-15"}) == "Renews 2027-01-15"
    assert template.missing({}) == []


def test_fallback_is_not_escaped(catalog: PropertyCatalog) -> None:
    # The fallback is part of the sender's mrkdwn, which is already escaped where it must be.
    template = parse_template('{{arr | default: "*ask* &amp; <@U777>"}}', catalog)

    assert template.render({}) == "*ask* &amp; <@U777>"


def test_missing_lists_variables_without_fallback(catalog: PropertyCatalog) -> None:
    template = parse_template(
        '{{company.name}} {{arr}} {{renewal_date | default: "soon"}} {{arr}}', catalog
    )

    assert template.missing({"company.name": "Acme"}) == ["arr"]
    assert template.missing({}) == ["company.name", "arr"]


def test_missing_values_list_the_companies(catalog: PropertyCatalog) -> None:
    template = parse_template("Renews {{renewal_date}}", catalog)
    targets = [
        _target("a", _qualifying("Globex", {})),
        _target("b", _qualifying("Initech", {"renewal_date": "2027-01-01"})),
        _target("c", _qualifying("<!channel> Alerts & Co", {})),
    ]

    missing = find_missing_values(targets, template)

    assert missing is not None
    assert missing.variables == ("renewal_date",)
    assert missing.company_names == ("<!channel> Alerts & Co", "Globex")
    sentence = missing.describe()
    assert "2 companies have no value for `{{renewal_date}}`" in sentence
    assert "&lt;!channel&gt; Alerts &amp; Co, Globex." in sentence
    assert "<!channel>" not in sentence
    assert 'Add a fallback such as `{{renewal_date | default: "…"}}`' in sentence


def test_missing_values_name_first_20_and_count(catalog: PropertyCatalog) -> None:
    template = parse_template("{{arr}}", catalog)
    targets = [_target(f"c{index}", _qualifying(f"Company {index:02d}", {})) for index in range(25)]

    missing = find_missing_values(targets, template)

    assert missing is not None
    sentence = missing.describe()
    assert f"Company {MAX_LISTED_COMPANIES - 1:02d}, and 5 more." in sentence
    assert f"Company {MAX_LISTED_COMPANIES:02d}" not in sentence
    assert "25 companies have" in sentence


def test_missing_values_ignore_companies_not_rendered(catalog: PropertyCatalog) -> None:
    # Only the first company by name shows in a shared channel's message.
    template = parse_template("{{arr}}", catalog)
    shared = _target("shared", _qualifying("Zeta", {}), _qualifying("Alpha", {"arr": "10"}))

    assert find_missing_values([shared], template) is None


# Several companies on one channel


def test_shared_channel_uses_first_company_by_name() -> None:
    companies = [
        _qualifying("beta Labs", {"company.name": "beta Labs"}),
        _qualifying("", {}),
        _qualifying("Alpha", {"company.name": "Alpha"}, company_id="z"),
        _qualifying("alpha", {"company.name": "alpha"}, company_id="a"),
    ]

    chosen = sample_company(companies)

    assert chosen is not None
    assert chosen.company_id == "a"


def test_renderer_renders_shared_channel_with_first_company(catalog: PropertyCatalog) -> None:
    render = renderer_for(
        "Hi {{company.name}}",
        [_rich_text({"type": "text", "text": "Hi {{company.name}}"})],
        catalog,
    )
    delivery = _delivery(
        _qualifying("Zeta Foods", {"company.name": "Zeta Foods"}),
        _qualifying("Acme Corp", {"company.name": "Acme Corp"}),
    )

    rendered = render(delivery)

    assert rendered.text == "Hi Acme Corp"
    assert rendered.blocks == [_rich_text({"type": "text", "text": "Hi Acme Corp"})]


# Escaping CRM text


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("<!channel> Alerts Inc", "&lt;!channel&gt; Alerts Inc"),
        ("Team <@U123> Corp", "Team &lt;@U123&gt; Corp"),
        ("Smith & Sons", "Smith &amp; Sons"),
        ("<https://evil.example|Click>", "&lt;https://evil.example|Click&gt;"),
    ],
)
def test_crm_text_cannot_mention_anyone(catalog: PropertyCatalog, name: str, escaped: str) -> None:
    render = renderer_for(
        "Hello {{company.name}}",
        [_rich_text({"type": "text", "text": "Hello {{company.name}}"})],
        catalog,
    )

    rendered = render(_delivery(_qualifying(name, {"company.name": name})))

    assert rendered.text == f"Hello {escaped}"
    # Slack shows a rich text `text` element literally, so the block keeps the name as it is.
    assert rendered.blocks == [_rich_text({"type": "text", "text": f"Hello {name}"})]
    assert rendered.blocks is not None
    inline = rendered.blocks[0]["elements"][0]["elements"]
    assert [element["type"] for element in inline] == ["text"]


def test_values_are_not_read_as_variables(catalog: PropertyCatalog) -> None:
    template = parse_template("{{company.name}} {{arr}}", catalog)

    rendered = template.render({"company.name": "{{arr}}", "arr": "5"})

    assert rendered == "{{arr}} 5"


# Rich text


def test_renderer_fills_text_in_lists_quotes_and_links(catalog: PropertyCatalog) -> None:
    block: dict[str, Any] = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Dear {{company.name}}", "style": {"bold": True}},
                    {"type": "user", "user_id": "U0CSM"},
                    {
                        "type": "link",
                        "url": "https://example.com",
                        "text": "plan for {{company.name}}",
                    },
                ],
            },
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": "ARR {{arr}}"}]},
            {
                "type": "rich_text_list",
                "style": "bullet",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [{"type": "text", "text": "{{health_score}}"}],
                    }
                ],
            },
        ],
    }
    renderer = MessageRenderer(
        message_text=rich_text_to_mrkdwn(block), message_blocks=[block], catalog=catalog
    )

    rendered = renderer.render({"company.name": "Acme", "arr": "62,000", "health_score": "7"})

    assert rendered.blocks is not None
    elements = rendered.blocks[0]["elements"]
    assert elements[0]["elements"][0] == {
        "type": "text",
        "text": "Dear Acme",
        "style": {"bold": True},
    }
    assert elements[0]["elements"][1] == {"type": "user", "user_id": "U0CSM"}
    assert elements[0]["elements"][2]["text"] == "plan for Acme"
    assert elements[1]["elements"][0]["text"] == "ARR 62,000"
    assert elements[2]["elements"][0]["elements"][0]["text"] == "7"
    assert (
        rendered.text == "*Dear Acme*<@U0CSM><https://example.com|plan for Acme>\n> ARR 62,000\n• 7"
    )
    assert block["elements"][0]["elements"][0]["text"] == "Dear {{company.name}}"


def test_renderer_without_variables_returns_message_unchanged(catalog: PropertyCatalog) -> None:
    block = _rich_text({"type": "text", "text": "Office hours moved"})
    render = renderer_for("Office hours moved", [block], catalog)

    rendered = render(_delivery())

    assert rendered.text == "Office hours moved"
    assert rendered.blocks == [block]


def test_renderer_rejects_renamed_custom_field(catalog: PropertyCatalog) -> None:
    with pytest.raises(TemplateError):
        renderer_for("{{custom.Seats Bought}}", None, catalog)


def test_renderer_without_stored_companies_uses_fallbacks(catalog: PropertyCatalog) -> None:
    render = renderer_for('Hi {{company.name | default: "there"}}', None, catalog)

    rendered = render(_delivery())

    assert rendered.text == "Hi there"
    assert rendered.blocks is None


def test_join_split_variables_merges_style_changes() -> None:
    block = _rich_text(
        {"type": "text", "text": "Hi {{company", "style": {"bold": True}},
        {"type": "text", "text": ".name}} and "},
        {"type": "emoji", "name": "wave"},
    )

    joined = join_split_variables(block)

    assert joined["elements"][0]["elements"] == [
        {"type": "text", "text": "Hi {{company.name}}", "style": {"bold": True}},
        {"type": "text", "text": " and "},
        {"type": "emoji", "name": "wave"},
    ]
    assert block["elements"][0]["elements"][0]["text"] == "Hi {{company"


def test_join_split_variables_unlinks_automatic_links() -> None:
    block = _rich_text(
        {"type": "text", "text": "Hi {{"},
        {"type": "link", "url": "http://company.name"},
        {"type": "text", "text": "}}!"},
    )

    joined = join_split_variables(block)

    assert joined["elements"][0]["elements"] == [
        {"type": "text", "text": "Hi {{company.name}}"},
        {"type": "text", "text": "!"},
    ]


def test_join_split_variables_handles_several_variables() -> None:
    block = _rich_text(
        {"type": "text", "text": "{{arr", "style": {"italic": True}},
        {"type": "text", "text": "}} and {{health"},
        {"type": "text", "text": "_score}} end", "style": {"bold": True}},
    )

    joined = join_split_variables(block)

    assert joined["elements"][0]["elements"] == [
        {"type": "text", "text": "{{arr}}", "style": {"italic": True}},
        {"type": "text", "text": " and {{health_score}}"},
        {"type": "text", "text": " end", "style": {"bold": True}},
    ]


def test_join_split_variables_stops_at_mentions() -> None:
    elements = [{"type": "text", "text": "Hi {{company"}, {"type": "user", "user_id": "U1"}]

    joined = join_split_variables(_rich_text(*elements))

    assert joined["elements"][0]["elements"] == elements


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{company.name}}",
        '*{{company.name}}* renews {{renewal_date | default: "soon"}} in {{days_until_renewal}} days',
        "{{custom._beta_ flag_}} and {{custom.Seats*Purchased*}} :wave:",
        "> {{health_score}}\n• {{arr}}",
        '{{renewal_date | default: "Q1 &amp; Q2"}}',
    ],
)
def test_rich_text_round_trip_keeps_variables(text: str) -> None:
    block = mrkdwn_to_rich_text(text)

    back = rich_text_to_mrkdwn(block)

    assert back == text


def test_rich_text_keeps_variable_as_one_text_element() -> None:
    block = mrkdwn_to_rich_text("{{custom._beta_}}")

    assert block["elements"][0]["elements"] == [{"type": "text", "text": "{{custom._beta_}}"}]


def test_rich_text_to_mrkdwn_keeps_typed_variables(catalog: PropertyCatalog) -> None:
    block = _rich_text(
        {"type": "text", "text": "Hello "},
        {"type": "text", "text": "{{company.name}}", "style": {"bold": True}},
        {"type": "text", "text": ', renews {{renewal_date | default: "soon & later"}}'},
    )

    text = rich_text_to_mrkdwn(block)
    template = parse_template(text, catalog)

    assert text == 'Hello *{{company.name}}*, renews {{renewal_date | default: "soon &amp; later"}}'
    assert template.render({}) == "Hello **, renews soon &amp; later"


# The send modal's use of templates


def test_send_form_reports_template_error() -> None:
    form = SendForm(
        segment_id=1, message=_rich_text({"type": "text", "text": "x"}), test_first=False
    )

    errors = send_form_errors(form, message_text="Hi {{helth_score}}")

    assert errors == {
        MESSAGE_BLOCK: 'Unknown variable "{{helth_score}}". Did you mean {{health_score}}?'
    }


def test_preview_note_names_channel_company_and_shared_count() -> None:
    shared = _target("shared", _qualifying("Zeta", {}), _qualifying("<!here> Ventures", {}))
    single = _target("single", _qualifying("Acme", {}))

    note = preview_note(target=shared, company_name="<!here> Ventures", targets=[shared, single])

    assert note.startswith("As <#CSHARED> will see it, with the values of &lt;!here&gt; Ventures.")
    assert "1 channel has more than one company" in note
