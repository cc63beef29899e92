"""Render an audience for the terminal: a table, the documented JSON form, or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

from rich.console import Console
from rich.table import Table

from segments.audience import Audience

# The table shows this many matched rows; JSON and CSV always carry every row.
TABLE_ROWS = 25


def audience_json(audience: Audience) -> str:
    return json.dumps(audience.to_json(), indent=2, ensure_ascii=False)


def audience_csv(audience: Audience) -> str:
    """Return one CSV row per matched or unmapped company; `values` joins the matched values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["status", "company_id", "company_name", "channel_id", "channel_name", "values", "reason"])
    for row in audience.matched:
        values = "; ".join(f"{label}: {value}" for label, value in row.reasons.items())
        writer.writerow(["matched", row.company_id, row.company_name, row.channel_id, row.channel_name, values, ""])
    for unmapped in audience.unmapped:
        writer.writerow(["unmapped", unmapped.company_id, unmapped.company_name, "", "", "", unmapped.reason])
    return buffer.getvalue()


def print_audience(console: Console, audience: Audience, *, title: str | None = None, rows: int = TABLE_ROWS) -> None:
    """Print the count, a table of matched companies with their values, unmapped reasons and warnings."""
    heading = title or audience.rules_text
    console.print(f"[bold]{heading}[/bold]")
    if title:
        console.print(f"  rules: {audience.rules_text}")
    console.print(
        f"  {audience.matching_company_count:,} of {audience.company_count:,} companies match, "
        f"reaching {len(audience.targets):,} channels; {audience.companies_without_channel:,} "
        f"have no channel. Planhat data fetched {audience.fetched_at:%Y-%m-%d %H:%M:%S %Z} in "
        f"{audience.planhat_calls} call{'s' if audience.planhat_calls != 1 else ''}."
    )
    if audience.matched:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("Company", overflow="fold", max_width=36)
        table.add_column("Values that matched", overflow="fold")
        table.add_column("Channel", overflow="fold")
        for row in audience.matched[:rows]:
            values = ", ".join(f"{label} {value}" for label, value in row.reasons.items())
            # Escaping "[" keeps CRM text such as "[bold]" from being read as rich markup.
            table.add_row(_literal(row.company_name), _literal(values), _literal(f"#{row.channel_name}"))
        console.print(table)
        if len(audience.matched) > rows:
            console.print(f"  ... and {len(audience.matched) - rows:,} more (use --format json or csv for all).")
    if audience.unmapped:
        console.print("  Unmapped companies, by reason (one example each):")
        by_kind = Counter(row.kind for row in audience.unmapped)
        example = {row.kind: row for row in reversed(audience.unmapped)}
        for kind, count in by_kind.most_common():
            sample = example[kind]
            name = sample.company_name or f"(unnamed company {sample.company_id})"
            console.print(f"    {count:>5,}  {_literal(name)}: {_literal(sample.reason)}")
    for warning in audience.warnings:
        console.print(f"  [yellow]Warning:[/yellow] {_literal(warning)}")


def _literal(text: str) -> str:
    return text.replace("[", r"\[")
