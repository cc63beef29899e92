"""Slack surfaces: one module per surface, each with a `register(app, services)`.

Handlers ack first, parse the request, make one call into the segment engine, render Block Kit
and reply. Business rules live in `segments/`, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

if TYPE_CHECKING:
    from bot.services import Services


def register_all(app: AsyncApp, services: Services) -> None:
    from . import builder, commands, home, reports, send, workflow

    for module in (commands, builder, send, home, workflow, reports):
        module.register(app, services)
