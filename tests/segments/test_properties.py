"""Tests for the property catalog: built-ins, custom field typing, lookup and suggestions."""

from __future__ import annotations

import pytest

from planhat.models import CustomFieldDefinition
from segments.properties import PropertyCatalog, ValueType
from segments.rules import UnknownPropertyError


def _field(name: str, type_: str = "text", parent: str = "company") -> CustomFieldDefinition:
    return CustomFieldDefinition(id=f"id-{name}", name=name, type=type_, parent=parent)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Health Score", "health_score"),
        ("health score", "health_score"),
        ("  HEALTH SCORE  ", "health_score"),
        ("health_score", "health_score"),
        ("Lifecycle Stage", "lifecycle_stage"),
        ("phase", "lifecycle_stage"),
        ("Renewal Date", "renewal_date"),
        ("renewalDate", "renewal_date"),
        ("renewaldate", "renewal_date"),
        ("arr", "arr"),
        ("MRR", "mrr"),
        ("Status", "status"),
        ("name", "name"),
        ("tags", "tags"),
        ("CSM Score", "csm_score"),
    ],
)
def test_lookup_builtin_by_label_key_or_alias(name: str, key: str) -> None:
    catalog = PropertyCatalog.builtin()

    prop = catalog.lookup(name)

    assert prop is not None
    assert prop.key == key


def test_builtin_health_score_fields() -> None:
    prop = PropertyCatalog.builtin().get("health_score")

    assert prop.label == "Health Score"
    assert prop.type is ValueType.NUMBER
    assert prop.source == "h"
    assert prop.planhat_field == "h"
    assert prop.value_range == (0, 10)
    assert not prop.is_custom


@pytest.mark.parametrize(
    ("planhat_type", "value_type"),
    [
        ("number", ValueType.NUMBER),
        ("rating", ValueType.NUMBER),
        ("text", ValueType.TEXT),
        ("rich text", ValueType.TEXT),
        ("phone", ValueType.TEXT),
        ("email", ValueType.TEXT),
        ("url", ValueType.TEXT),
        ("team member", ValueType.TEXT),
        ("enduser", ValueType.TEXT),
        ("list", ValueType.TEXT),
        ("date", ValueType.DATE),
        ("day", ValueType.DATE),
        ("checkbox", ValueType.CHECKBOX),
        ("multipicklist", ValueType.LIST),
        ("team members", ValueType.LIST),
        ("endusers", ValueType.LIST),
        ("Multipicklist", ValueType.LIST),
        ("something new", ValueType.TEXT),
    ],
)
def test_custom_field_types_map_to_value_types(planhat_type: str, value_type: ValueType) -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields([_field("Field", planhat_type)])

    prop = catalog.get("custom.Field")

    assert prop.type is value_type


def test_custom_property_reads_from_custom_object() -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields([_field("Seats Purchased", "number")])

    prop = catalog.lookup("seats purchased")

    assert prop is not None
    assert prop.key == "custom.Seats Purchased"
    assert prop.label == "Seats Purchased"
    assert prop.source == "custom.Seats Purchased"
    assert prop.planhat_field == "custom"
    assert prop.is_custom


def test_with_custom_fields_keeps_only_company_fields() -> None:
    fields = [
        _field("Plan", parent="Company"),
        _field("Role", parent="Enduser"),
        _field("   ", parent="company"),
        _field("Plan", "number", parent="company"),
    ]

    catalog = PropertyCatalog.builtin().with_custom_fields(fields)

    custom = [prop for prop in catalog.properties() if prop.is_custom]
    assert [prop.label for prop in custom] == ["Plan"]
    assert custom[0].type is ValueType.TEXT


def test_with_custom_fields_replaces_earlier_custom_fields() -> None:
    first = PropertyCatalog.builtin().with_custom_fields([_field("Old")])

    second = first.with_custom_fields([_field("New")])

    assert second.lookup("Old") is None
    assert second.lookup("New") is not None


def test_custom_field_named_like_builtin_needs_prefix() -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields([_field("Health Score", "number")])

    plain = catalog.lookup("Health Score")
    prefixed = catalog.lookup("custom.Health Score")

    assert plain is not None and plain.key == "health_score"
    assert prefixed is not None and prefixed.key == "custom.Health Score"


def test_custom_prefix_never_finds_builtin() -> None:
    catalog = PropertyCatalog.builtin()

    assert catalog.lookup("custom.Health Score") is None


def test_custom_lookup_prefers_exact_case() -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields([_field("plan"), _field("Plan")])

    lower = catalog.lookup("plan")
    upper = catalog.lookup("Plan")
    other = catalog.lookup("PLAN")

    assert lower is not None and lower.key == "custom.plan"
    assert upper is not None and upper.key == "custom.Plan"
    assert other is not None


def test_get_unknown_key_raises_with_suggestion() -> None:
    catalog = PropertyCatalog.builtin()

    with pytest.raises(UnknownPropertyError) as caught:
        catalog.get("helth_score")

    assert caught.value.suggestion == "Health Score"
    assert '"helth_score"' in str(caught.value)


def test_properties_lists_builtins_then_custom_by_label() -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields(
        [_field("zeta"), _field("Alpha"), _field("beta")]
    )

    labels = [prop.label for prop in catalog.properties()]

    builtin_count = len(PropertyCatalog.builtin().properties())
    assert labels[0] == "Health Score"
    assert labels[builtin_count:] == ["Alpha", "beta", "zeta"]


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("Helth Score", "Health Score"),
        ("lifecycle stag", "Lifecycle Stage"),
        ("Renewl Date", "Renewal Date"),
        ("Seats Purchase", "Seats Purchased"),
        ("zzzzzzzz", None),
    ],
)
def test_suggest_returns_closest_label(typed: str, suggestion: str | None) -> None:
    catalog = PropertyCatalog.builtin().with_custom_fields([_field("Seats Purchased", "number")])

    assert catalog.suggest(typed) == suggestion
