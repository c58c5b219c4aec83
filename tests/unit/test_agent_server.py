"""The agent server speaks TLS only, to the portal's and other agents'
certificates from the cloud's CA, and lets through only fresh grants for this
node and this exact request (query included), each once, even across a
restart. A renewed certificate is served at the next connection, without a
restart. Its token routes (/metrics) also let a monitor's certificate in,
with the token; a monitor gets nothing else, even with a valid grant."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from deploy.pki import CertificateAuthority
from nodeagent.server import AgentServer
from tests.support.pki import issue_monitor, make_pki

SECRET = b"a-test-cluster-secret-of-enough-length"
TOKEN = "a-metrics-token-for-this-test"  # noqa: S105 - a test's own


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_pki(tmp_path / "pki", agents=["node-a", "node-b"], etcd=["e1"])
    return tmp_path / "pki"


@pytest.fixture
async def server(pki: Path, tmp_path: Path) -> AsyncIterator[AgentServer]:
    running = await _started(pki, tmp_path / "used-grants")
    yield running
    await running.stop()


async def _figures(_request: web.Request) -> web.Response:
    return web.Response(text="figures")


async def _started(pki: Path, replay_file: Path) -> AgentServer:
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET,
                          server_tls=tls.ServerTls(tls.agent(pki, "node-a")),
                          replay_file=replay_file)

    async def echo(request: web.Request, claims: dict[str, Any]) -> web.Response:
        return web.json_response({"uuid": request.match_info["uuid"], "extra": claims.get("x")})

    running.add_route("GET", "/things/{uuid}", echo)
    running.add_token_route("GET", "/metrics", TOKEN, _figures, "metrics are off")
    await running.start()
    return running


def _grant(path: str = "/things/abc", *, node: str = "node-a", method: str = "GET",
           purpose: str = AGENT_GRANT_PURPOSE, ttl: float = 30, secret: bytes = SECRET,
           query: dict[str, str] | None = None) -> str:
    return signing.sign(secret, purpose,
                        grant_claims(node=node, method=method, path=path, query=query, x=1),
                        ttl)


async def _get(server: AgentServer, token: str | None, path: str = "/things/abc", *,
               context: ssl.SSLContext) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, \
            http.get(f"https://127.0.0.1:{server.port}{path}", headers=headers,
                     ssl=context) as response:
        return response.status


@pytest.fixture
def portal(pki: Path) -> ssl.SSLContext:
    return tls.client_context(tls.portal(pki))


async def test_a_valid_grant_is_served_once(server: AgentServer,
                                            portal: ssl.SSLContext) -> None:
    token = _grant()
    assert await _get(server, token, context=portal) == 200
    assert await _get(server, token, context=portal) == 403  # replayed


async def test_another_agent_may_call_but_an_etcd_member_may_not(
        server: AgentServer, pki: Path) -> None:
    agent_b = tls.client_context(tls.agent(pki, "node-b"))
    assert await _get(server, _grant(), context=agent_b) == 200
    member = tls.client_context(tls.etcd_member(pki, "e1"))
    assert await _get(server, _grant(), context=member) == 403


async def test_no_certificate_or_another_cas_is_refused_in_the_handshake(
        server: AgentServer, pki: Path, tmp_path: Path) -> None:
    # The cloud's CA to check the server, but no certificate of our own.
    bare = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with pytest.raises(aiohttp.ClientError):
        await _get(server, _grant(), context=bare)
    # A certificate that claims to be the portal, from a CA of someone's own.
    make_pki(tmp_path / "forged")
    forged = tls.client_context(tls.Credentials(pki / "ca.crt", tmp_path / "forged/portal.crt",
                                                tmp_path / "forged/portal.key"))
    with pytest.raises(aiohttp.ClientError):
        await _get(server, _grant(), context=forged)
    # Plain HTTP gets nowhere either.
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            await http.get(f"http://127.0.0.1:{server.port}/things/abc")


async def test_a_renewed_certificate_is_served_without_a_restart(
        server: AgentServer, pki: Path, portal: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "RECHECK_INTERVAL", 0.0)

    async def served_serial() -> int:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=portal)
        try:
            cert = writer.get_extra_info("ssl_object").getpeercert()
            return int(cert["serialNumber"], 16)
        finally:
            writer.close()

    before = await served_serial()
    renewed = CertificateAuthority(pki).renew(within_days=0, everything=True)
    assert any(issued.path.name == "agent-node-a.crt" for issued in renewed)
    after = await served_serial()
    assert after != before
    # And requests go on being served, with the same key behind it.
    assert await _get(server, _grant(), context=portal) == 200


@pytest.mark.parametrize("grant, status", [
    (None, 401),
    ({"secret": b"another-secret-that-is-long-enough-too"}, 401),
    ({"purpose": "something-else"}, 401),
    ({"ttl": -1}, 401),
    ({"node": "node-b"}, 403),
    ({"path": "/things/other"}, 403),
    ({"method": "DELETE"}, 403),
])
async def test_refused_grants(server: AgentServer, portal: ssl.SSLContext,
                              grant: dict | None, status: int) -> None:
    token = None if grant is None else _grant(**grant)
    assert await _get(server, token, context=portal) == status


@pytest.mark.parametrize("granted, asked, status", [
    ({"length": "10"}, "?length=10", 200),
    ({"length": "10", "from": "a b"}, "?from=a%20b&length=10", 200),  # order, encoding
    ({"length": "10"}, "?length=100000", 403),
    ({"length": "10"}, "", 403),
    ({}, "?length=10", 403),
    ({"length": "10"}, "?length=10&extra=1", 403),
])
async def test_the_grant_binds_the_query_string(server: AgentServer, portal: ssl.SSLContext,
                                                granted: dict, asked: str, status: int) -> None:
    token = _grant(query=granted)
    assert await _get(server, token, "/things/abc" + asked, context=portal) == status


async def test_a_used_grant_stays_used_across_a_restart(pki: Path, tmp_path: Path,
                                                        portal: ssl.SSLContext) -> None:
    replay_file = tmp_path / "used-grants"
    first = await _started(pki, replay_file)
    token = _grant()
    assert await _get(first, token, context=portal) == 200
    await first.stop()
    again = await _started(pki, replay_file)  # the agent restarted
    try:
        assert await _get(again, token, context=portal) == 403
        assert await _get(again, _grant(), context=portal) == 200
    finally:
        await again.stop()


async def test_picks_a_free_port_when_asked_for_zero(server: AgentServer) -> None:
    assert server.port > 0


# --- token routes: /metrics for Prometheus -----------------------------------------------


async def test_a_monitor_reads_token_routes_with_the_token_and_nothing_else(
        server: AgentServer, pki: Path, portal: ssl.SSLContext) -> None:
    monitor = tls.client_context(issue_monitor(pki))
    assert await _get(server, TOKEN, "/metrics", context=monitor) == 200
    assert await _get(server, None, "/metrics", context=monitor) == 401
    assert await _get(server, "not-the-token", "/metrics", context=monitor) == 401
    # A grant route, even with a grant for exactly this request: not a monitor's door.
    assert await _get(server, _grant(), context=monitor) == 403
    # The cloud's parts keep both kinds of door.
    assert await _get(server, TOKEN, "/metrics", context=portal) == 200
    assert await _get(server, _grant(), context=portal) == 200


async def test_token_routes_refuse_other_roles_and_strangers(
        server: AgentServer, pki: Path) -> None:
    member = tls.client_context(tls.etcd_member(pki, "e1"))
    assert await _get(server, TOKEN, "/metrics", context=member) == 403
    bare = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with pytest.raises(aiohttp.ClientError):
        await _get(server, TOKEN, "/metrics", context=bare)


async def test_token_routes_answer_404_when_no_token_is_set(pki: Path, tmp_path: Path) -> None:
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET,
                          server_tls=tls.ServerTls(tls.agent(pki, "node-a")))

    running.add_token_route("GET", "/metrics", None, _figures, "metrics are off")
    await running.start()
    try:
        monitor = tls.client_context(issue_monitor(pki))
        assert await _get(running, "anything", "/metrics", context=monitor) == 404
    finally:
        await running.stop()
