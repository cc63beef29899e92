"""Start an aiohttp application on 127.0.0.1 with a free port chosen by the operating system."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass
class RunningServer:
    """An aiohttp application listening on loopback; `url` ends without a slash."""

    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve `app` on `host:port` (port 0 picks a free one) and return its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return RunningServer(url=f"http://{host}:{bound_port}", runner=runner)
