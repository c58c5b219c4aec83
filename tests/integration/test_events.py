"""The event log: agents' events reach the portal over an authenticated
websocket, are kept on the node's disk while the portal is down and sent
later, none lost and none twice; the API lists them newest first, filtered
by type and limited, as Shaken Fist's client asks.

Who may open the agents' socket, and what it does with a batch, is tried
in process: tests/fast/test_agent_events_socket.py."""

from __future__ import annotations

import json
import time

import libvirt
import pytest

from tests.support.cloud import Cloud, wait_for

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
