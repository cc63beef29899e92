"""Values the Planhat adapter returns: companies, custom field definitions and fetch results.

The adapter keeps each company's fields as Planhat sent them (after tolerant clean-up of the id and
name), so the segment engine owns every decision about how a value is read as a number, a date or
a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Company:
    """One Planhat company: its `_id`, display name and the selected raw fields."""

    id: str
    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def get(self, path: str) -> Any:
        """Return the raw value at `path` (`h`, `custom.Seats Purchased`), or None when absent.

        A path starting with `custom.` reads one key of the `custom` object, and the key after the
        prefix may itself contain dots or spaces, because custom fields are keyed by display name.
        """
        if path.startswith("custom."):
            custom = self.fields.get("custom")
            if not isinstance(custom, Mapping):
                return None
            return custom.get(path.removeprefix("custom."))
        return self.fields.get(path)


@dataclass(frozen=True)
class CustomFieldDefinition:
    """One entry of `GET /customfields`: the field's display name, Planhat type and owning model."""

    id: str
    name: str
    type: str
    parent: str
    list_values: tuple[str, ...] = ()

    @property
    def is_company_field(self) -> bool:
        # The exact spelling of `parent` for companies is not documented, so compare loosely.
        return self.parent.strip().lower() in {"company", "companies"}


@dataclass(frozen=True)
class CompanySnapshot:
    """A complete company list from one fetch, with when it was taken and how many calls it cost."""

    companies: tuple[Company, ...]
    fetched_at: datetime
    calls: int
