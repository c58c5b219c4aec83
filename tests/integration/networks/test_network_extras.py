"""Shaken Fist's network extras: hot-plugged interfaces (and sfcloud's
unplug), interfaces of a deleted instance, ping from the network node,
addresses routed to a network, and extra DNS names."""

from __future__ import annotations

import ipaddress

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import (
    create_instance,
    create_network,
    delete_instances,
    delete_networks,
)
from tests.support.networld import (
    FLOATING_NETWORK,
    FLOATING_ROUTER,
    OutsideWorld,
    in_netns,
    ping,
)

pytestmark = pytest.mark.integration
BOOT = 180


def addresses(cloud: Cloud, network: str) -> dict[str, dict]:
    return {a["address"]: a for a in cloud.api().get(f"/networks/{network}/addresses").json()}


def test_hot_plug_and_unplug_give_back_what_they_took(netcloud: Cloud) -> None:
    api = netcloud.api()
    net = create_network(netcloud, "plug", "10.71.0.0/24", provide_nat=False)
    vm = create_instance(netcloud, "plugged", [{"network_uuid": net["uuid"]}])
    uuid = vm["uuid"]
    try:
        netcloud.wait_console(uuid, "SFCLOUD-READY", BOOT)
        added = api.post(f"/instances/{uuid}/interfaces",
                         {"network": {"network_uuid": "plug", "address": "10.71.0.50"}})
        assert added.status_code == 200, added.text
        nic = added.json()
        assert (nic["order"], nic["ipv4"], nic["state"]) == (1, "10.71.0.50", "initial")
        assert addresses(netcloud, net["uuid"])["10.71.0.50"]["user"] == ["instance", uuid]
        # The guest sees the NIC and gets the address the portal reserved.
        netcloud.wait_console(uuid, "SFCLOUD-HOTPLUG: eth1 10.71.0.50/24", BOOT)
        wait_for(lambda: api.get(f"/interfaces/{nic['uuid']}").json()["state"] == "created", 30,
                 "the interface to be created")
        # The same address again, or a network the namespace can't see: refused, nothing kept.
        taken = api.post(f"/instances/{uuid}/interfaces",
                         {"network": {"network_uuid": "plug", "address": "10.71.0.50"}})
        assert taken.status_code == 409 and "already in use" in taken.json()["error"]
        missing = api.post(f"/instances/{uuid}/interfaces",
                           {"network": {"network_uuid": "no-such-network"}})
        assert missing.status_code == 404
        assert len(api.get(f"/instances/{uuid}/interfaces").json()) == 2

        # Unplugged: the guest lets go, then the address and MAC go back.
        gone = api.delete(f"/instances/{uuid}/interfaces/{nic['uuid']}")
        assert gone.status_code == 200 and gone.json()["state"] == "deleting"
        netcloud.wait_console(uuid, "SFCLOUD-UNPLUG: eth1", BOOT)
        wait_for(lambda: api.get(f"/interfaces/{nic['uuid']}").status_code == 404, 60,
                 "the unplugged interface to be released")
        assert "10.71.0.50" not in addresses(netcloud, net["uuid"])
        assert netcloud.etcd_keys(f"macs/{nic['macaddr']}") == []
        assert [i["order"] for i in api.get(f"/instances/{uuid}/interfaces").json()] == [0]
        again = api.delete(f"/instances/{uuid}/interfaces/{nic['uuid']}")
        assert again.status_code == 404
    finally:
        delete_instances(netcloud, uuid)
    # A deleted instance takes no more interfaces (Shaken Fist's 406).
    refused = api.post(f"/instances/{uuid}/interfaces", {"network": {"network_uuid": "plug"}})
    assert refused.status_code == 406 and "invalid state for hot plug" in refused.json()["error"]
    delete_networks(netcloud, net["uuid"])


