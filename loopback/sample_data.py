"""Deterministic fake Planhat companies and the Slack workspace that goes with them.

The demo, the loopback servers and the tests all run against this data. Companies are shaped
like `GET /companies` records and include the awkward values real tenants send (accents, emoji,
Slack markup and duplicates in names, missing names, health as a string or null, "undefined"
custom values, epoch-millisecond dates). The workspace has a `customer-{slug}` channel for most
companies and every kind of channel a sender must cope with. `SampleData.cases` lists which
companies carry each awkward case, so tests can find them. All dates are relative to `today`.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from segments.slugs import slugify

DEFAULT_SEED = 20261204
CHANNEL_TEMPLATE_PREFIX = "customer-"
MAX_CHANNEL_NAME_LENGTH = 80
SLACK_CHANNEL_FIELD = "Slack Channel"

_T = TypeVar("_T")

_CHANNEL_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class SampleCase(StrEnum):
    """Awkward or notable situations in the sample; `SampleData.cases` maps each to company ids."""

    # Values in the company records.
    ACCENTED_NAME = "accented_name"
    EMOJI_NAME = "emoji_name"
    AMPERSAND_NAME = "ampersand_name"
    SLACK_MARKUP_NAME = "slack_markup_name"
    DUPLICATE_NAME = "duplicate_name"
    MISSING_NAME = "missing_name"
    NO_SLUG_NAME = "no_slug_name"
    LONG_NAME = "long_name"
    NULL_HEALTH = "null_health"
    STRING_HEALTH = "string_health"
    UNDEFINED_CUSTOM = "undefined_custom"
    EPOCH_MS_RENEWAL = "epoch_ms_renewal"
    PAST_RENEWAL = "past_renewal"
    STRING_ARR = "string_arr"
    OWNER_OBJECT = "owner_object"

    # How the company maps to a Slack channel. Every company is in exactly one of these.
    TEMPLATE_CHANNEL = "template_channel"
    ARCHIVED_CHANNEL = "archived_channel"
    PRIVATE_MEMBER_CHANNEL = "private_member_channel"
    PRIVATE_NOT_MEMBER_CHANNEL = "private_not_member_channel"
    PUBLIC_NOT_MEMBER_CHANNEL = "public_not_member_channel"
    EXT_SHARED_CHANNEL = "ext_shared_channel"
    RESTRICTED_CHANNEL = "restricted_channel"
    NO_CHANNEL = "no_channel"
    # No usable slug, or `customer-{slug}` would pass Slack's 80-character limit.
    NO_TEMPLATE_NAME = "no_template_name"
    FIELD_CHANNEL_ID = "field_channel_id"
    FIELD_CHANNEL_NAME = "field_channel_name"
    FIELD_CHANNEL_HASH_NAME = "field_channel_hash_name"
    FIELD_TWO_CHANNELS = "field_two_channels"
    FIELD_MISSING_CHANNEL = "field_missing_channel"


CHANNEL_CASES = (
    SampleCase.TEMPLATE_CHANNEL,
    SampleCase.ARCHIVED_CHANNEL,
    SampleCase.PRIVATE_MEMBER_CHANNEL,
    SampleCase.PRIVATE_NOT_MEMBER_CHANNEL,
    SampleCase.PUBLIC_NOT_MEMBER_CHANNEL,
    SampleCase.EXT_SHARED_CHANNEL,
    SampleCase.RESTRICTED_CHANNEL,
    SampleCase.NO_CHANNEL,
    SampleCase.NO_TEMPLATE_NAME,
    SampleCase.FIELD_CHANNEL_ID,
    SampleCase.FIELD_CHANNEL_NAME,
    SampleCase.FIELD_CHANNEL_HASH_NAME,
    SampleCase.FIELD_TWO_CHANNELS,
    SampleCase.FIELD_MISSING_CHANNEL,
)

_FIELD_CASES = (
    SampleCase.FIELD_CHANNEL_ID,
    SampleCase.FIELD_CHANNEL_NAME,
    SampleCase.FIELD_CHANNEL_HASH_NAME,
    SampleCase.FIELD_TWO_CHANNELS,
    SampleCase.FIELD_MISSING_CHANNEL,
)


@dataclass(frozen=True)
class SampleData:
    """Companies and custom fields as Planhat serves them, and the matching Slack channels.

    `cases` maps each `SampleCase` value to the `_id`s of the companies that show it.
    """

    companies: list[dict[str, Any]]
    custom_fields: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    today: date
    cases: dict[str, list[str]] = field(default_factory=dict)


def generate_sample(
    *, seed: int = DEFAULT_SEED, today: date, company_count: int = 2000
) -> SampleData:
    """Generate companies, custom field definitions and a Slack workspace, reproducibly.

    The same `seed` and `today` always give the same data. The companies equal those of
    `generate_companies(company_count, seed, today)`.
    """
    companies, cases = _build_companies(count=company_count, seed=seed, today=today)
    channels, channel_cases = _build_workspace(companies, cases=cases, seed=seed)
    cases.update(channel_cases)
    return SampleData(
        companies=companies,
        custom_fields=generate_custom_fields(),
        channels=channels,
        today=today,
        cases={str(case): cases.get(case, []) for case in SampleCase},
    )


def generate_companies(count: int, seed: int, today: date) -> list[dict[str, Any]]:
    """Generate `count` Planhat-shaped company records, including a handful of awkward ones.

    Fast enough for benchmarks with 100,000 companies.
    """
    companies, _ = _build_companies(count=count, seed=seed, today=today)
    return companies


def write_sample(sample: SampleData, folder: Path) -> list[Path]:
    """Write companies.json, customfields.json, channels.json and cases.json into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "companies.json": sample.companies,
        "customfields.json": sample.custom_fields,
        "channels.json": sample.channels,
        "cases.json": sample.cases,
    }
    written = []
    for file_name, content in contents.items():
        path = folder / file_name
        path.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# Custom field definitions


