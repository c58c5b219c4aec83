"""Where node agents send their events: a listener of its own, TLS only.

The portal's pages and API are served by the ASGI server (plain HTTP on
loopback by default, often behind a proxy that terminates browsers' TLS).
Agents do not come in that way. Each portal process also runs this small
aiohttp server, started by the ASGI lifespan, on ``SFCLOUD_PORTAL_AGENTS_ADDRESS``:

- TLS with the portal's certificate, and the handshake requires a client
  certificate from the cloud's CA; only an agent's is let in (not an etcd
  member's), so nothing without the cloud's keys gets as far as HTTP;
- the agent's token (signed with the cluster secret, naming its node) must
  name the node its certificate names, and carries an id that is spent in
  etcd (``tokens``): a token used twice is refused, whichever portal process
  sees it the second time;
- several portal processes on one host bind the same port (SO_REUSEPORT)
  and the kernel spreads agents' connections over them.

Why a second listener rather than a TLS ASGI server: browsers keep the
address, certificate and proxy the operator chose for them, while agents get
mutual TLS with the cloud's own CA, which a browser-facing proxy would
terminate. Agents still push and spool on disk while the portal is away
(``nodeagent.events``), exactly as before.

After the handshake the agent sends batches of events; each batch is stored
before it is acknowledged, by id, so an agent deletes its copy only once the
portal has it, and a batch sent again after a lost acknowledgement is stored
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web
from django.conf import settings

from cloudstate import signing, tls
from cloudstate.etcd import EtcdUnavailable
from cloudstate.validation import ValidationError
from portal import metrics, tlslistener
from portal.cloud import store
from portal.events import log as eventlog
from portal.events import tokens

log = logging.getLogger(__name__)

PURPOSE = "agent-events"  # nodeagent.events.PURPOSE
PATH = "/ws/agent/events/"
MAX_BATCH = 500
MAX_MESSAGE = 1 << 20
CLOSE_BAD_MESSAGE = 4400
SOCKET_KIND = "agent"  # in the portal's /metrics, beside the browsers' websockets


@functools.cache
def cluster_secret() -> bytes:
    return signing.load_secret(settings.CLOUD.state_dir)


def _refuse(status: int, message: str) -> web.Response:
    log.warning("refused an agent event stream: %s", message)
    return web.json_response({"error": message, "status": status}, status=status)


async def take_batch(content: Any, node: str) -> list[str] | None:
    """Store one batch from ``node``; the event ids to acknowledge, or None
    if the message is not a batch at all."""
    batch = content.get("events") if isinstance(content, dict) else None
    if not isinstance(batch, list) or len(batch) > MAX_BATCH:
        return None
    events, acked = [], []
    for raw in batch:
        try:
            events.append(eventlog.from_agent(raw, node=node))
        except ValidationError as exc:
            # Acknowledged all the same: sending it again would not make
            # it valid, and it must not block the events behind it.
            log.warning("dropped an event from %s: %s", node, exc)
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            acked.append(raw["id"])
    await eventlog.store(events)
    return acked


async def _admit(request: web.Request) -> str | web.Response:
    """The node this connection speaks for, or the refusal."""
    peer = tls.peer_from_transport(request.transport)
    if peer is None or peer.role != tls.ROLE_AGENT:
        return _refuse(403, f"{peer or 'this certificate'} is not a node agent's")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _refuse(401, "a signed token is required")
    try:
        claims = signing.verify(cluster_secret(), PURPOSE, token.strip())
    except signing.BadSignature as exc:
        return _refuse(401, f"token refused: {exc}")
    if claims.get("node") != peer.name:
        return _refuse(403, f"the token is for node {claims.get('node')!r}, the certificate "
                            f"for {peer.name!r}")
    try:
        first_use = await tokens.spend(store.etcd(), store.keys(), PURPOSE, claims.get("jti"),
                                       claims["exp"])
    except EtcdUnavailable:
        # Can't tell a first use from a second: the agent keeps its events
        # on disk and comes back with a new token.
        return _refuse(503, "etcd is unavailable; try again")
    if not first_use:
        return _refuse(403, "the token was used already")
    return peer.name


class AgentsListener:
    """The aiohttp server on the agents' address, for one portal process."""

    def __init__(self, address: str, server_tls: tls.ServerTls):
        self.host, self.port = tlslistener.host_and_port(address)
        self._tls = server_tls
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    async def events(self, request: web.Request) -> web.StreamResponse:
        node = await _admit(request)
        if isinstance(node, web.Response):
            return node
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30)
        await ws.prepare(request)
        self._sockets.add(ws)
        metrics.websocket_accepted(SOCKET_KIND)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    break
                try:
                    content = json.loads(message.data)
                except ValueError:
                    content = None
                acked = await take_batch(content, node)
                if acked is None:
                    await ws.close(code=CLOSE_BAD_MESSAGE, message=b"not a batch of events")
                    break
                await ws.send_json({"ack": acked})
        finally:
            self._sockets.discard(ws)
            metrics.websocket_ended(SOCKET_KIND)
        return ws

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_get(PATH, self.events)
        self._runner, self.port = await tlslistener.serve(app, self.host, self.port,
                                                          self._tls.listening)
        log.info("taking node agents' events on %s:%d (TLS, agents' certificates only)",
                 self.host, self.port)

    async def stop(self) -> None:
        # 1012: restarting. Agents keep their events on disk and come back;
        # without this the server would wait for their idle sockets to end.
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1012, message=b"portal restarting"), 2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def listener() -> AgentsListener:
    return AgentsListener(settings.PORTAL_AGENTS_ADDRESS,
                          tls.ServerTls(tls.portal(settings.CLOUD.pki_dir)))