def test_interfaces_of_a_deleted_instance_stay_readable(netcloud: Cloud) -> None:
    api = netcloud.api()
    net = create_network(netcloud, "afterlife", "10.72.0.0/24", provide_nat=False)
    vm = create_instance(netcloud, "mortal", [{"network_uuid": net["uuid"]}])
    nic = vm["interfaces"][0]
    netcloud.wait_console(vm["uuid"], "SFCLOUD-READY", BOOT)
    delete_instances(netcloud, vm["uuid"])
    # Torn down: its address is released, its interface readable with state deleted.
    assert nic["ipv4"] not in addresses(netcloud, net["uuid"])
    shown = api.get(f"/interfaces/{nic['uuid']}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["state"] == "deleted"
    assert (shown.json()["ipv4"], shown.json()["macaddr"]) == (nic["ipv4"], nic["macaddr"])
    listed = api.get(f"/instances/{vm['uuid']}/interfaces").json()
    assert [(i["uuid"], i["state"]) for i in listed] == [(nic["uuid"], "deleted")]
    assert netcloud.sf("interface", "show", nic["uuid"]).returncode == 0
    # The network no longer counts it, and can go.
    assert api.get(f"/networks/{net['uuid']}/interfaces").json() == []
    refloat = api.post(f"/interfaces/{nic['uuid']}/float")
    assert refloat.status_code == 409 and "deleted instance" in refloat.json()["error"]
    delete_networks(netcloud, net["uuid"])


def test_ping_from_the_network_node(netcloud: Cloud) -> None:
    api = netcloud.api()
    net = create_network(netcloud, "pinged", "10.73.0.0/24", provide_nat=False)
    answered = api.get(f"/networks/{net['uuid']}/ping/10.73.0.1")
    assert answered.status_code == 200, answered.text
    assert "bytes from 10.73.0.1" in answered.json()["stdout"]
    silent = api.get(f"/networks/{net['uuid']}/ping/10.73.0.77").json()
    assert "100% packet loss" in silent["stdout"]
    for address, expected in (("10.74.0.1", "outside the network's range"),
                              ("not-an-address", "not an IPv4 address")):
        refused = api.get(f"/networks/{net['uuid']}/ping/{address}")
        assert refused.status_code == 400 and expected in refused.json()["error"]
    delete_networks(netcloud, net["uuid"])


def test_a_routed_address_reaches_a_guest_that_configures_it(
        netcloud: Cloud, outside_world: OutsideWorld) -> None:
    api = netcloud.api()
    net = create_network(netcloud, "routes", "10.75.0.0/24")
    routed = api.post(f"/networks/{net['uuid']}/route")
    assert routed.status_code == 200, routed.text
    address = routed.json()
    assert address.startswith("192.0.2.")
    reservation = f"{netcloud.prefix}/ipam/floating/{address}"
    assert reservation in netcloud.etcd_keys("ipam/floating/")
    # Under security groups the guest may send from the routed address only
    # if its NIC allows it, and be pinged from outside only if a group lets
    # ICMP in (the default group takes in only its own members).
    pingable = api.post("/security-groups", {"name": "routed-ping", "rules": [
        {"direction": "ingress", "protocol": "icmp"}, {"direction": "egress"}]})
    assert pingable.status_code == 200, pingable.text
    vm = create_instance(netcloud, "router-user", [{
        "network_uuid": net["uuid"], "security_groups": ["routed-ping"],
        "allowed_addresses": [address]}], user_data=f"ip addr add {address}/32 dev eth0\n")
    try:
        netcloud.wait_console(vm["uuid"], "SFCLOUD-READY", BOOT)
        # From beyond the uplink, to the guest itself: no NAT, the guest owns it.
        wait_for(lambda: ping(outside_world.www, address), 60, "the routed address to answer")
        # Another network's address can't be unrouted from here; a free one is not routed.
        other = create_network(netcloud, "routes-b", "10.76.0.0/24", provide_nat=False)
        try:
            refused = api.delete(f"/networks/{other['uuid']}/route/{address}")
            assert refused.status_code == 403
            # An address of the pool (FLOATING_NETWORK) that nothing holds: the
            # pool hands out any of them, the last one included.
            taken = {key.rsplit("/", 1)[-1] for key in netcloud.etcd_keys("ipam/floating/")}
            free = next(candidate for candidate in map(str, ipaddress.ip_network(
                FLOATING_NETWORK).hosts()) if candidate not in taken | {FLOATING_ROUTER})
            assert api.delete(f"/networks/{net['uuid']}/route/{free}").status_code == 404
        finally:
            delete_networks(netcloud, other["uuid"])

        assert api.delete(f"/networks/{net['uuid']}/route/{address}").json() is None
        wait_for(lambda: not ping(outside_world.www, address, count=1, wait=1), 30,
                 "the routed address to stop answering")
        wait_for(lambda: reservation not in netcloud.etcd_keys("ipam/floating/"), 30,
                 "the routed address to go back to the pool")
    finally:
        delete_instances(netcloud, vm["uuid"])
        delete_networks(netcloud, net["uuid"])
        api.delete("/security-groups/routed-ping")


def test_extra_dns_names(netcloud: Cloud) -> None:
    api = netcloud.api()
    net = create_network(netcloud, "named", "10.77.0.0/24", provide_nat=False,
                         provide_dns=True)
    namespace = netcloud.net_names.netns(net["vxlan_id"])
    assert api.post(f"/networks/{net['uuid']}/dns",
                    {"name": "db", "value": "10.77.0.9"}).json() is None

    def answer(name: str) -> str:
        return in_netns(namespace, "busybox", "nslookup", name, "10.77.0.1").stdout

    wait_for(lambda: "10.77.0.9" in answer("db.system.sfcloud"), 30, "db to resolve")
    assert api.get(f"/networks/{net['uuid']}").json()["dns_entries"] == {"db": "10.77.0.9"}
    bad = api.post(f"/networks/{net['uuid']}/dns", {"name": "no spaces", "value": "10.77.0.9"})
    assert bad.status_code == 400 and "not a valid DNS name" in bad.json()["error"]
    assert api.delete(f"/networks/{net['uuid']}/dns", {"name": "db"}).json() is None
    wait_for(lambda: "10.77.0.9" not in answer("db.system.sfcloud"), 30, "db to go")
    plain = create_network(netcloud, "unnamed", "10.78.0.0/24", provide_nat=False)
    refused = api.post(f"/networks/{plain['uuid']}/dns", {"name": "db", "value": "10.78.0.9"})
    assert refused.status_code == 406 and "does not provide DNS" in refused.json()["error"]
    delete_networks(netcloud, net["uuid"], plain["uuid"])