def generate_custom_fields() -> list[dict[str, Any]]:
    """Return `/customfields` definitions: nine on companies and two on other models."""
    definitions = [
        _custom_field("65a000000000000000000001", SLACK_CHANNEL_FIELD, "text"),
        _custom_field("65a000000000000000000002", "Seats Purchased", "number", numberFormat="0"),
        _custom_field(
            "65a000000000000000000003",
            "Plan",
            "list",
            listValues=list(_PLANS),
            isFeatured=True,
        ),
        _custom_field("65a000000000000000000004", "Reference OK", "checkbox"),
        _custom_field("65a000000000000000000005", "Contract Signed", "date"),
        _custom_field(
            "65a000000000000000000006", "Modules", "multipicklist", listValues=list(_MODULES)
        ),
        _custom_field("65a000000000000000000007", "NPS Rating", "rating"),
        _custom_field("65a000000000000000000008", "Executive Sponsor", "team member"),
        _custom_field("65a000000000000000000009", "Region", "text"),
        _custom_field("65a00000000000000000000a", "Job Title", "text", parent="enduser"),
        _custom_field("65a00000000000000000000b", "Champion", "checkbox", parent="enduser"),
    ]
    # Real definitions omit keys they do not use; one sparse record keeps parsers honest.
    sparse = {"_id": "65a00000000000000000000c", "name": "Renewal Notes", "type": "rich text"}
    definitions.append({**sparse, "parent": "company"})
    return definitions


def _custom_field(
    field_id: str, name: str, field_type: str, *, parent: str = "company", **extra: Any
) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "_id": field_id,
        "name": name,
        "type": field_type,
        "parent": parent,
        "isFeatured": False,
        "isHidden": False,
        "isShared": True,
        "isLocked": False,
        "isMandatory": False,
        "isFormula": False,
        "treatUndefinedAsZero": False,
        "formula": "",
        "listValues": [],
        "filter": [],
        "formulaRefs": [],
        "__v": 0,
    }
    definition.update(extra)
    return definition


# ---------------------------------------------------------------------------------------------
# Companies

_NAME_PREFIXES = (
    "North South East West Blue Bright Silver Iron Green Red Clear Swift Stone Oak Pine Maple "
    "Cedar Summit Harbor River Lake Sun Star Cloud Sky Ever True Prime Nova Apex Vertex Atlas "
    "Polar Golden Crystal Urban Metro Pacific Atlantic Alpine Coastal Quantum Fusion Vector "
    "Signal Beacon Pioneer Frontier Horizon Zenith Lumen Orbit Echo Falcon Eagle Wolf Fox Bear "
    "Hawk Birch"
).split()
_NAME_ROOTS = (
    "wave peak line works field point gate bridge stone wood ridge path way light spark forge "
    "mark core hub stack leaf bay port crest view wind flow shift base sight"
).split()
_INDUSTRIES = (
    "Analytics Logistics Health Software Systems Labs Robotics Energy Foods Media Capital "
    "Insurance Retail Networks Security Learning Travel Biotech Manufacturing Consulting Studios "
    "Payments Telecom Mobility Materials Solutions Technologies Data Cloud Pharma"
).split()
# Empty entries make most names carry no legal suffix.
_LEGAL_SUFFIXES = (
    *([""] * 5),
    *"Inc Ltd GmbH AB SA BV LLC Oy AS plc".split(),
)

