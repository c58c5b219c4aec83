"""Networks through the API, built by the real network node: shapes,
lookups, metadata, the node's events, and its namespace coming and going.

Bad input, full networks and other namespaces are tried in process:
tests/fast/test_api_networks.py."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import create_network, delete_networks

pytestmark = pytest.mark.integration


def test_create_show_list_metadata_events_delete(netcloud: Cloud) -> None:
    api = netcloud.api()
    network = create_network(netcloud, "shapes", "10.80.1.0/24", provide_dns=True)
    assert network["netblock"] == "10.80.1.0/24"
    for key in ("uuid", "name", "netblock", "provide_dhcp", "provide_nat", "floating_gateway",
                "namespace", "state", "vxlan_id", "provide_dns"):
        assert key in network, key
    assert network["provide_dns"] is True
    assert 1 <= network["vxlan_id"] < 2**24
    # NAT was asked for and the cloud has a floating network: it got an address.
    assert network["floating_gateway"].startswith("192.0.2.")

    uuid = network["uuid"]
    assert api.get("/networks/shapes").json()["uuid"] == uuid
    assert uuid in [n["uuid"] for n in api.get("/networks", {"all": False}).json()]
    assert api.get(f"/networks/{uuid}/interfaces").json() == []
    listed = api.get(f"/networks/{uuid}/addresses").json()
    kinds = {a["address"]: a["type"] for a in listed}
    assert kinds == {"10.80.1.0": "network", "10.80.1.1": "gateway", "10.80.1.255": "broadcast"}
    # Shaken Fist's user of the network's own addresses (the client's --simple joins it).
    assert {tuple(a["user"]) for a in listed} == {("network", uuid)}

    assert api.request("PUT", f"/networks/{uuid}/metadata/owner", {"value": "ops"}).json() is None
    assert api.get(f"/networks/{uuid}/metadata").json() == {"owner": "ops"}
    assert api.delete(f"/networks/{uuid}/metadata/owner").status_code == 200
    assert api.get(f"/networks/{uuid}/metadata").json() == {}
    assert api.delete(f"/networks/{uuid}/metadata/owner").status_code == 404

    # What was asked (the portal's record) and what the network node did
    # (sent by its agent), newest first.
    events = wait_for(lambda: (e := api.get(f"/networks/{uuid}/events").json())
                      and any(x["message"] == "state is now created" for x in e) and e,
                      30, "the network node's event")
    assert any(e["message"].startswith("created by") and e["type"] == "audit" for e in events)
    assert any(e["message"].startswith("dnsmasq started") for e in events)
    assert events == sorted(events, key=lambda e: e["timestamp"], reverse=True)
    only = api.get(f"/networks/{uuid}/events", {"event_type": "audit", "limit": 1}).json()
    assert len(only) == 1 and only[0]["type"] == "audit"

    # The network node built it: a namespace with the router address and a dnsmasq.
    namespace = netcloud.net_names.netns(network["vxlan_id"])
    assert namespace in netcloud.network_objects()["namespaces"]
    delete_networks(netcloud, uuid)
    assert namespace not in netcloud.network_objects()["namespaces"]
    # Deleted networks stay readable by UUID, leave lists and free their name.
    assert api.get(f"/networks/{uuid}").json()["state"] == "deleted"
    assert uuid not in [n["uuid"] for n in api.get("/networks").json()]
    assert uuid in [n["uuid"] for n in api.get("/networks", {"all": True}).json()]
    assert api.get("/networks/shapes").status_code == 404
    again = create_network(netcloud, "shapes", "10.80.1.0/24")
    delete_networks(netcloud, again["uuid"])
