"""Starting one of the portal's own TLS listeners (the agents' events, new
machines' joins) beside the pages' server: an aiohttp app on a host and
port, each portal process on that host sharing the port (SO_REUSEPORT, the
kernel spreads connections over them)."""

from __future__ import annotations

import ssl

from aiohttp import web


async def serve(app: web.Application, host: str, port: int,
                context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    """``app`` listening with ``context``; its runner (to clean up) and the
    port it got (the one picked, when asked for 0)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=context, reuse_address=True,
                       reuse_port=True)
    await site.start()
    return runner, runner.addresses[0][1]


def host_and_port(address: str) -> tuple[str, int]:
    """("::1", 13002) from "[::1]:13002"."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
