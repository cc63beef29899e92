"""Resolve a segment's audience: live Planhat companies, filtered by the rules, mapped to channels.

This is the one path every preview and every send takes, so what a person previews is computed the
same way as what is sent. Previews may use short-lived caches; sends always ask `fresh=True`.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from segments.channels import (
    ChannelDirectory,
    ChannelMapping,
    UnmappedKind,
    load_channel_directory,
    resolve_channels,
)
from segments.evaluate import EvaluationContext, build_matcher, rule_warnings
from segments.personalize import Template, capture_variables, template_fields
from segments.ports import CompanySource, DeliveryTarget, QualifyingCompany
from segments.properties import PropertyCatalog
from segments.rules import Operator, RuleNode, iter_conditions, rule_properties
from segments.text import format_rules, parse_rules
from segments.properties import ValueType
from segments.values import is_empty, read_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchedCompany:
    company_id: str
    company_name: str
    channel_id: str
    channel_name: str
    reasons: dict[str, str]


@dataclass(frozen=True)
class UnmappedCompany:
    company_id: str
    company_name: str
    reason: str
    kind: UnmappedKind


@dataclass(frozen=True)
class Audience:
    """Who a segment reaches right now: matched companies, their channels, and what is missing."""

    rules: RuleNode
    rules_text: str
    matched: Sequence[MatchedCompany]
    unmapped: Sequence[UnmappedCompany]
    targets: Sequence[DeliveryTarget]
    warnings: Sequence[str]
    company_count: int
    fetched_at: datetime
    planhat_calls: int

    @property
    def matching_company_count(self) -> int:
        """Return how many distinct companies the rules match, with or without a channel."""
        return len({row.company_id for row in self.matched} | {row.company_id for row in self.unmapped})

    @property
    def companies_without_channel(self) -> int:
        """Return how many matching companies reach no channel at all.

        A company whose channel field names two channels, one missing, is in both `matched` and
        `unmapped`; it still reaches a channel, so it is not counted here.
        """
        return len({row.company_id for row in self.unmapped} - {row.company_id for row in self.matched})

    def to_json(self) -> dict[str, Any]:
        """Return the documented JSON form: `matched`, `unmapped` and `warnings`."""
        return {
            "matched": [
                {
                    "company_id": row.company_id,
                    "company_name": row.company_name,
                    "channel_id": row.channel_id,
                    "channel_name": row.channel_name,
                    "reasons": row.reasons,
                }
                for row in self.matched
            ],
            "unmapped": [
                {"company_id": row.company_id, "company_name": row.company_name, "reason": row.reason}
                for row in self.unmapped
            ],
            "warnings": list(self.warnings),
        }


class AudienceResolver:
    """Parse rules against the CRM's properties and compute audiences from live data."""

    def __init__(
        self,
        *,
        source: CompanySource,
        slack: AsyncWebClient,
        mapping: ChannelMapping,
        timezone: str = "UTC",
        channel_cache_seconds: float = 300.0,
    ) -> None:
        self._source = source
        self._slack = slack
        self._mapping = mapping
        self._timezone = timezone
        self._channel_cache_seconds = channel_cache_seconds
        self._directory: ChannelDirectory | None = None
        self._directory_loaded_at = 0.0

    async def catalog(self) -> PropertyCatalog:
        """Return the built-in properties plus the CRM's custom company fields."""
        definitions = await self._source.fetch_custom_fields()
        return PropertyCatalog.builtin().with_custom_fields(definitions)

    async def parse(self, text: str) -> tuple[RuleNode, PropertyCatalog]:
        """Parse rule text; raise the rule errors of `segments.rules` on invalid input."""
        catalog = await self.catalog()
        return parse_rules(text, catalog), catalog

    async def resolve(
        self,
        rules: RuleNode,
        *,
        catalog: PropertyCatalog | None = None,
        fresh: bool = False,
        today: date | None = None,
        mapping: ChannelMapping | None = None,
        timezone: str | None = None,
        template: Template | None = None,
    ) -> Audience:
        """Compute the audience of `rules` now. `fresh=True` bypasses every cache (used by sends).

        `mapping` and `timezone` override the resolver's defaults, for a workspace's own settings.
        With a message `template` (parsed with the same catalog), each qualifying company of the
        targets carries the values of the template's variables.
        """
        started = time.perf_counter()
        mapping = mapping or self._mapping
        if catalog is None:
            catalog = await self.catalog()
        context = EvaluationContext.now(timezone or self._timezone)
        if today is not None:
            context = EvaluationContext(today=today, timezone=context.timezone)
        matcher = build_matcher(rules, catalog, context)

        fields = list(matcher.planhat_fields)
        fields.extend(mapping.planhat_fields())
        if template is not None:
            fields.extend(template_fields(template, catalog))
        snapshot = await self._source.fetch_companies(fields=fields, fresh=fresh)
        selected = [company for company in snapshot.companies if matcher.matches(company)]
        directory = await self._channel_directory(fresh=fresh)
        resolution = resolve_channels(selected, directory, mapping)

        values_by_company = {company.id: matcher.values(company) for company in selected}
        variables_by_company = {
            company.id: capture_variables(company, template, catalog, context) if template is not None else {}
            for company in selected
        }
        matched = [
            MatchedCompany(
                company_id=row.company.id,
                company_name=row.company.name,
                channel_id=row.channel.id,
                channel_name=row.channel.name,
                reasons=values_by_company[row.company.id],
            )
            for row in resolution.matched
        ]
        unmapped = [
            UnmappedCompany(
                company_id=row.company.id, company_name=row.company.name, reason=row.reason, kind=row.kind
            )
            for row in resolution.unmapped
        ]
        targets = [
            DeliveryTarget(
                channel_id=target.channel.id,
                channel_name=target.channel.name,
                is_private=target.channel.is_private,
                companies=[
                    QualifyingCompany(
                        company_id=company.id,
                        company_name=company.name,
                        values=values_by_company[company.id],
                        variables=variables_by_company[company.id],
                    )
                    for company in target.companies
                ],
            )
            for target in resolution.targets()
        ]
        warnings = [
            *rule_warnings(rules, catalog),
            *_missing_value_warnings(rules, catalog, snapshot.companies),
            *_unknown_text_value_warnings(rules, catalog, snapshot.companies),
            *_channel_field_warnings(mapping, snapshot.companies),
        ]
        logger.info(
            "Resolved audience: %d of %d companies matched, %d channels, %d unmapped, %.2fs",
            len(selected),
            len(snapshot.companies),
            len(targets),
            len(unmapped),
            time.perf_counter() - started,
        )
        return Audience(
            rules=rules,
            rules_text=format_rules(rules, catalog),
            matched=matched,
            unmapped=unmapped,
            targets=targets,
            warnings=warnings,
            company_count=len(snapshot.companies),
            fetched_at=snapshot.fetched_at,
            planhat_calls=snapshot.calls,
        )

    async def _channel_directory(self, *, fresh: bool) -> ChannelDirectory:
        # conversations.list is Tier 2 (about 20 calls a minute), so previews reuse a recent listing.
        age = time.monotonic() - self._directory_loaded_at
        if fresh or self._directory is None or age > self._channel_cache_seconds:
            self._directory = await load_channel_directory(self._slack)
            self._directory_loaded_at = time.monotonic()
        return self._directory


