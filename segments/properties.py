"""The catalog of company properties that segment rules can filter on.

A property pairs a display label and a canonical key with a value type and the raw path that reads
it from a `Company`. The built-in list covers well-known Planhat company fields, and custom fields
are added from `GET /customfields` definitions, so the rest of the rule engine never needs to know
Planhat field names.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from planhat.models import CustomFieldDefinition

logger = logging.getLogger(__name__)

CUSTOM_PREFIX = "custom."


class ValueType(StrEnum):
    NUMBER = "number"
    TEXT = "text"
    DATE = "date"
    CHECKBOX = "checkbox"
    LIST = "list"


@dataclass(frozen=True)
class Property:
    """A company property: canonical key, display label, value type and raw source path."""

    key: str
    label: str
    type: ValueType
    source: str
    aliases: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    is_custom: bool = False

    @property
    def planhat_field(self) -> str:
        """The top-level Planhat field to request with `select`, `custom` for custom fields."""
        return self.source.split(".", 1)[0]


_BUILTIN_PROPERTIES: tuple[Property, ...] = (
    # Planhat health is 0-10 with 5 as neutral, clamped to that range.
    Property("health_score", "Health Score", ValueType.NUMBER, "h", ("health",), (0, 10)),
    Property(
        "lifecycle_stage", "Lifecycle Stage", ValueType.TEXT, "phase", ("phase", "lifecycle phase")
    ),
    Property("renewal_date", "Renewal Date", ValueType.DATE, "renewalDate", ("renewalDate",)),
    Property("arr", "ARR", ValueType.NUMBER, "arr"),
    Property("mrr", "MRR", ValueType.NUMBER, "mrr"),
    Property("status", "Status", ValueType.TEXT, "status", ("customer status",)),
    Property("name", "Name", ValueType.TEXT, "name", ("company name",)),
    Property("tags", "Tags", ValueType.LIST, "tags", ("tag",)),
    # The manual CSM rating is 1-5 in Planhat.
    Property("csm_score", "CSM Score", ValueType.NUMBER, "csmScore", ("csmScore",), (1, 5)),
    Property("country", "Country", ValueType.TEXT, "country"),
    Property("customer_since", "Customer Since", ValueType.DATE, "customerFrom", ("customerFrom",)),
    Property("last_touch", "Last Touch", ValueType.DATE, "lastTouch", ("lastTouch",)),
)

# Planhat custom field types (`GET /customfields`, field `type`) and how rules compare them.
# `list` is Planhat's single-choice dropdown, so one value is compared as text.
_CUSTOM_FIELD_TYPES: dict[str, ValueType] = {
    "number": ValueType.NUMBER,
    "rating": ValueType.NUMBER,
    "text": ValueType.TEXT,
    "rich text": ValueType.TEXT,
    "phone": ValueType.TEXT,
    "email": ValueType.TEXT,
    "url": ValueType.TEXT,
    "team member": ValueType.TEXT,
    "enduser": ValueType.TEXT,
    "list": ValueType.TEXT,
    "date": ValueType.DATE,
    "day": ValueType.DATE,
    "checkbox": ValueType.CHECKBOX,
    "multipicklist": ValueType.LIST,
    "team members": ValueType.LIST,
    "endusers": ValueType.LIST,
}


def custom_field_type(planhat_type: str) -> ValueType:
    """Map a Planhat custom field type to a value type, reading unknown types as text."""
    return _CUSTOM_FIELD_TYPES.get(planhat_type.strip().lower(), ValueType.TEXT)


def _fold(name: str) -> str:
    return name.strip().casefold()


class PropertyCatalog:
    """The properties rules may use: the built-ins, then the company custom fields.

    Lookups by name ignore case and surrounding spaces. A built-in always wins over a custom field
    of the same name, and such a custom field is reached as `custom.NAME`.
    """

    def __init__(self, builtins: Iterable[Property], custom: Iterable[Property] = ()) -> None:
        self._builtins = tuple(builtins)
        self._custom = tuple(sorted(custom, key=lambda prop: (prop.label.casefold(), prop.label)))
        self._by_key = {prop.key: prop for prop in (*self._builtins, *self._custom)}

        self._builtin_names: dict[str, Property] = {}
        for prop in self._builtins:
            for name in (prop.label, prop.key, *prop.aliases):
                self._builtin_names.setdefault(_fold(name), prop)

        # Exact names come first so two custom fields that differ only in case stay reachable.
        self._custom_exact = {prop.label: prop for prop in self._custom}
        self._custom_folded: dict[str, Property] = {}
        for prop in self._custom:
            self._custom_folded.setdefault(_fold(prop.label), prop)

    @classmethod
    def builtin(cls) -> PropertyCatalog:
        """Build a catalog of the built-in Planhat company properties only."""
        return cls(_BUILTIN_PROPERTIES)

    def with_custom_fields(self, definitions: Iterable[CustomFieldDefinition]) -> PropertyCatalog:
        """Return a copy whose custom properties are the company fields among `definitions`.

        Any custom properties of this catalog are replaced. Definitions of other models (end
        users, projects) and blank names are skipped. When two definitions have the same name,
        the first is kept.
        """
        custom: dict[str, Property] = {}
        for definition in definitions:
            if not definition.is_company_field:
                continue
            label = definition.name.strip()
            if not label:
                logger.warning("Skipping custom field %s with a blank name", definition.id)
                continue
            if label in custom:
                logger.warning("Skipping custom field %s: duplicate name %r", definition.id, label)
                continue
            custom[label] = Property(
                key=CUSTOM_PREFIX + definition.name,
                label=label,
                type=custom_field_type(definition.type),
                source=CUSTOM_PREFIX + definition.name,
                is_custom=True,
            )
        return PropertyCatalog(self._builtins, custom.values())

    def lookup(self, name: str) -> Property | None:
        """Find a property by label, key or alias, ignoring case and surrounding spaces.

        A name starting with `custom.` only matches custom fields, by the name after the prefix.
        """
        stripped = name.strip()
        if stripped.casefold().startswith(CUSTOM_PREFIX):
            return self._lookup_custom(stripped[len(CUSTOM_PREFIX) :])
        builtin = self._builtin_names.get(stripped.casefold())
        if builtin is not None:
            return builtin
        return self._lookup_custom(stripped)

    def _lookup_custom(self, name: str) -> Property | None:
        exact = self._custom_exact.get(name) or self._custom_exact.get(name.strip())
        if exact is not None:
            return exact
        return self._custom_folded.get(_fold(name))

    def get(self, key: str) -> Property:
        """Return the property with canonical `key`, or raise UnknownPropertyError."""
        prop = self._by_key.get(key)
        if prop is not None:
            return prop
        # Imported here because segments.rules imports this module for ValueType.
        from segments.rules import UnknownPropertyError

        raise UnknownPropertyError.for_name(key, self.suggest(key.removeprefix(CUSTOM_PREFIX)))

    def properties(self) -> list[Property]:
        """List the built-in properties in their fixed order, then custom ones by label."""
        return [*self._builtins, *self._custom]

    def names(self) -> list[str]:
        """List every name `lookup` accepts without the `custom.` prefix, case-folded."""
        return [*self._builtin_names, *self._custom_folded]

    def suggest(self, name: str) -> str | None:
        """Return the label closest to `name` (difflib similarity), or None when none is close."""
        labels = {_fold(prop.label): prop.label for prop in self.properties()}
        for prop in self._builtins:
            for alias in (prop.key, *prop.aliases):
                labels.setdefault(_fold(alias), prop.label)
        matches = difflib.get_close_matches(_fold(name), list(labels), n=1, cutoff=0.6)
        return labels[matches[0]] if matches else None
