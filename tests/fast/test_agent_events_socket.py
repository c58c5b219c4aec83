"""The agents' event socket (the portal's second listener, portal.events.agents,
run here on the in-process portal's loop): TLS with an agent's certificate
from the cloud's CA, and a token signed with the cluster secret for that
purpose, naming the certificate's node, good once; a batch is acknowledged
whole, malformed events dropped, duplicates stored once, and the node is the
certificate's and token's, not what the event says.

Events surviving a portal that is down (the real agent spools them), a token
refused by another portal process, and the pages' listener taking no agents'
events are tried in tests/integration/test_events.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from django.conf import settings

from cloudstate import signing, tls
from portal.events import agents
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal
from tests.support.pki import issue_agent, make_pki


@pytest.fixture
def listener(portal: InProcessPortal, agent: FakeAgent) -> Iterator[str]:
    """The portal's agents' listener on a free port (its URL), with the fake
    agent's node holding a certificate."""
    issue_agent(settings.CLOUD.pki_dir, agent.node)
    agents.cluster_secret.cache_clear()  # each test's portal has its own
    running = agents.AgentsListener("127.0.0.1:0",
                                    tls.ServerTls(tls.portal(settings.CLOUD.pki_dir)))
    portal.loop.run(running.start())
    try:
        yield f"wss://127.0.0.1:{running.port}{agents.PATH}"
    finally:
        portal.loop.run(running.stop())
        agents.cluster_secret.cache_clear()


def as_agent(node: str) -> ssl.SSLContext:
    return tls.client_context(tls.agent(settings.CLOUD.pki_dir, node))


def token_for(portal: InProcessPortal, node: str, **claims: object) -> str:
    return signing.sign(portal.cluster_secret.encode(), agents.PURPOSE,
                        {"node": node, "jti": secrets.token_urlsafe(16), **claims}, 60)


def exchange(url: str, token: str, message: dict, context: ssl.SSLContext) -> dict:
    async def talk() -> dict:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      ssl=context, open_timeout=10) as connection:
            await connection.send(json.dumps(message))
            return json.loads(await asyncio.wait_for(connection.recv(), 10))

    return asyncio.run(talk())


def probe_event(node: str) -> dict:
    return {"id": str(uuidlib.uuid4()), "kind": "node", "uuid": node, "type": "status",
            "timestamp": time.time(), "message": f"probe {uuidlib.uuid4()}", "duration": None,
            "extra": None}


def refused_status(url: str, token: str, context: ssl.SSLContext) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        exchange(url, token, {"events": []}, context)
    return refused.value.response.status_code


def test_agent_socket_needs_a_token_signed_with_the_cluster_secret(
        portal: InProcessPortal, agent: FakeAgent, listener: str) -> None:
    secret = portal.cluster_secret.encode()
    node = agent.node
    context = as_agent(node)
    jti = {"jti": secrets.token_urlsafe(16)}
    for token in ("", "garbage",
                  signing.sign(b"x" * 48, agents.PURPOSE, {"node": node, **jti}, 60),
                  signing.sign(secret, "console", {"node": node, **jti}, 60),
                  signing.sign(secret, agents.PURPOSE, {"node": node, **jti}, -1)):
        assert refused_status(listener, token, context) == 401
    # A token without an id, or naming another node than the certificate does.
    assert refused_status(listener, signing.sign(secret, agents.PURPOSE, {"node": node}, 60),
                          context) == 403
    assert refused_status(listener, token_for(portal, "impostor"), context) == 403

    event = probe_event(node)
    malformed = {"id": str(uuidlib.uuid4()), "kind": "spaceship", "uuid": "x",
                 "timestamp": time.time(), "message": "bad"}
    reply = exchange(listener, token_for(portal, node), {"events": [event, malformed, event]},
                     context)
    # Both acknowledged (the malformed one dropped, not retried forever), the
    # duplicate stored once, and the node named by the certificate.
    assert set(reply["ack"]) == {event["id"], malformed["id"]}
    found = [e for e in portal.api().get(f"/nodes/{node}/events").json()
             if e["message"] == event["message"]]
    assert len(found) == 1
    assert found[0]["fqdn"] == node


def test_an_event_token_is_good_once(portal: InProcessPortal, agent: FakeAgent,
                                     listener: str) -> None:
    context = as_agent(agent.node)
    token_id = secrets.token_urlsafe(16)
    token = token_for(portal, agent.node, jti=token_id)
    first = probe_event(agent.node)
    assert exchange(listener, token, {"events": [first]}, context)["ack"] == [first["id"]]
    # Seen on the wire and sent again, within its lifetime: refused.
    assert refused_status(listener, token, context) == 403
    # The id is spent in etcd (where every portal process looks), until the token expires.
    assert portal.keys.spent_token(agents.PURPOSE, token_id) in portal.etcd_keys()


def test_agent_socket_needs_an_agents_certificate(portal: InProcessPortal, agent: FakeAgent,
                                                  listener: str, tmp_path: Path) -> None:
    token = token_for(portal, agent.node)
    # The portal's own certificate is the cloud's, but not an agent's.
    assert refused_status(listener, token,
                          tls.client_context(tls.portal(settings.CLOUD.pki_dir))) == 403
    # No certificate at all: the handshake fails before any HTTP.
    bare = ssl.create_default_context(cafile=str(settings.CLOUD.pki_dir / "ca.crt"))
    with pytest.raises((ssl.SSLError, OSError, websockets.InvalidHandshake)):
        exchange(listener, token, {"events": []}, bare)
    # An agent's certificate for that node, from a CA of someone's own.
    make_pki(tmp_path / "forged", agents=[agent.node], portal=False)
    forged = tls.client_context(tls.Credentials(
        settings.CLOUD.pki_dir / "ca.crt", tmp_path / f"forged/agent-{agent.node}.crt",
        tmp_path / f"forged/agent-{agent.node}.key"))
    with pytest.raises((ssl.SSLError, OSError, websockets.InvalidHandshake)):
        exchange(listener, token, {"events": []}, forged)
