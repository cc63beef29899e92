"""The `segment-bot` command line: demo, preview, check and serve.

Each command builds its clients from `Settings`, runs one coroutine and turns expected failures into
one sentence on stderr with a non-zero exit status. Results are printed only once complete, so a
failure never leaves a partial result on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date

import sqlalchemy.exc
from rich.console import Console

from bot.config import ConfigError, Settings
from segments.errors import UserFacingError, describe_error
from segments.rules import RuleError

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        return asyncio.run(args.run(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into an exit status
        message = describe_error(exc)
        if message is None:
            if args.verbose:
                logger.exception("segment-bot %s failed unexpectedly", args.command)
                message = f"Unexpected error: {exc!r}."
            else:
                message = f"Unexpected error: {exc!r}. Run again with --verbose for the traceback."
        print(f"segment-bot: {message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, (ConfigError, RuleError)) else EXIT_FAILED


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segment-bot",
        description="Reach customer Slack channels chosen by Planhat segment rules.",
    )
    parser.add_argument("--verbose", action="store_true", help="log debug detail to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the whole flow against loopback Planhat and Slack servers with sample data",
    )
    demo.add_argument("--companies", type=int, default=2000, help="sample companies to generate (default 2000)")
    demo.add_argument("--seed", type=int, default=20261204, help="random seed of the sample data")
    demo.set_defaults(run=_run_demo)

    preview = commands.add_parser(
        "preview",
        help="list the channels that rules reach now (PLANHAT_API_* and SLACK_* settings)",
    )
    preview.add_argument("--where", required=True, metavar="RULES", help='rules, e.g. "Health Score less than 4"')
    preview.add_argument("--today", type=_parse_day, help="evaluate dates as if today were YYYY-MM-DD")
    preview.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    preview.set_defaults(run=_run_preview)

    serve = commands.add_parser(
        "serve",
        help="run the Slack app over HTTP on PORT (or in Socket Mode when SLACK_APP_TOKEN is set)",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.set_defaults(run=_run_serve)

    check = commands.add_parser("check", help="check the Planhat token, the Slack token and scopes, and the channel field")
    check.set_defaults(run=_run_check)
    return parser


def _console() -> Console:
    """Return a console for stdout; output piped to a file or another program gets 120 columns."""
    console = Console()
    if not console.is_terminal:
        # soft_wrap keeps each summary line whole, so piped output can be searched with grep.
        console = Console(width=120, soft_wrap=True)
    return console


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'"{text}" is not a date in the form YYYY-MM-DD') from exc


async def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.demo import run_demo

    return await run_demo(console=_console(), company_count=args.companies, seed=args.seed, timezone=settings.timezone)


async def _run_preview(args: argparse.Namespace, settings: Settings) -> int:
    from bot.render import audience_csv, audience_json, print_audience
    from bot.wiring import open_resolver

    settings.require("PLANHAT_API_TOKEN", "SLACK_BOT_TOKEN")
    async with open_resolver(settings) as resolver:
        rules, catalog = await resolver.parse(args.where)
        audience = await resolver.resolve(rules, catalog=catalog, today=args.today)

    if args.format == "json":
        print(audience_json(audience))
    elif args.format == "csv":
        sys.stdout.write(audience_csv(audience))
        for warning in audience.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    else:
        print_audience(_console(), audience)
    return 0


async def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.server import serve

    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # Bolt logs a rejected request's whole body at INFO; keep request bodies out of the log.
    logging.getLogger("slack_bolt").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        await serve(settings, host=args.host)
    except OSError as exc:
        raise UserFacingError(
            f"Could not listen on {args.host}:{settings.port} ({exc.strerror}). Set PORT to a free port."
        ) from exc
    except sqlalchemy.exc.OperationalError as exc:
        raise UserFacingError(
            f"Could not open the database at DATABASE_URL ({exc.orig}). Check the path or server."
        ) from exc
    return 0


async def _run_check(args: argparse.Namespace, settings: Settings) -> int:
    from bot.check import run_check

    return await run_check(settings, console=_console())
