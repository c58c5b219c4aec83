"""The event log: agents' events reach the portal over an authenticated
websocket, are kept on the node's disk while the portal is down and sent
later, none lost and none twice; the API lists them newest first, filtered
by type and limited, as Shaken Fist's client asks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid as uuidlib

import libvirt
import pytest
import websockets

from cloudstate import signing
from tests.support.cloud import Cloud, run_async, wait_for

pytestmark = pytest.mark.integration


def create(cloud: Cloud, name: str) -> str:
    response = cloud.api().post("/instances", {
        "name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}]})
    assert response.status_code == 200, response.text
    return response.json()["uuid"]


def events(cloud: Cloud, uuid: str, **body: object) -> list[dict]:
    response = cloud.api().get(f"/instances/{uuid}/events", body or None)
    assert response.status_code == 200, response.text
    return response.json()


def observed_power(cloud: Cloud, uuid: str) -> str | None:
    kv = cloud.etcd_call(lambda etcd: etcd.get(cloud.keys.observed_instance(uuid)))
    return None if kv is None else json.loads(kv.value)["power_state"]


def test_events_wait_on_the_node_while_the_portal_is_down(cloud: Cloud) -> None:
    uuid = create(cloud, "eventvm")
    cloud.wait_console(uuid, "SFCLOUD-READY")
    wait_for(lambda: any(e["message"] == "state is now created" for e in events(cloud, uuid)),
             30, "the agent's created event")
    wait_for(lambda: not cloud.event_spool(), 30, "the spool to empty")

    cloud.stop_portal()
    try:
        # Things happen while nobody listens: the guest is paused and resumed
        # from outside sfcloud, and the agent notices through libvirt.
        conn = libvirt.open("qemu:///system")
        try:
            domain = conn.lookupByUUIDString(uuid)
            domain.suspend()
            wait_for(lambda: observed_power(cloud, uuid) == "paused", 30, "paused seen")
            domain.resume()
            wait_for(lambda: observed_power(cloud, uuid) == "on", 30, "on seen")
        finally:
            conn.close()
        wait_for(lambda: len(cloud.event_spool()) >= 2, 10, "events spooled on the node")
        time.sleep(3)  # the agent keeps retrying meanwhile
        assert len(cloud.event_spool()) >= 2
    finally:
        cloud.start_portal()

    def delivered() -> list[str]:
        return [e["message"] for e in events(cloud, uuid)]

    wait_for(lambda: "power state paused -> on" in delivered(), 60,
             "the spooled events to reach the portal")
    wait_for(lambda: not cloud.event_spool(), 30, "the spool to empty")
    messages = delivered()
    # Each exactly once, and newest first.
    assert messages.count("power state on -> paused") == 1, messages
    assert messages.count("power state paused -> on") == 1, messages
    assert messages.index("power state paused -> on") < messages.index("power state on -> paused")
    found = events(cloud, uuid)
    assert all(e["fqdn"] == cloud.node for e in found if e["message"].startswith("power state"))
    assert [e["timestamp"] for e in found] == sorted((e["timestamp"] for e in found),
                                                     reverse=True)

    # Filtering by type and limiting, as `sf-client instance events -t -l` asks.
    statuses = events(cloud, uuid, event_type="status")
    assert statuses and all(e["type"] == "status" for e in statuses)
    audits = events(cloud, uuid, event_type="audit")
    assert any(e["message"].startswith("created by key system/") for e in audits), audits
    assert len(events(cloud, uuid, limit="2")) == 2
    assert events(cloud, uuid, limit=0) == []
    assert len(events(cloud, uuid, limit=-1)) >= len(statuses) + len(audits)
    bad = cloud.api().get(f"/instances/{uuid}/events", {"limit": "many"})
    assert bad.status_code == 400 and "limit" in bad.json()["error"]
    # A type no event has is nothing to list, not an error (Shaken Fist's client may ask).
    assert events(cloud, uuid, event_type="gossip") == []

    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted", 60,
             "deleted")
    wait_for(lambda: "state is now deleted" in delivered(), 30, "the deleted event")


def agent_socket_url(cloud: Cloud) -> str:
    return f"ws://{cloud.address}/ws/agent/events/"


async def exchange(cloud: Cloud, token: str, message: dict) -> dict:
    async with websockets.connect(agent_socket_url(cloud),
                                  additional_headers={"Authorization": f"Bearer {token}"},
                                  open_timeout=10) as connection:
        await connection.send(json.dumps(message))
        return json.loads(await asyncio.wait_for(connection.recv(), 10))


def test_agent_socket_needs_a_token_signed_with_the_cluster_secret(cloud: Cloud) -> None:
    secret = cloud.env["SFCLOUD_CLUSTER_SECRET"].encode()
    event_uuid = str(uuidlib.uuid4())
    event = {"id": str(uuidlib.uuid4()), "kind": "node", "uuid": cloud.node, "type": "status",
             "timestamp": time.time(), "message": f"probe {event_uuid}", "duration": None,
             "extra": None}

    for token in ("", "garbage", signing.sign(b"x" * 48, "agent-events", {"node": "n"}, 60),
                  signing.sign(secret, "console", {"node": cloud.node}, 60),
                  signing.sign(secret, "agent-events", {"node": cloud.node}, -1)):
        with pytest.raises(websockets.InvalidStatus) as refused:
            run_async(exchange(cloud, token, {"events": [event]}))
        assert refused.value.response.status_code == 403

    token = signing.sign(secret, "agent-events", {"node": "impostor"}, 60)
    malformed = {"id": str(uuidlib.uuid4()), "kind": "spaceship", "uuid": "x",
                 "timestamp": time.time(), "message": "bad"}
    reply = run_async(exchange(cloud, token, {"events": [event, malformed, event]}))
    # Both acknowledged (the malformed one dropped, not retried forever), the
    # duplicate stored once, and the node named by the token, not the event.
    assert set(reply["ack"]) == {event["id"], malformed["id"]}
    found = [e for e in cloud.api().get(f"/nodes/{cloud.node}/events").json()
             if e["message"] == f"probe {event_uuid}"]
    assert len(found) == 1
    assert found[0]["fqdn"] == "impostor"