_PLANS = ("Starter", "Professional", "Enterprise")
_MODULES = ("Reporting", "API", "SSO", "Workflows", "Mobile", "Analytics")
_TOUCH_TYPES = ("email", "meeting", "call", "note", "conversation")
_EXTRA_TAGS = ("Strategic", "Beta Program", "Upsell Target", "Reference", "Partner")

# (country, weight, region tag, Region custom field value)
_COUNTRIES = (
    ("United States", 30, "NA", "North America"),
    ("United Kingdom", 12, "EMEA", "EMEA"),
    ("Germany", 10, "EMEA", "EMEA"),
    ("France", 7, "EMEA", "EMEA"),
    ("Sweden", 6, "EMEA", "EMEA"),
    ("Netherlands", 5, "EMEA", "EMEA"),
    ("Canada", 6, "NA", "North America"),
    ("Australia", 5, "APAC", "APAC"),
    ("Japan", 3, "APAC", "APAC"),
    ("Singapore", 3, "APAC", "APAC"),
    ("Brazil", 4, "LATAM", "LATAM"),
    ("Mexico", 3, "LATAM", "LATAM"),
    ("Spain", 3, "EMEA", "EMEA"),
    ("Norway", 3, "EMEA", "EMEA"),
)

# Planhat's customer statuses; the lifecycle phase is drawn after the status.
_STATUSES = (("customer", 84), ("prospect", 5), ("coming", 2), ("lost", 6), ("canceled", 3))
_CUSTOMER_PHASES = (
    ("Onboarding", 10),
    ("Adoption", 42),
    ("Expansion", 20),
    ("Renewal", 15),
    ("At Risk", 13),
)

_TEAM_NAMES = (
    "Alice Martin",
    "Bruno Costa",
    "Chloé Dubois",
    "Dev Patel",
    "Emma Lindqvist",
    "Farah Haddad",
    "Gustav Berg",
    "Hana Sato",
    "Ivan Petrov",
    "Julia Nowak",
    "Kofi Mensah",
    "Laura Rossi",
)

# Hand-written names for the awkward cases. Each name appears once, except the duplicates.
_ACCENTED_NAMES = (
    "Société Générale Énergie",
    "Müller Präzisionstechnik GmbH",
    "Ørsted Vind Nordic",
    "São Paulo Logística",
)
_EMOJI_NAMES = ("Rocket 🚀 Labs", "Sunny ☀️ Foods", "Pizza 🍕 Planet")
_AMPERSAND_NAMES = ("Smith & Sons", "Johnson & Partners", "Bread & Butter Bakery")
_SLACK_MARKUP_NAMES = ("<!channel> Alerts Inc", "Team <@U123> Corp", "<!here> Ventures")
_DUPLICATED_NAMES = ("Acme Corp", "Globex", "Initech")
# Names from which `slugify` keeps nothing: emoji only, or scripts it cannot fold to ASCII.
_NO_SLUG_NAMES = ("🚀🌙", "東京データ株式会社")
_LONG_NAMES = (
    "The International Association of Independent Regional Healthcare Providers and Allied "
    "Professionals of Northern Europe",
)
_HAND_WRITTEN_NAMES = (
    *_ACCENTED_NAMES,
    *_EMOJI_NAMES,
    *_AMPERSAND_NAMES,
    *_SLACK_MARKUP_NAMES,
    *_DUPLICATED_NAMES,
    *_NO_SLUG_NAMES,
    *_LONG_NAMES,
)


@dataclass
class _Team:
    ids: list[str]
    names: list[str]


