"""Where a new machine joins the cloud: the portal's third listener, on
``SFCLOUD_PORTAL_JOIN_ADDRESS`` (default: the agents' address's host, port 13003).

TLS with the portal's certificate, like the agents' listener, but without a
client certificate: the machine has none yet. It trusts this server by the
CA's SHA-256 the Nodes page printed in its join command (``GET
/join/ca.crt``, then everything else verified against that CA; see
deploy.joinclient), and proves itself with its join token:

- ``POST /join`` ``{"token", "name", "address", "host_key"}``: the token is used
  up (portal.cloud.jointokens.redeem); the answer carries the deploy's SSH
  public key, for the machine's root to let the deploy machine in;
- ``GET /join/progress`` (``Authorization: Bearer <token>``): how the deploy
  machine's join of it goes (pending, joining, joined, failed and why);
- ``GET /join/sfcloud-join.py``: that machine's half (deploy/joinclient.py),
  for a bare machine, whose command checks its SHA-256 before running it.

Why not the pages' server: that one is plain HTTP behind whatever proxy the
operator chose, so a pin of the cloud's CA would mean nothing there. Why not
the agents' listener: it lets nothing without a cloud certificate past the
handshake, and should stay so.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from django.conf import settings

from cloudstate import tls
from cloudstate.etcd import EtcdUnavailable
from cloudstate.validation import ValidationError
from portal import tlslistener
from portal.cloud import jointokens
from portal.cloud.errors import CloudError

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
ETCD_DOWN = "the cloud's state store (etcd) is not reachable right now; try again"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


async def _answer(work: Any) -> web.Response:
    """Run a service call; its refusals as 4xx naming the problem."""
    try:
        return web.json_response(await work)
    except ValidationError as exc:
        return _error(400, str(exc))
    except CloudError as exc:
        if exc.status >= 500:
            raise
        return _error(exc.status, exc.message)
    except EtcdUnavailable:
        return _error(503, ETCD_DOWN)


async def ca_certificate(request: web.Request) -> web.Response:
    """The CA, in PEM: public; the machine checks it against its pin."""
    pem = (settings.CLOUD.pki_dir / tls.CA_CERT).read_bytes()
    return web.Response(body=pem, content_type="application/x-pem-file")


async def join_script(request: web.Request) -> web.Response:
    """The machine's half of the join, for a bare machine: public (it holds
    no secret), and checked there by the SHA-256 its command carries."""
    return web.Response(body=jointokens.join_script(), content_type="text/x-python")


async def join(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")

    async def redeemed() -> dict[str, Any]:
        record, deploy_key = await jointokens.redeem(body.get("token"), body,
                                                     peer=request.remote)
        log.info("join token %s used by %s (%s)", record.id, record.node, record.address)
        return {"node": record.node, "address": record.address, "etcd": record.etcd,
                "deploy_ssh_key": deploy_key, "state": record.join_state}

    return await _answer(redeemed())


async def progress(request: web.Request) -> web.Response:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "give the join token: Authorization: Bearer <token>")

    async def found() -> dict[str, Any]:
        record = await jointokens.progress(token.strip())
        return {"node": record.node, "state": record.join_state, "message": record.message}

    return await _answer(found())


class JoinListener:
    """The aiohttp server on the join address, for one portal process."""

    def __init__(self, address: str, server_tls: tls.ServerTls):
        self.host, self.port = tlslistener.host_and_port(address)
        self._tls = server_tls
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/join/ca.crt", ca_certificate)
        app.router.add_get(f"/join/{jointokens.JOIN_SCRIPT_NAME}", join_script)
        app.router.add_post("/join", join)
        app.router.add_get("/join/progress", progress)
        self._runner, self.port = await tlslistener.serve(app, self.host, self.port,
                                                          self._tls.listening)
        log.info("taking joins on %s:%d (TLS, a join token each)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def listener() -> JoinListener:
    credentials = tls.portal(settings.CLOUD.pki_dir)
    return JoinListener(settings.PORTAL_JOIN_ADDRESS,
                        tls.ServerTls(credentials, build=tls.open_server_context))
