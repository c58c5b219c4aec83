"""The agent server lets through only fresh grants for this node and this exact
request, each once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cloudstate import signing
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from nodeagent.server import AgentServer

SECRET = b"a-test-cluster-secret-of-enough-length"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AgentServer]:
    running = await _started(tmp_path / "used-grants")
    yield running
    await running.stop()


async def _started(replay_file: Path) -> AgentServer:
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET,
                          replay_file=replay_file)

    async def echo(request: web.Request, claims: dict[str, Any]) -> web.Response:
        return web.json_response({"uuid": request.match_info["uuid"], "extra": claims.get("x")})

    running.add_route("GET", "/things/{uuid}", echo)
    await running.start()
    return running


def _grant(path: str = "/things/abc", *, node: str = "node-a", method: str = "GET",
           purpose: str = AGENT_GRANT_PURPOSE, ttl: float = 30, secret: bytes = SECRET,
           query: dict[str, str] | None = None) -> str:
    return signing.sign(secret, purpose,
                        grant_claims(node=node, method=method, path=path, query=query, x=1),
                        ttl)


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


@pytest.mark.parametrize("granted, asked, status", [
    ({"length": "10"}, "?length=10", 200),
    ({"length": "10", "from": "a b"}, "?from=a%20b&length=10", 200),  # order, encoding
    ({"length": "10"}, "?length=100000", 403),
    ({"length": "10"}, "", 403),
    ({}, "?length=10", 403),
    ({"length": "10"}, "?length=10&extra=1", 403),
])
async def test_the_grant_binds_the_query_string(server: AgentServer, granted: dict,
                                                asked: str, status: int) -> None:
    token = _grant(query=granted)
    assert await _get(server, token, "/things/abc" + asked) == status


async def test_a_used_grant_stays_used_across_a_restart(tmp_path: Path) -> None:
    replay_file = tmp_path / "used-grants"
    first = await _started(replay_file)
    token = _grant()
    assert await _get(first, token) == 200
    await first.stop()
    again = await _started(replay_file)  # the agent restarted
    try:
        assert await _get(again, token) == 403
        assert await _get(again, _grant()) == 200
    finally:
        await again.stop()


async def test_picks_a_free_port_when_asked_for_zero(server: AgentServer) -> None:
    assert server.port > 0
