"""Networks through the API: lookups, bad input that gets a clear 4xx and
leaves nothing behind in etcd, full networks, and what other namespaces may
see. The network node is the fake agent: it reports networks built and
removed, and builds nothing.

What the real network node does (its namespace, dnsmasq and events) is
tried in tests/integration/networks/test_network_api.py.
"""

from __future__ import annotations

import pytest

from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal

# Key families a failed request must not have touched.
RESERVATIONS = ("networks/", "names/networks/", "ipam/", "vxlan/", "macs/", "interfaces/",
                "fences/", "instances/", "names/instances/")


def reservation_keys(portal: InProcessPortal) -> list[str]:
    return sorted(key for family in RESERVATIONS for key in portal.etcd_keys(family))


def create_network(portal: InProcessPortal, agent: FakeAgent, name: str, netblock: str,
                   **extra: object) -> dict:
    response = portal.api().post("/networks", {"name": name, "netblock": netblock, **extra})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    agent.report_network(uuid)
    shown = portal.api().get(f"/networks/{uuid}").json()
    assert shown["state"] == "created", shown
    return shown


def delete_networks(portal: InProcessPortal, agent: FakeAgent, *uuids: str) -> None:
    for uuid in uuids:
        response = portal.api().delete(f"/networks/{uuid}")
        assert response.status_code == 200, response.text
        agent.report_network(uuid, state="deleted")
        assert portal.api().get(f"/networks/{uuid}").json()["state"] == "deleted"


@pytest.fixture
def small_network(portal: InProcessPortal, agent: FakeAgent) -> dict:
    return create_network(portal, agent, "small", "10.80.4.0/29", provide_nat=False)


@pytest.mark.parametrize("body,status,expected", [
    ({"name": "bad", "netblock": "10.0.0.0"}, 400, "not an address range"),
    ({"name": "bad", "netblock": "10.0.0.300/24"}, 400, "is not an IPv4 address"),
    ({"name": "bad", "netblock": "banana/24"}, 400, "is not an IPv4 address"),
    ({"name": "bad", "netblock": "10.0.0.7/24"}, 400,
     "host bits set: the range that address is in is 10.0.0.0/24"),
    ({"name": "bad", "netblock": "10.0.0.0/30"}, 400, "smaller than a /29"),
    ({"name": "bad", "netblock": "10.0.0.0/32"}, 400, "smaller than a /29"),
    ({"name": "bad", "netblock": "10.0.0.0/4"}, 400, "larger than a /8"),
    ({"name": "bad", "netblock": "fd00::/64"}, 400, "IPv4 only"),
    ({"name": "bad", "netblock": "127.0.0.0/24"}, 400, "loopback"),
    ({"name": "bad", "netblock": "169.254.0.0/24"}, 400, "link-local"),
    ({"name": "bad", "netblock": "192.0.2.0/29"}, 400, "floating network"),
    ({"name": "bad", "netblock": 42}, 400, "netblock"),
    ({"netblock": "10.0.0.0/24"}, 400, "not a valid network name"),
    ({"name": "no spaces", "netblock": "10.0.0.0/24"}, 400, "not a valid network name"),
    ({"name": "floating", "netblock": "10.0.0.0/24"}, 400, "reserved"),
    ({"name": "bad", "netblock": "10.0.0.0/24", "provide_dhcp": "yes"}, 400, "provide_dhcp"),
])
def test_bad_network_create(portal: InProcessPortal, agent: FakeAgent, body: dict, status: int,
                            expected: str) -> None:
    before = reservation_keys(portal)
    response = portal.api().post("/networks", body)
    assert response.status_code == status, response.text
    assert response.json()["status"] == status
    assert expected in response.json()["error"]
    assert reservation_keys(portal) == before


def test_duplicate_name_is_409_and_unknown_is_404(portal: InProcessPortal,
                                                  agent: FakeAgent) -> None:
    network = create_network(portal, agent, "twin-net", "10.80.2.0/24", provide_nat=False)
    assert network["floating_gateway"] is None  # no NAT asked for: no floating address used
    before = reservation_keys(portal)
    response = portal.api().post("/networks", {"name": "twin-net", "netblock": "10.80.3.0/24"})
    assert response.status_code == 409
    assert "already exists" in response.json()["error"]
    assert reservation_keys(portal) == before
    for path in ("/networks/nosuch", "/networks/3a9f1b0e-5f5e-4bd4-9b53-3c1f2f0f1f1f",
                 "/networks/nosuch/interfaces", "/interfaces/nosuch",
                 "/interfaces/3a9f1b0e-5f5e-4bd4-9b53-3c1f2f0f1f1f"):
        response = portal.api().get(path)
        assert response.status_code == 404, path
        assert "not found" in response.json()["error"]
    delete_networks(portal, agent, network["uuid"])


def test_the_floating_network_cannot_be_deleted(portal: InProcessPortal,
                                                agent: FakeAgent) -> None:
    api = portal.api()
    shown = api.get("/networks/floating").json()
    assert shown["netblock"] == "192.0.2.0/28"
    response = api.delete("/networks/floating")
    assert response.status_code == 403
    assert "can't be deleted" in response.json()["error"]
    response = api.post("/instances", {
        "name": "onfloating", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
        "network": [{"network_uuid": "floating"}],
    })
    assert response.status_code == 400
    assert "floating network" in response.json()["error"]


