"""Nodes through the API: maintenance keeps new instances off a node; a node
whose lease ended shows offline and its instances unreachable; a node that
is gone is forgotten only when it holds nothing."""

from __future__ import annotations

import json

from cloudstate.etcd import Etcd
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal, Person

BODY = {"name": "placed", "cpus": 1, "memory": 256, "disk": [{"size": 1, "base": "demo"}]}


def _lose(portal: InProcessPortal, agent: FakeAgent) -> None:
    """The node's lease ended: its agent stopped renewing it."""
    async def drop(etcd: Etcd) -> None:
        await etcd.delete(agent.keys.node_alive(agent.node))

    portal.etcd_call(drop)


def test_maintenance_keeps_new_instances_off_and_the_507_says_why(
        portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> None:
    api = portal.api()
    second = FakeAgent(portal, node="other-node").register(network_node=False)
    on = api.post(f"/nodes/{agent.node}/maintenance", {"maintenance": True})
    assert on.status_code == 200 and on.json()["maintenance"] is True
    made = api.post("/instances", {**BODY, "name": "a"})
    assert made.status_code == 200 and made.json()["node"] == second.node
    refused = api.post("/instances", {**BODY, "name": "b", "placed_on": agent.node})
    assert refused.status_code == 507
    assert f"{agent.node} is in maintenance" in refused.json()["error"]
    off = api.post(f"/nodes/{agent.node}/maintenance", {"maintenance": False})
    assert off.json()["maintenance"] is False
    assert api.get(f"/nodes/{agent.node}").json()["maintenance"] is False
    bad = api.post(f"/nodes/{agent.node}/maintenance", {"maintenance": "yes"})
    assert bad.status_code == 400 and "maintenance" in bad.json()["error"]
    assert api.post("/nodes/nowhere/maintenance", {"maintenance": True}).status_code == 404


def test_an_offline_nodes_instances_are_unreachable_not_on(
        portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> None:
    api = portal.api()
    uuid = api.post("/instances", BODY).json()["uuid"]
    agent.report_instance(uuid, state="created", power_state="on")
    assert api.get(f"/instances/{uuid}").json()["power_state"] == "on"
    _lose(portal, agent)
    assert api.get(f"/nodes/{agent.node}").json()["state"] == "offline"
    assert api.get(f"/instances/{uuid}").json()["power_state"] == "unreachable"
    listed = api.get("/instances").json()
    assert [i["power_state"] for i in listed if i["uuid"] == uuid] == ["unreachable"]
    refused = api.post(f"/instances/{uuid}/poweroff")
    assert refused.status_code >= 400 and "unreachable" in refused.json()["error"]
    # Nothing new goes there.
    placed = api.post("/instances", {**BODY, "name": "later"})
    assert placed.status_code == 507 and f"{agent.node} is offline" in placed.json()["error"]


def test_a_node_is_forgotten_only_once_offline_and_empty(
        portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> None:
    api = portal.api()
    online = api.delete(f"/nodes/{agent.node}")
    assert online.status_code == 409 and "online" in online.json()["error"]
    uuid = api.post("/instances", BODY).json()["uuid"]
    _lose(portal, agent)
    holding = api.delete(f"/nodes/{agent.node}")
    assert holding.status_code == 409 and "still hosts 1 instance" in holding.json()["error"]
    api.delete(f"/instances/{uuid}")
    agent.tear_down_instance(uuid)
    gone = api.delete(f"/nodes/{agent.node}")
    assert gone.status_code == 200 and gone.json()["state"] == "deleted"
    assert api.get(f"/nodes/{agent.node}").status_code == 404
    assert agent.node not in [n["name"] for n in api.get("/nodes").json()]


def test_the_nodes_page_starts_and_ends_maintenance(
        portal: InProcessPortal, agent: FakeAgent, admin: Person) -> None:
    browser = admin.browser
    page = browser.get(f"/nodes/{agent.node}/")
    assert page.status_code == 200 and "Start maintenance" in page.text
    started = browser.post(f"/nodes/{agent.node}/maintenance/", {"maintenance": "on"})
    assert started.status_code == 302
    assert portal.api().get(f"/nodes/{agent.node}").json()["maintenance"] is True
    shown = browser.get(f"/nodes/{agent.node}/")
    assert "End maintenance" in shown.text and "none go here" in shown.text
    assert "maintenance" in browser.get("/nodes/").text
    browser.post(f"/nodes/{agent.node}/maintenance/", {"maintenance": "off"})
    assert portal.api().get(f"/nodes/{agent.node}").json()["maintenance"] is False


def test_an_unreadable_node_record_leaves_the_other_nodes_listed_not_a_500(
        portal: InProcessPortal, agent: FakeAgent, admin: Person, demo_image: str) -> None:
    """A node record that can't be shown (a field missing or of the wrong type,
    as a record of another release or one written by hand may be) is left out:
    the list, the page and placement still work for the others."""
    good = agent.info().to_dict()
    broken = {
        "half": {"name": "half", "ip": "10.0.0.9"},
        "nulls": {**good, "name": "nulls", "firmware": None},
        "texts": {**good, "name": "texts", "vcpus": "many"},
        "other": {**good, "name": "not-other"},
    }

    async def write(etcd: Etcd) -> None:
        for name, record in broken.items():
            await etcd.put(portal.keys.node(name), json.dumps(record).encode())
            await etcd.put(portal.keys.node_alive(name), b"1")
        await etcd.put(portal.keys.node("garbage"), b"{not json")

    portal.etcd_call(write)
    api = portal.api()
    listed = api.get("/nodes")
    assert listed.status_code == 200 and [n["name"] for n in listed.json()] == [agent.node]
    assert api.get("/nodes/half").status_code == 404
    assert api.get(f"/nodes/{agent.node}").status_code == 200
    page = admin.browser.get("/nodes/")
    assert page.status_code == 200 and agent.node in page.text
    made = api.post("/instances", BODY)
    assert made.status_code == 200 and made.json()["node"] == agent.node
