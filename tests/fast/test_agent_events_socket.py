"""The agents' event socket (ws/agent/events/): only a token signed with the
cluster secret for that purpose opens it; a batch is acknowledged whole,
malformed events dropped, duplicates stored once, and the node is the
token's, not what the event says.

Events surviving a portal that is down (the real agent spools them) are
tried in tests/integration/test_events.py.
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib

import pytest

from cloudstate import signing
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal, Refused


def exchange(portal: InProcessPortal, token: str, message: dict) -> dict:
    with portal.socket("/ws/agent/events/", origin="",
                       headers={"Authorization": f"Bearer {token}"}) as socket:
        socket.send(json.dumps(message))
        return json.loads(socket.recv(timeout=10))


def test_agent_socket_needs_a_token_signed_with_the_cluster_secret(
        portal: InProcessPortal, agent: FakeAgent) -> None:
    secret = portal.cluster_secret.encode()
    event_uuid = str(uuidlib.uuid4())
    event = {"id": str(uuidlib.uuid4()), "kind": "node", "uuid": agent.node, "type": "status",
             "timestamp": time.time(), "message": f"probe {event_uuid}", "duration": None,
             "extra": None}

    for token in ("", "garbage", signing.sign(b"x" * 48, "agent-events", {"node": "n"}, 60),
                  signing.sign(secret, "console", {"node": agent.node}, 60),
                  signing.sign(secret, "agent-events", {"node": agent.node}, -1)):
        with pytest.raises(Refused):
            exchange(portal, token, {"events": [event]})

    token = signing.sign(secret, "agent-events", {"node": "impostor"}, 60)
    malformed = {"id": str(uuidlib.uuid4()), "kind": "spaceship", "uuid": "x",
                 "timestamp": time.time(), "message": "bad"}
    reply = exchange(portal, token, {"events": [event, malformed, event]})
    # Both acknowledged (the malformed one dropped, not retried forever), the
    # duplicate stored once, and the node named by the token, not the event.
    assert set(reply["ack"]) == {event["id"], malformed["id"]}
    found = [e for e in portal.api().get(f"/nodes/{agent.node}/events").json()
             if e["message"] == f"probe {event_uuid}"]
    assert len(found) == 1
    assert found[0]["fqdn"] == "impostor"