class _CompanyFactory:
    """Draws ordinary companies from one seeded random stream."""

    def __init__(self, *, rng: random.Random, today: date, team: _Team) -> None:
        self._rng = rng
        self._today = today
        self._team = team
        self._used_ids: set[str] = set()
        self._used_names: set[str] = set()
        self._day_strings: dict[int, str] = {}
        self._status_weights = _cumulative([weight for _, weight in _STATUSES])
        self._phase_weights = _cumulative([weight for _, weight in _CUSTOMER_PHASES])
        self._country_weights = _cumulative([entry[1] for entry in _COUNTRIES])

    def new_id(self) -> str:
        while True:
            object_id = f"{self._rng.getrandbits(96):024x}"
            if object_id not in self._used_ids:
                self._used_ids.add(object_id)
                return object_id

    # random.Random.randrange and choice cost about a microsecond per call, several times more
    # than a multiplication of random(), which matters at 100,000 companies.
    def _between(self, low: int, high: int) -> int:
        """Return a random integer in [low, high)."""
        return low + int(self._rng.random() * (high - low))

    def _pick(self, options: Sequence[_T]) -> _T:
        return options[int(self._rng.random() * len(options))]

    def claim_name(self, name: str) -> None:
        self._used_names.add(name)

    def day(self, offset: int) -> str:
        """Return midnight UTC `offset` days from today, formatted as Planhat sends dates."""
        text = self._day_strings.get(offset)
        if text is None:
            text = (self._today + timedelta(days=offset)).isoformat() + "T00:00:00.000Z"
            self._day_strings[offset] = text
        return text

    def moment(self, offset: int) -> str:
        """Return a time during the day `offset` days from today, in Planhat's format."""
        rng = self._rng
        day_text = self.day(offset)[:10]
        # A working-hours time between 07:00:00 and 19:59:59 UTC.
        minutes, second = divmod(self._between(7 * 3600, 20 * 3600), 60)
        hour, minute = divmod(minutes, 60)
        return f"{day_text}T{hour:02d}:{minute:02d}:{second:02d}.000Z"

    def company(self, index: int) -> dict[str, Any]:
        rng = self._rng
        name = self._new_name()
        slug = slugify(name)
        status = _STATUSES[_weighted_index(self._status_weights, rng)][0]
        phase = self._phase_for(status)
        health = self._health_for(status, phase)
        country, _, region_tag, region = _COUNTRIES[_weighted_index(self._country_weights, rng)]
        paying = status in ("customer", "coming")
        mrr = self._mrr() if paying else 0
        arr = mrr * 12
        if paying and rng.random() < 0.06:
            # Discounted or multi-year deals make ARR differ from 12 x MRR.
            arr = int(round(mrr * 12 * rng.uniform(0.8, 1.15), -1))

        renewal_offset = self._renewal_offset(status, phase)
        renews = renewal_offset is not None and renewal_offset >= 0
        customer_from_offset = self._customer_from_offset(status, phase)
        customer_from = None
        if customer_from_offset is not None:
            customer_from = self.day(customer_from_offset)
        owner = self._pick(self._team.ids) if rng.random() > 0.04 else None
        co_owner = self._pick(self._team.ids) if rng.random() < 0.1 else None
        touch_offset = -int(rng.expovariate(1 / 12)) if rng.random() > 0.03 else None

        tags = [region_tag, _tier_tag(mrr)]
        if rng.random() < 0.2:
            tags.append(self._pick(_EXTRA_TAGS))

        record: dict[str, Any] = {
            "_id": self.new_id(),
            "name": name,
            "slug": slug,
            "externalId": f"acct_{10000 + index}",
            "sourceId": f"0015g00000{rng.getrandbits(32):08X}",
            "owner": owner,
            "coOwner": co_owner,
            "phase": phase,
            "status": status,
            "h": health,
            "hDiff": self._pick((-2, -1, 0, 0, 0, 0, 1, 1, 2)) if health is not None else 0,
            "csmScore": self._csm_score(health),
            "mrr": mrr,
            "arr": arr,
            "renewalMrr": mrr if renews else 0,
            "renewalArr": arr if renews else 0,
            "renewalDate": self.day(renewal_offset) if renewal_offset is not None else None,
            "renewalDaysFromNow": renewal_offset,
            "lastRenewal": self._last_renewal(renewal_offset),
            "customerFrom": customer_from,
            "autoRenews": rng.random() < 0.7,
            "lastTouch": self.moment(touch_offset) if touch_offset is not None else None,
            "lastTouchType": self._pick(_TOUCH_TYPES) if touch_offset is not None else None,
            "tags": tags,
            "domains": [f"{slug}.example"],
            "country": country,
            "custom": self._custom_values(
                mrr=mrr, health=health, region=region, customer_from_offset=customer_from_offset
            ),
            "createDate": self.moment((customer_from_offset or 0) - self._between(10, 200)),
            "updatedAt": self.moment(-self._between(0, 10)),
            "__v": 0,
        }
        if status in ("lost", "canceled"):
            record["customerTo"] = self.day(-self._between(1, 380))
        return record

    def _new_name(self) -> str:
        rng = self._rng
        while True:
            prefix, root = self._pick(_NAME_PREFIXES), self._pick(_NAME_ROOTS)
            name = f"{prefix}{root} {self._pick(_INDUSTRIES)}"
            suffix = self._pick(_LEGAL_SUFFIXES)
            if suffix:
                name = f"{name} {suffix}"
            if name not in self._used_names:
                self._used_names.add(name)
                return name

    def _phase_for(self, status: str) -> str | None:
        if status in ("lost", "canceled"):
            return "Churned"
        if status == "prospect":
            return None
        if status == "coming":
            return "Onboarding"
        return _CUSTOMER_PHASES[_weighted_index(self._phase_weights, self._rng)][0]

    def _health_for(self, status: str, phase: str | None) -> float | None:
        """Draw a 0-10 health score, skewed high for healthy phases; prospects have none."""
        rng = self._rng
        if status == "prospect":
            return None
        if phase == "Churned":
            mean, spread = 2.5, 1.5
        elif phase == "At Risk":
            mean, spread = 3.2, 1.2
        elif phase == "Onboarding":
            mean, spread = 5.5, 1.2
        else:
            mean, spread = 6.9, 1.5
        score = min(10.0, max(0.0, rng.gauss(mean, spread)))
        # Planhat sends whole numbers for most tenants; some health profiles produce one decimal.
        if rng.random() < 0.6:
            return round(score)
        return round(score, 1)

    def _csm_score(self, health: float | None) -> int | None:
        rng = self._rng
        if health is None or rng.random() < 0.08:
            return None
        score = round(1 + health * 0.4 + rng.uniform(-0.8, 0.8))
        return min(5, max(1, score))

    def _mrr(self) -> int:
        # Log-normal with a median near 1,500 a month, rounded to tens as invoices usually are.
        return max(50, int(round(math.exp(self._rng.gauss(7.3, 1.1)), -1)))

    def _renewal_offset(self, status: str, phase: str | None) -> int | None:
        """Return days from today to the next renewal (negative when overdue), or None."""
        rng = self._rng
        if status == "prospect":
            return None
        if status in ("lost", "canceled"):
            return -self._between(1, 400) if rng.random() < 0.5 else None
        if phase == "Renewal":
            return self._between(0, 91)
        if rng.random() < 0.05:
            # Renewals that passed without Planhat rolling the date forward yet.
            return -self._between(1, 61)
        if phase == "At Risk":
            return self._between(1, 181)
        return self._between(1, 366)

    def _customer_from_offset(self, status: str, phase: str | None) -> int | None:
        rng = self._rng
        if status == "prospect":
            return None
        if status == "coming":
            return self._between(1, 31)
        if phase == "Onboarding":
            return -self._between(5, 91)
        if phase == "Churned":
            return -self._between(400, 2500)
        return -self._between(90, 2500)

    def _last_renewal(self, renewal_offset: int | None) -> str | None:
        if renewal_offset is None or renewal_offset - 365 >= 0:
            return None
        return self.day(renewal_offset - 365)

    def _custom_values(
        self, *, mrr: int, health: float | None, region: str, customer_from_offset: int | None
    ) -> dict[str, Any]:
        rng = self._rng
        custom: dict[str, Any] = {"Region": region}
        if mrr > 0:
            custom["Seats Purchased"] = max(1, mrr // self._pick((20, 25, 30, 40)))
            if rng.random() > 0.05:
                custom["Plan"] = _plan_for(mrr)
        custom["Reference OK"] = health is not None and health >= 7 and rng.random() < 0.4
        if customer_from_offset is not None:
            custom["Contract Signed"] = self.day(customer_from_offset - self._between(5, 31))
        # Each bit of a random 6-bit number decides whether one module is included.
        module_bits = self._between(0, 2 ** len(_MODULES))
        modules = [module for bit, module in enumerate(_MODULES) if module_bits >> bit & 1]
        if modules:
            custom["Modules"] = modules
        if rng.random() < 0.7:
            custom["NPS Rating"] = self._pick((1, 2, 3, 3, 4, 4, 4, 5, 5))
        if rng.random() < 0.6:
            custom["Executive Sponsor"] = self._pick(self._team.ids)
        return custom


def _plan_for(mrr: int) -> str:
    if mrr < 800:
        return "Starter"
    if mrr < 4000:
        return "Professional"
    return "Enterprise"


def _tier_tag(mrr: int) -> str:
    if mrr > 8000:
        return "Tier 1"
    if mrr > 1500:
        return "Tier 2"
    return "Tier 3"


def _weighted_index(cumulative_weights: Sequence[int], rng: random.Random) -> int:
    return bisect.bisect(cumulative_weights, rng.random() * cumulative_weights[-1])


def _cumulative(weights: Sequence[int]) -> list[int]:
    totals = []
    running = 0
    for weight in weights:
        running += weight
        totals.append(running)
    return totals


def _build_companies(
    *, count: int, seed: int, today: date
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Generate the companies, then rewrite a few of them into each awkward case."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")

    rng = random.Random(seed)
    team = _Team(
        ids=[f"{rng.getrandbits(96):024x}" for _ in _TEAM_NAMES], names=list(_TEAM_NAMES)
    )
    factory = _CompanyFactory(rng=rng, today=today, team=team)
    for name in _HAND_WRITTEN_NAMES:
        factory.claim_name(name)

    companies = [factory.company(index) for index in range(count)]
    cases: dict[str, list[str]] = {}
    # Each awkward company is drawn once from a shuffled pool, so no company mixes two cases.
    pool = list(range(count))
    rng.shuffle(pool)

    def take(case: SampleCase, how_many: int) -> list[dict[str, Any]]:
        chosen = [companies[pool.pop()] for _ in range(min(how_many, len(pool)))]
        cases.setdefault(case, []).extend(company["_id"] for company in chosen)
        return chosen

    _apply_names(take)
    _apply_value_cases(take, rng=rng, team=team, today=today)
    _apply_channel_fields(take, rng=rng, count=count)

    cases[SampleCase.PAST_RENEWAL] = [
        company["_id"]
        for company in companies
        if isinstance(company.get("renewalDaysFromNow"), int) and company["renewalDaysFromNow"] < 0
    ]
    return companies, cases


# Draws up to N companies not yet used by another case and records them under the case.
_Take = Callable[[SampleCase, int], list[dict[str, Any]]]


def _rename(company: dict[str, Any], name: str | None) -> None:
    if name is None:
        company["name"] = None
        company["slug"] = ""
        return
    slug = slugify(name)
    company["name"] = name
    company["slug"] = slug
    company["domains"] = [f"{slug or 'company'}.example"]


def _apply_names(take: _Take) -> None:
    for case, names in (
        (SampleCase.ACCENTED_NAME, _ACCENTED_NAMES),
        (SampleCase.EMOJI_NAME, _EMOJI_NAMES),
        (SampleCase.AMPERSAND_NAME, _AMPERSAND_NAMES),
        (SampleCase.SLACK_MARKUP_NAME, _SLACK_MARKUP_NAMES),
        (SampleCase.NO_SLUG_NAME, _NO_SLUG_NAMES),
        (SampleCase.LONG_NAME, _LONG_NAMES),
    ):
        for company, name in zip(take(case, len(names)), names, strict=False):
            _rename(company, name)

    # Two companies per duplicated name: one slug, so one `customer-` channel for both.
    duplicates = take(SampleCase.DUPLICATE_NAME, 2 * len(_DUPLICATED_NAMES))
    for position, company in enumerate(duplicates):
        _rename(company, _DUPLICATED_NAMES[position // 2])

    missing = take(SampleCase.MISSING_NAME, 3)
    for position, company in enumerate(missing):
        if position == 0:
            _rename(company, None)
        else:
            del company["name"]
            company["slug"] = ""


def _apply_value_cases(take: _Take, *, rng: random.Random, team: _Team, today: date) -> None:
    for company in take(SampleCase.NULL_HEALTH, 5):
        company["h"] = None

    health_texts = ("7", "4.5", " 8 ", "10")
    for company, text in zip(take(SampleCase.STRING_HEALTH, 4), health_texts, strict=False):
        company["h"] = text

    undefined_keys = ("Plan", "Seats Purchased", "Region", SLACK_CHANNEL_FIELD, "NPS Rating")
    for company, key in zip(take(SampleCase.UNDEFINED_CUSTOM, 5), undefined_keys, strict=False):
        company["custom"][key] = "undefined"

    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    for company in take(SampleCase.EPOCH_MS_RENEWAL, 5):
        offset = rng.randrange(1, 200)
        renewal = midnight + timedelta(days=offset)
        company["renewalDate"] = int(renewal.timestamp() * 1000)
        company["renewalDaysFromNow"] = offset

    for company in take(SampleCase.STRING_ARR, 5):
        company["arr"] = str(company["arr"])

    for company in take(SampleCase.OWNER_OBJECT, 5):
        position = rng.randrange(len(team.ids))
        first_name = team.names[position].split()[0]
        company["owner"] = {"_id": team.ids[position], "nickName": first_name}


def _apply_channel_fields(take: _Take, *, rng: random.Random, count: int) -> None:
    """Set the "Slack Channel" custom field on a few companies, in each form people type it."""
    per_case = max(3, round(count * 0.004))
    for case in _FIELD_CASES:
        for company in take(case, per_case):
            slug = company["slug"]
            company["custom"][SLACK_CHANNEL_FIELD] = _channel_field_value(case, slug=slug, rng=rng)


def _channel_field_value(case: SampleCase, *, slug: str, rng: random.Random) -> str:
    if case is SampleCase.FIELD_CHANNEL_ID:
        return new_channel_id(rng)
    if case is SampleCase.FIELD_CHANNEL_NAME:
        return _channel_name(slug, suffix="-success")
    if case is SampleCase.FIELD_CHANNEL_HASH_NAME:
        return "#" + _channel_name(slug, prefix="cs-")
    if case is SampleCase.FIELD_TWO_CHANNELS:
        return f"#{_channel_name(slug, suffix='-emea')}, {_channel_name(slug, suffix='-na')}"
    return "#" + _channel_name(slug, suffix="-old")


def _channel_name(slug: str, *, prefix: str = "", suffix: str = "") -> str:
    room = MAX_CHANNEL_NAME_LENGTH - len(prefix) - len(suffix)
    return f"{prefix}{slug[:room].strip('-')}{suffix}"


def new_channel_id(rng: random.Random) -> str:
    """Return a Slack-style channel id: `C` and ten uppercase letters or digits."""
    return "C" + "".join(rng.choices(_CHANNEL_ID_ALPHABET, k=10))


# ---------------------------------------------------------------------------------------------
# Slack workspace

# Channels unrelated to any company: (name, is_private, is_member).
_UNRELATED_CHANNELS = (
    ("general", False, True),
    ("random", False, True),
    ("cs-team", False, True),
    ("cs-leadership", True, True),
    ("sales", False, False),
    ("support-escalations", False, True),
    ("product-feedback", False, False),
    ("announcements", False, True),
    ("renewals-pipeline", False, True),
)

# Share of company slugs given each channel case (at least two each). The remaining slugs get a
# public `customer-{slug}` channel that the bot is a member of.
_TEMPLATE_SHARES = (
    (SampleCase.NO_CHANNEL, 0.06),
    (SampleCase.PUBLIC_NOT_MEMBER_CHANNEL, 0.05),
    (SampleCase.PRIVATE_MEMBER_CHANNEL, 0.03),
    (SampleCase.PRIVATE_NOT_MEMBER_CHANNEL, 0.02),
    (SampleCase.EXT_SHARED_CHANNEL, 0.02),
    (SampleCase.ARCHIVED_CHANNEL, 0.015),
    (SampleCase.RESTRICTED_CHANNEL, 0.01),
)


@dataclass(frozen=True)
class _ChannelFlags:
    """Slack channel state; `restricted` means a workspace preference blocks posting."""

    is_private: bool = False
    is_archived: bool = False
    is_member: bool = True
    is_ext_shared: bool = False
    restricted: bool = False


class _Workspace:
    def __init__(self, rng: random.Random, *, reserved_ids: set[str]) -> None:
        self._rng = rng
        self._used_ids = set(reserved_ids)
        self.channels: dict[str, dict[str, Any]] = {}

    def add(
        self, name: str, *, channel_id: str | None = None, flags: _ChannelFlags = _ChannelFlags()
    ) -> dict[str, Any]:
        """Create channel `name`, or return the existing channel of that name unchanged."""
        existing = self.channels.get(name)
        if existing is not None:
            return existing
        if channel_id is None:
            channel_id = self._new_id()
        self._used_ids.add(channel_id)
        channel = {
            "id": channel_id,
            "name": name,
            "is_private": flags.is_private,
            "is_archived": flags.is_archived,
            "is_member": flags.is_member,
            "is_ext_shared": flags.is_ext_shared,
            "restricted": flags.restricted,
        }
        self.channels[name] = channel
        return channel

    def _new_id(self) -> str:
        while True:
            channel_id = new_channel_id(self._rng)
            if channel_id not in self._used_ids:
                return channel_id


def _build_workspace(
    companies: list[dict[str, Any]], *, cases: dict[str, list[str]], seed: int
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Create the Slack channels for the companies and record each company's channel case."""
    # A separate stream keeps the companies identical to `generate_companies` output.
    rng = random.Random(f"{seed}:workspace")
    field_case_of = {
        company_id: case for case in _FIELD_CASES for company_id in cases.get(case, [])
    }
    field_ids = {
        company["custom"][SLACK_CHANNEL_FIELD]
        for company in companies
        if field_case_of.get(company["_id"]) is SampleCase.FIELD_CHANNEL_ID
    }
    workspace = _Workspace(rng, reserved_ids=field_ids)
    for name, is_private, is_member in _UNRELATED_CHANNELS:
        workspace.add(name, flags=_ChannelFlags(is_private=is_private, is_member=is_member))

    channel_cases: dict[str, list[str]] = {case: [] for case in CHANNEL_CASES}
    awkward_ids = {
        company_id
        for case in (
            SampleCase.ACCENTED_NAME,
            SampleCase.EMOJI_NAME,
            SampleCase.AMPERSAND_NAME,
            SampleCase.SLACK_MARKUP_NAME,
            SampleCase.DUPLICATE_NAME,
        )
        for company_id in cases.get(case, [])
    }
    companies_by_slug: dict[str, list[str]] = {}
    plain_slugs: list[str] = []
    for company in companies:
        company_id = company["_id"]
        field_case = field_case_of.get(company_id)
        if field_case is not None:
            _add_field_channels(workspace, company, case=field_case)
            channel_cases[field_case].append(company_id)
            continue

        company_name = company.get("name")
        slug = slugify(company_name) if isinstance(company_name, str) else ""
        template_name = CHANNEL_TEMPLATE_PREFIX + slug
        if not slug or len(template_name) > MAX_CHANNEL_NAME_LENGTH:
            channel_cases[SampleCase.NO_TEMPLATE_NAME].append(company_id)
            continue
        if slug not in companies_by_slug:
            companies_by_slug[slug] = []
            if company_id in awkward_ids:
                plain_slugs.append(slug)
        companies_by_slug[slug].append(company_id)

    # Awkward names always get a plain channel, so tests can check that their slug resolves.
    plain = set(plain_slugs)
    other_slugs = [slug for slug in companies_by_slug if slug not in plain]
    rng.shuffle(other_slugs)
    case_of_slug = {slug: SampleCase.TEMPLATE_CHANNEL for slug in companies_by_slug}
    start = 0
    for case, share in _TEMPLATE_SHARES:
        how_many = max(2, round(len(other_slugs) * share))
        for slug in other_slugs[start : start + how_many]:
            case_of_slug[slug] = case
        start += how_many

    for slug, company_ids in companies_by_slug.items():
        case = case_of_slug[slug]
        channel_cases[case].extend(company_ids)
        if case is not SampleCase.NO_CHANNEL:
            workspace.add(CHANNEL_TEMPLATE_PREFIX + slug, flags=_TEMPLATE_FLAGS[case])

    channels = sorted(workspace.channels.values(), key=lambda channel: channel["name"])
    return channels, channel_cases


_TEMPLATE_FLAGS = {
    SampleCase.TEMPLATE_CHANNEL: _ChannelFlags(),
    SampleCase.PUBLIC_NOT_MEMBER_CHANNEL: _ChannelFlags(is_member=False),
    SampleCase.PRIVATE_MEMBER_CHANNEL: _ChannelFlags(is_private=True),
    SampleCase.PRIVATE_NOT_MEMBER_CHANNEL: _ChannelFlags(is_private=True, is_member=False),
    SampleCase.EXT_SHARED_CHANNEL: _ChannelFlags(is_ext_shared=True),
    SampleCase.ARCHIVED_CHANNEL: _ChannelFlags(is_archived=True, is_member=False),
    SampleCase.RESTRICTED_CHANNEL: _ChannelFlags(restricted=True),
}


def _add_field_channels(
    workspace: _Workspace, company: dict[str, Any], *, case: SampleCase
) -> None:
    """Create the channels a company's "Slack Channel" field names, except the missing one."""
    value: str = company["custom"][SLACK_CHANNEL_FIELD]
    if case is SampleCase.FIELD_MISSING_CHANNEL:
        return
    if case is SampleCase.FIELD_CHANNEL_ID:
        # The id is fixed by the field, so the name must be new: a taken name would keep its id.
        name = _channel_name(company["slug"], prefix="acct-")
        copy_number = 1
        while name in workspace.channels:
            copy_number += 1
            name = _channel_name(company["slug"], prefix="acct-", suffix=f"-{copy_number}")
        workspace.add(name, channel_id=value)
        return
    for part in value.split(","):
        workspace.add(part.strip().lstrip("#"))
