"""The event log: agents' events reach the portal over an authenticated
websocket (TLS with an agent's certificate, and a token good once), are kept
on the node's disk while the portal is down and sent later, none lost and
none twice; the API lists them newest first, filtered by type and limited,
as Shaken Fist's client asks. A token is good once whichever portal process
sees it, and the pages' listener takes no agents' events.

Who may open the agents' socket, and what it does with a batch, is tried
in process: tests/fast/test_agent_events_socket.py."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
import uuid as uuidlib

import libvirt
import pytest
import websockets

from cloudstate import signing, tls
from tests.support.cloud import Cloud, free_port, run_async, wait_for
from tests.support.consoles import SecondPortal

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
    return f"wss://{cloud.agents_address}/ws/agent/events/"


def as_agent(cloud: Cloud) -> ssl.SSLContext:
    """What this cloud's own agent presents."""
    return tls.client_context(tls.agent(cloud.pki_dir, cloud.node))


def token_for(cloud: Cloud) -> str:
    secret = cloud.env["SFCLOUD_CLUSTER_SECRET"].encode()
    return signing.sign(secret, "agent-events",
                        {"node": cloud.node, "jti": secrets.token_urlsafe(16)}, 60)


async def exchange(cloud: Cloud, token: str, message: dict, url: str | None = None) -> dict:
    async with websockets.connect(url or agent_socket_url(cloud),
                                  additional_headers={"Authorization": f"Bearer {token}"},
                                  ssl=as_agent(cloud), open_timeout=10) as connection:
        await connection.send(json.dumps(message))
        return json.loads(await asyncio.wait_for(connection.recv(), 10))


def probe_event(cloud: Cloud) -> dict:
    return {"id": str(uuidlib.uuid4()), "kind": "node", "uuid": cloud.node, "type": "status",
            "timestamp": time.time(), "message": f"probe {uuidlib.uuid4()}", "duration": None,
            "extra": None}


def refused_status(cloud: Cloud, token: str, url: str | None = None) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        run_async(exchange(cloud, token, {"events": [probe_event(cloud)]}, url))
    return refused.value.response.status_code


def test_an_event_token_is_good_once_in_any_portal_process(cloud: Cloud) -> None:
    token = token_for(cloud)
    first = probe_event(cloud)
    assert run_async(exchange(cloud, token, {"events": [first]}))["ack"] == [first["id"]]
    # Seen on the wire and sent again, within its lifetime: refused.
    assert refused_status(cloud, token) == 403
    assert "the token was used already" in cloud.log_text("portal")

    # Also by another portal process: the spent ids are in etcd, not in one process.
    other_port = free_port()
    second = SecondPortal(cloud, SFCLOUD_PORTAL_AGENTS_ADDRESS=f"127.0.0.1:{other_port}")
    try:
        elsewhere = f"wss://127.0.0.1:{other_port}/ws/agent/events/"
        assert refused_status(cloud, token, url=elsewhere) == 403
        fresh = token_for(cloud)
        event = probe_event(cloud)
        reply = run_async(exchange(cloud, fresh, {"events": [event]}, url=elsewhere))
        assert reply["ack"] == [event["id"]]
        assert refused_status(cloud, fresh) == 403  # and back at the first one
    finally:
        second.stop()


def test_the_pages_listener_takes_no_agents_events(cloud: Cloud) -> None:
    with pytest.raises(websockets.InvalidStatus):
        run_async(_plain(f"ws://{cloud.address}/ws/agent/events/", token_for(cloud)))


async def _plain(url: str, token: str) -> None:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  open_timeout=10):
        pass
