"""`segment-bot demo`: the whole flow on sample data, against loopback Planhat and Slack servers.

Both servers run in this process on 127.0.0.1 and speak real HTTP, so the demo exercises the same
clients, storage and sender a real workspace would: nothing is mocked.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.render import print_audience
from bot.wiring import posting_slack_client, reading_slack_client
from db.engine import create_engine, create_session_factory
from db.migrate import upgrade_database
from db.stores import SqlDeliveryLog, SqlSegmentStore
from loopback.planhat_server import PlanhatState, create_planhat_app
from loopback.sample_data import generate_sample
from loopback.server import start_server
from loopback.slack_server import SlackState, create_slack_app
from planhat.client import PlanhatClient
from segments.audience import AudienceResolver
from segments.channels import ChannelMapping
from segments.ports import BroadcastRecord, DeliveryRecord, DeliveryStatus, NewBroadcast
from segments.rules import rules_from_json, rules_to_json
from segments.sending import BroadcastSender, failure_group

DEMO_TEAM = "T0SEGMENT"
DEMO_USER = "U0DEMO"
PLANHAT_TOKEN = "demo-planhat-token"
SLACK_TOKEN = "xoxb-demo-token"

# The five example segments: name, then rules as a person would type them. Two use a threshold of
# 40, a common mistake on Planhat's 0-10 health scale, so the demo shows the preview's warning.
EXAMPLES = [
    ("Health below 40", "Health Score less than 40"),
    ("Renewing soon", "Renewal Date within 60 days"),
    ("Onboarding", 'Lifecycle Stage equals "Onboarding"'),
    ("Health below 40, ARR over 50k", "Health Score less than 40 AND ARR greater than 50000"),
    ("ARR over 10k", "ARR greater than 10000"),
]
SEND_TO = "Onboarding"
MESSAGE = (
    ":wave: Hello from your Customer Success team! Onboarding office hours run every Thursday at "
    "15:00 UTC. Reply here with anything you would like us to cover."
)


async def run_demo(*, console: Console, company_count: int, seed: int, timezone: str) -> int:
    started = time.perf_counter()
    # Log lines go through the console so they do not break the progress bar.
    logging.getLogger().handlers[:] = [RichHandler(console=console, show_path=False, level=logging.WARNING)]
    today = datetime.now(ZoneInfo(timezone)).date()
    sample = generate_sample(seed=seed, today=today, company_count=company_count)
    console.print(
        f"[bold]segment-bot demo[/bold]: {len(sample.companies):,} sample companies, "
        f"{len(sample.channels):,} Slack channels, today is {today} ({timezone})."
    )

    planhat_state = PlanhatState(companies=sample.companies, custom_fields=sample.custom_fields, token=PLANHAT_TOKEN)
    slack_state = SlackState(channels=sample.channels, bot_token=SLACK_TOKEN)
    # A workspace limit and a few 429s, so the sender's pacing and retries are visible in the report.
    slack_state.workspace_posts_per_second = 40
    slack_state.fail_rate_429 = 0.03
    planhat_server = await start_server(create_planhat_app(planhat_state))
    slack_server = await start_server(create_slack_app(slack_state))
    console.print(f"Loopback Planhat API at {planhat_server.url}, Slack Web API at {slack_server.url}/api/")

    workdir = Path(tempfile.mkdtemp(prefix="segment-bot-demo-"))
    engine = create_engine(f"sqlite+aiosqlite:///{workdir / 'demo.db'}")
    planhat = PlanhatClient(base_url=planhat_server.url, token=PLANHAT_TOKEN)
    try:
        await upgrade_database(engine)
        sessions = create_session_factory(engine)
        segments = SqlSegmentStore(sessions)
        resolver = AudienceResolver(
            source=planhat,
            slack=reading_slack_client(token=SLACK_TOKEN, base_url=f"{slack_server.url}/api/"),
            mapping=ChannelMapping(field="custom.Slack Channel", template="customer-{slug}"),
            timezone=timezone,
        )

        console.rule("Preview and save the five example segments")
        audiences = {}
        for name, text in EXAMPLES:
            rules, catalog = await resolver.parse(text)
            audience = await resolver.resolve(rules, catalog=catalog)
            audiences[name] = audience
            print_audience(console, audience, title=f"{name}: {text}", rows=5)
            await segments.create(team_id=DEMO_TEAM, name=name, rules=rules_to_json(rules), user_id=DEMO_USER)
            console.print()
        saved = await segments.list(team_id=DEMO_TEAM)
        console.print(f"Saved {len(saved)} segments: {', '.join(segment.name for segment in saved)}.")

        console.rule(f'Send to "{SEND_TO}"')
        record = await _send(console, resolver, segments, slack_state, slack_server.url, SqlDeliveryLog(sessions))
        _print_report(console, record, slack_state)
    finally:
        await planhat.aclose()
        await engine.dispose()
        await slack_server.stop()
        await planhat_server.stop()

    planhat_calls = sum(1 for request in planhat_state.requests if request.path == "/companies")
    console.print(
        f"Done in {time.perf_counter() - started:.1f}s: {planhat_calls} Planhat /companies calls, "
        f"database at {workdir / 'demo.db'}."
    )
    return 0


async def _send(
    console: Console,
    resolver: AudienceResolver,
    segments: SqlSegmentStore,
    slack_state: SlackState,
    slack_url: str,
    log: SqlDeliveryLog,
) -> BroadcastRecord:
    segment = await segments.get_by_name(team_id=DEMO_TEAM, name=SEND_TO)
    if segment is None:
        raise LookupError(f'The demo segment "{SEND_TO}" was not saved.')

    # A send always resolves membership from fresh Planhat data, never from the preview cache.
    audience = await resolver.resolve(rules_from_json(segment.rules), fresh=True)
    console.print(f"Posting to {len(audience.targets):,} channels: {MESSAGE}")
    sender_client = posting_slack_client(token=SLACK_TOKEN, base_url=f"{slack_url}/api/")
    with Progress(
        TextColumn("Sending"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("send", total=len(audience.targets))

        def advance(delivery: DeliveryRecord) -> None:
            if delivery.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
                progress.advance(task)

        sender = BroadcastSender(client=sender_client, log=log, concurrency=8, on_progress=advance)
        return await sender.send(
            NewBroadcast(
                team_id=DEMO_TEAM,
                segment_id=segment.id,
                segment_name=segment.name,
                rules_text=audience.rules_text,
                message_text=MESSAGE,
                message_blocks=None,
                sent_by=DEMO_USER,
                targets=audience.targets,
                unmapped=[
                    {"company_id": row.company_id, "company_name": row.company_name, "reason": row.reason}
                    for row in audience.unmapped
                ],
            )
        )


def _print_report(console: Console, record: BroadcastRecord, slack_state: SlackState) -> None:
    deliveries = record.deliveries
    sent = [delivery for delivery in deliveries if delivery.status == DeliveryStatus.SENT]
    failed = [delivery for delivery in deliveries if delivery.status == DeliveryStatus.FAILED]
    console.print(f"Broadcast {record.id}: {record.status}. {len(sent):,} delivered, {len(failed):,} failed.")
    for error, count in Counter(delivery.error or "unknown" for delivery in failed).most_common():
        label, action = failure_group(error)
        channels = ", ".join(f"#{d.channel_name}" for d in failed if (d.error or "unknown") == error)
        console.print(f"  {count:>4}  {label}: {channels}. {action}", highlight=False)
    duplicates = [d.channel_name for d in sent if len(slack_state.posts_in(d.channel_id)) != 1]
    retried = sum(1 for call in slack_state.calls if call.method == "chat.postMessage" and call.status == 429)
    console.print(
        f"Checked in the Slack server: {len(sent) - len(duplicates):,} channels hold the message exactly once"
        + (f", {len(duplicates)} do not: {', '.join(duplicates)}" if duplicates else "")
        + f"; {retried} posts were answered 429 and retried after Retry-After."
    )
