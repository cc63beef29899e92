"""Benchmark: evaluate a five-rule segment against 100,000 generated companies.

Run: .venv/bin/python -m bench.bench_evaluate [--companies 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

from bench.machine import describe_machine
from loopback.sample_data import generate_companies, generate_sample
from planhat.models import Company, CustomFieldDefinition
from segments.evaluate import EvaluationContext, build_matcher
from segments.properties import PropertyCatalog
from segments.text import parse_rules

RULES = (
    'Health Score less than 5 AND ARR greater than 50000 AND Renewal Date within 90 days '
    'AND Lifecycle Stage in ("Adoption", "Renewal", "At Risk") AND "Seats Purchased" at least 10'
)
TODAY = date(2026, 12, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    definitions = [
        CustomFieldDefinition(id=raw["_id"], name=raw["name"], type=raw["type"], parent=raw["parent"])
        for raw in generate_sample(today=TODAY, company_count=10).custom_fields
    ]
    catalog = PropertyCatalog.builtin().with_custom_fields(definitions)
    rules = parse_rules(RULES, catalog)
    started = time.perf_counter()
    companies = [
        Company(id=raw["_id"], name=raw.get("name") or "", fields=raw)
        for raw in generate_companies(args.companies, seed=1, today=TODAY)
    ]
    generated = time.perf_counter() - started

    matcher = build_matcher(rules, catalog, EvaluationContext(today=TODAY, timezone=EvaluationContext.now().timezone))
    timings = []
    matched = 0
    for _ in range(args.repeat):
        started = time.perf_counter()
        matched = sum(1 for company in companies if matcher.matches(company))
        timings.append(time.perf_counter() - started)

    median = statistics.median(timings)
    print(f"machine: {describe_machine()}")
    print(f"rules: {RULES}")
    print(f"companies: {len(companies):,} (generated in {generated:.1f}s), matched: {matched:,}")
    print(
        f"evaluate: median {median * 1000:.0f} ms, min {min(timings) * 1000:.0f} ms, "
        f"max {max(timings) * 1000:.0f} ms over {args.repeat} runs; "
        f"{len(companies) / median:,.0f} companies/s"
    )


if __name__ == "__main__":
    main()