def _missing_value_warnings(rules: RuleNode, catalog: PropertyCatalog, companies: Sequence[Any]) -> list[str]:
    """Warn once per rule property that some companies have no value, since no rule can match them."""
    warnings = []
    for key in rule_properties(rules):
        prop = catalog.get(key)
        missing = Counter(is_empty(company.get(prop.source)) for company in companies)[True]
        if missing:
            noun = "company has" if missing == 1 else "companies have"
            warnings.append(
                f"{missing:,} {noun} no {prop.label} in Planhat; rules on {prop.label} "
                "other than \"is empty\" do not match them."
            )
    return warnings


# Text comparisons whose values must equal a company's value, so a value no company has is a typo.
_EXACT_TEXT_OPERATORS = frozenset({Operator.EQUALS, Operator.IN})


def _unknown_text_value_warnings(
    rules: RuleNode, catalog: PropertyCatalog, companies: Sequence[Any]
) -> list[str]:
    """Warn when an `equals` or `in` value matches no company's value, suggesting the closest one."""
    warnings: list[str] = []
    seen_by_key: dict[str, dict[str, str]] = {}
    for condition in iter_conditions(rules):
        prop = catalog.get(condition.property)
        if prop.type is not ValueType.TEXT or condition.operator not in _EXACT_TEXT_OPERATORS:
            continue
        if prop.key not in seen_by_key:
            seen: dict[str, str] = {}
            for company in companies:
                text = read_text(company.get(prop.source))
                if text:
                    seen.setdefault(text.casefold(), text)
            seen_by_key[prop.key] = seen
        seen = seen_by_key[prop.key]
        for value in condition.values:
            wanted = str(value).strip()
            if wanted.casefold() in seen:
                continue
            closest = difflib.get_close_matches(wanted.casefold(), list(seen), n=1)
            hint = f' Did you mean "{seen[closest[0]]}"?' if closest else ""
            warnings.append(f'No company in Planhat has {prop.label} "{wanted}".{hint}')
    return warnings


def _channel_field_warnings(mapping: ChannelMapping, companies: Sequence[Any]) -> list[str]:
    """Warn when the configured channel field is empty for every company: probably a wrong name."""
    if not mapping.field or not companies:
        return []
    if any(not is_empty(company.get(mapping.field)) for company in companies):
        return []
    return [
        f'No company in Planhat has a value in the channel field "{mapping.field}", so every '
        f'channel comes from the name template "{mapping.template}". Check PLANHAT_CHANNEL_FIELD: '
        'custom fields are written "custom.Field Name".'
    ]
