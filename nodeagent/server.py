"""The node agent's one network listener: authenticated HTTP and websocket routes.

The portal (consoles, console logs, uploads, blob downloads, usage history
and live samples) and other nodes' agents (copying a blob this node holds)
talk to it, over TLS only: the server presents this node's certificate and
the TLS handshake refuses a client without a certificate from the cloud's
CA. Every request also carries a grant signed with the cluster secret
(``Authorization: Bearer ...``) and only the portal's and agents'
certificates are let in with one (not an etcd member's, say); the server
checks the signature, the expiry, that the grant names this node and exactly
this method, path and query, and that it has not been used before (even by
an agent before a restart: used grants are kept on disk until they expire).
Handlers get the verified claims and never see an unauthenticated request,
so a new route only has to be registered with ``add_route``.

The one exception is /metrics, for Prometheus, which can't sign a grant per
request: it sends a fixed bearer token instead (``add_token_route``), over
the same TLS with a certificate of its own, a ``monitor``'s. That role is
let in on token routes only, never where a grant is the key: a scraper's
certificate and token read figures and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from cloudstate import metrics, signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, query_claim
from nodeagent.replays import ReplayGuard, ReplaysFull

log = logging.getLogger(__name__)

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


# Who may call an agent's grant routes: the portal, and other agents (blob copies).
CALLERS = (tls.ROLE_PORTAL, tls.ROLE_AGENT)
# Who may read its token routes (/metrics): those, and Prometheus with a monitor's certificate.
READERS = (*CALLERS, tls.ROLE_MONITOR)


class AgentServer:
    def __init__(self, *, host: str, port: int, node: str, secret: bytes,
                 server_tls: tls.ServerTls, replay_file: Path | None = None):
        """``replay_file`` keeps the ids of grants used (until they expire)
        across restarts; without it they are remembered in memory only."""
        self.host = host
        self.port = port
        self.node = node
        self._secret = secret
        self._tls = server_tls
        self._replays = ReplayGuard(replay_file)
        self._app = web.Application()
        self._runner: web.AppRunner | None = None
        self._websockets: set[web.WebSocketResponse] = set()

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``handler(request, claims)`` for requests with a valid grant."""

        async def checked(request: web.Request) -> web.StreamResponse:
            claims = self._verify(request)
            if isinstance(claims, web.Response):
                return claims
            return await handler(request, claims)

        self._app.router.add_route(method, path, checked)

    def add_token_route(self, method: str, path: str, token: str | None,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                        off_message: str) -> None:
        """Serve ``handler(request)`` to a tool outside the cloud (Prometheus)
        that sends one fixed bearer token, as it can't sign a grant per
        request. Without a token configured the route answers 404."""

        async def checked(request: web.Request) -> web.StreamResponse:
            peer = tls.peer_from_transport(request.transport)
            if peer is None or peer.role not in READERS:
                return _refuse(403, f"{peer or 'this certificate'} may not read {request.path}")
            if token is None:
                return _refuse(404, off_message)
            if not metrics.allowed(request.headers.get("Authorization", ""), token):
                return _refuse(401, "the bearer token is missing or wrong")
            return await handler(request)

        self._app.router.add_route(method, path, checked)

    async def websocket(self, request: web.Request, **options: Any) -> web.WebSocketResponse:
        """Accept a websocket the server closes when it stops (handlers would
        otherwise hold the shutdown up for as long as their peer stays)."""
        ws = web.WebSocketResponse(**options)
        await ws.prepare(request)
        self._websockets = {w for w in self._websockets if not w.closed}
        self._websockets.add(ws)
        return ws

    def _verify(self, request: web.Request) -> dict[str, Any] | web.Response:
        peer = tls.peer_from_transport(request.transport)
        if peer is None or peer.role not in CALLERS:
            return _refuse(403, f"{peer or 'this certificate'} may not call a node agent")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _refuse(401, "a signed grant is required")
        try:
            claims = signing.verify(self._secret, AGENT_GRANT_PURPOSE, token.strip())
        except signing.BadSignature as exc:
            return _refuse(401, f"grant refused: {exc}")
        if claims.get("node") != self.node:
            return _refuse(403, f"the grant is for node {claims.get('node')!r}, not this one")
        if claims.get("method") != request.method or claims.get("path") != request.path \
                or claims.get("query", []) != query_claim(request.query):
            return _refuse(403, "the grant is for another request")
        jti = claims.get("jti")
        if not isinstance(jti, str):
            return _refuse(403, "the grant has no id")
        try:
            if not self._replays.first_use(jti, claims["exp"]):
                return _refuse(403, "the grant was used already")
        except ReplaysFull:
            return _refuse(503, "too many requests at once; try again in a few seconds")
        return claims

    async def start(self) -> int:
        """Listen; returns the port (the one picked, when asked for 0)."""
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False,
                                     shutdown_timeout=3)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True,
                           ssl_context=self._tls.listening)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("agent server listening on %s:%d (TLS, the cloud's certificates only)",
                 self.host, self.port)
        return self.port

    async def stop(self) -> None:
        # 1012: the service is restarting; the portal tells its pages to reconnect.
        for ws in list(self._websockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1012, message=b"agent restarting"), 2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