@pytest.mark.parametrize("nic,status,expected", [
    ({"network_uuid": "nosuchnet"}, 404, "network nosuchnet not found"),
    ({"network_uuid": ""}, 400, "must name a network"),
    ({"network_uuid": "{net}", "address": "10.80.4.300"}, 400, "not an IPv4 address"),
    ({"network_uuid": "{net}", "address": "10.99.0.5"}, 400, "not in the network's range"),
    ({"network_uuid": "{net}", "address": "10.80.4.1"}, 400, "router address"),
    ({"network_uuid": "{net}", "address": "10.80.4.7"}, 400, "broadcast"),
    ({"network_uuid": "{net}", "macaddress": "zz:00:00:00:00:01"}, 400, "not a MAC"),
    ({"network_uuid": "{net}", "macaddress": "01:00:5e:00:00:01"}, 400, "multicast"),
    ({"network_uuid": "{net}", "model": "pcnet"}, 400, "is not offered"),
    ({"network_uuid": "{net}", "float": "perhaps"}, 400, "true or false"),
    ({"network_uuid": "{net}", "address": "none", "float": True}, 400, "without an address"),
])
def test_bad_interface_specs(portal: InProcessPortal, small_network: dict, nic: dict,
                             status: int, expected: str) -> None:
    nic = {k: (v.format(net=small_network["uuid"]) if isinstance(v, str) else v)
           for k, v in nic.items()}
    before = reservation_keys(portal)
    response = portal.api().post("/instances", {
        "name": "badnic", "cpus": 1, "memory": 128, "disk": [{"size": 1}], "network": [nic],
    })
    assert response.status_code == status, response.text
    assert expected in response.json()["error"]
    assert reservation_keys(portal) == before


def test_a_full_network_is_507_and_reserves_nothing(portal: InProcessPortal,
                                                    small_network: dict) -> None:
    # A /29 has 8 addresses: network, router and broadcast leave 5 for guests.
    before = reservation_keys(portal)
    response = portal.api().post("/instances", {
        "name": "greedy", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
        "network": [{"network_uuid": small_network["uuid"]}] * 6,
    })
    assert response.status_code == 507, response.text
    assert "is full" in response.json()["error"]
    assert reservation_keys(portal) == before


def test_same_address_twice_in_one_request_is_400(portal: InProcessPortal,
                                                  small_network: dict) -> None:
    nic = {"network_uuid": small_network["uuid"], "address": "10.80.4.3"}
    response = portal.api().post("/instances", {
        "name": "twice", "cpus": 1, "memory": 128, "disk": [{"size": 1}], "network": [nic, nic],
    })
    assert response.status_code == 400
    assert "asked for twice" in response.json()["error"]


def test_delete_all_deletes_unused_networks(portal: InProcessPortal, agent: FakeAgent) -> None:
    api = portal.api()
    made = [create_network(portal, agent, f"bulk-{i}", f"10.80.{10 + i}.0/24",
                           provide_nat=False) for i in range(2)]
    response = api.delete("/networks", {"confirm": True, "namespace": "system",
                                        "clean_wait": False})
    assert response.status_code == 200, response.text
    assert {n["uuid"] for n in made} <= set(response.json())
    for network in made:
        assert api.get(f"/networks/{network['uuid']}").json()["state"] == "deleting"
        agent.report_network(network["uuid"], state="deleted")
        assert api.get(f"/networks/{network['uuid']}").json()["state"] == "deleted"
    assert api.delete("/networks", {}).status_code == 400


def test_other_namespaces_networks_and_interfaces_are_not_found(
        portal: InProcessPortal, agent: FakeAgent) -> None:
    mine = create_network(portal, agent, "private", "10.80.5.0/24", provide_nat=False)
    outsider = portal.make_namespace("outsider")
    uuid = mine["uuid"]
    for path in (f"/networks/{uuid}", "/networks/private", f"/networks/{uuid}/interfaces",
                 f"/networks/{uuid}/addresses", f"/networks/{uuid}/metadata",
                 f"/networks/{uuid}/events", "/networks/floating"):
        response = outsider.get(path)
        assert response.status_code == 404, (path, response.text)
    assert outsider.delete(f"/networks/{uuid}").status_code == 404
    assert outsider.put(f"/networks/{uuid}/metadata/x", {"value": 1}).status_code == 404
    assert uuid not in [n["uuid"] for n in outsider.get("/networks").json()]
    # An outsider can't attach to it by UUID or name either, and that leaves nothing.
    before = reservation_keys(portal)
    for ref in (uuid, "private"):
        response = outsider.post("/instances", {
            "name": "sneak", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
            "network": [{"network_uuid": ref}],
        })
        assert response.status_code == 404, response.text
    assert reservation_keys(portal) == before
    # Its own network of the same name and range is its own business.
    theirs = outsider.post("/networks", {"name": "private", "netblock": "10.80.5.0/24"})
    assert theirs.status_code == 200, theirs.text
    assert theirs.json()["namespace"] == "outsider"
    assert portal.api().get(f"/networks/{uuid}").json()["state"] == "created"
