"""The agent server lets through only fresh grants for this node and this exact
request, each once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cloudstate import signing
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from nodeagent.server import AgentServer

SECRET = b"a-test-cluster-secret-of-enough-length"


@pytest.fixture
async def server() -> AsyncIterator[AgentServer]:
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET)

    async def echo(request: web.Request, claims: dict[str, Any]) -> web.Response:
        return web.json_response({"uuid": request.match_info["uuid"], "extra": claims.get("x")})

    running.add_route("GET", "/things/{uuid}", echo)
    await running.start()
    yield running
    await running.stop()


def _grant(path: str = "/things/abc", *, node: str = "node-a", method: str = "GET",
           purpose: str = AGENT_GRANT_PURPOSE, ttl: float = 30, secret: bytes = SECRET) -> str:
    return signing.sign(secret, purpose,
                        grant_claims(node=node, method=method, path=path, x=1), ttl)


async def _get(server: AgentServer, token: str | None, path: str = "/things/abc") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{server.port}{path}", headers=headers) as response:
        return response.status


async def test_a_valid_grant_is_served_once(server: AgentServer) -> None:
    token = _grant()
    assert await _get(server, token) == 200
    assert await _get(server, token) == 403  # replayed


@pytest.mark.parametrize("grant, status", [
    (None, 401),
    ({"secret": b"another-secret-that-is-long-enough-too"}, 401),
    ({"purpose": "something-else"}, 401),
    ({"ttl": -1}, 401),
    ({"node": "node-b"}, 403),
    ({"path": "/things/other"}, 403),
    ({"method": "DELETE"}, 403),
])
async def test_refused_grants(server: AgentServer, grant: dict | None, status: int) -> None:
    token = None if grant is None else _grant(**grant)
    assert await _get(server, token) == status


async def test_picks_a_free_port_when_asked_for_zero(server: AgentServer) -> None:
    assert server.port > 0
