"""The network node killed at any point while building or tearing down a
network converges when restarted, with nothing duplicated or left over;
what is stale is removed, what was removed behind its back is rebuilt, and a
dnsmasq that dies is started again at once."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import create_network, delete_networks

pytestmark = pytest.mark.integration

BUILD_POINTS = ["after-netns", "after-dnsmasq", "after-egress"]


def network(cloud: Cloud, uuid: str) -> dict:
    return cloud.api().get(f"/networks/{uuid}").json()


def built(cloud: Cloud, shown: dict) -> dict[str, list[str]]:
    """The network's own kernel objects and processes."""
    names, vxid = cloud.net_names, shown["vxlan_id"]
    found = cloud.network_objects()
    mine = {names.bridge(vxid), names.vxlan(vxid), names.veth(vxid), names.egress(vxid)}
    return {"namespaces": [n for n in found["namespaces"] if n == names.netns(vxid)],
            "links": sorted(link for link in found["links"] if link in mine),
            "dnsmasq": found["dnsmasq"]}


@pytest.mark.parametrize("failpoint", BUILD_POINTS)
def test_network_node_killed_while_building_converges(netcloud: Cloud, failpoint: str) -> None:
    netcloud.stop_agent()
    dying = netcloud.start_agent(failpoints=failpoint)
    try:
        response = netcloud.api().post("/networks", {"name": f"crash-{failpoint}",
                                                     "netblock": "10.74.0.0/24"})
        assert response.status_code == 200, response.text
        uuid = response.json()["uuid"]
        assert dying.wait(timeout=60) == 75, "the agent should have died at the failpoint"
    finally:
        netcloud.start_agent()
    shown = wait_for(lambda: (n := network(netcloud, uuid))["state"] == "created" and n,
                     60, "the network to converge")
    assert shown["error_message"] is None
    names, vxid = netcloud.net_names, shown["vxlan_id"]
    found = built(netcloud, shown)
    assert found["namespaces"] == [names.netns(vxid)]
    assert found["links"] == sorted([names.bridge(vxid), names.vxlan(vxid), names.veth(vxid),
                                     names.egress(vxid)])
    assert len(found["dnsmasq"]) == 1, "exactly one dnsmasq"
    delete_networks(netcloud, uuid)
    assert built(netcloud, shown) == {"namespaces": [], "links": [], "dnsmasq": []}


def test_network_node_killed_while_tearing_down_converges(netcloud: Cloud) -> None:
    shown = create_network(netcloud, "crash-teardown", "10.75.0.0/24")
    uuid = shown["uuid"]
    netcloud.stop_agent()
    dying = netcloud.start_agent(failpoints="after-network-teardown")
    try:
        assert netcloud.api().delete(f"/networks/{uuid}").status_code == 200
        assert dying.wait(timeout=60) == 75
        # Torn down, but not yet reported: its reservations are still held.
        assert network(netcloud, uuid)["state"] == "deleting"
        assert netcloud.etcd_keys(f"vxlan/{shown['vxlan_id']}") != []
    finally:
        netcloud.start_agent()
    wait_for(lambda: network(netcloud, uuid)["state"] == "deleted", 60, "the delete to finish")
    assert netcloud.etcd_keys(f"vxlan/{shown['vxlan_id']}") == []
    assert f"{netcloud.prefix}/ipam/floating/{shown['floating_gateway']}" \
        not in netcloud.etcd_keys("ipam/floating/")
    assert built(netcloud, shown) == {"namespaces": [], "links": [], "dnsmasq": []}


def test_restart_rebuilds_what_is_missing_and_removes_what_is_stale(netcloud: Cloud) -> None:
    shown = create_network(netcloud, "repair", "10.76.0.0/24")
    names, vxid = netcloud.net_names, shown["vxlan_id"]
    netcloud.stop_agent(kill=True)
    # Behind the agent's back: its dnsmasq killed, its namespace's router
    # address removed, and a stale network of ours (a VXLAN id no network has).
    for pid in netcloud.dnsmasq_pids():
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "-n", names.netns(vxid), "addr", "flush", "dev", "int0"], check=True)
    stale = 0xABCDE
    subprocess.run(["ip", "link", "add", names.bridge(stale), "type", "bridge"], check=True)
    subprocess.run(["ip", "netns", "add", names.netns(stale)], check=True)
    netcloud.start_agent()
    try:
        wait_for(lambda: len(netcloud.dnsmasq_pids()) == 1, 30, "dnsmasq started again")
        wait_for(lambda: "10.76.0.1/24" in subprocess.run(
            ["ip", "-n", names.netns(vxid), "-o", "addr", "show", "dev", "int0"],
            capture_output=True, text=True).stdout, 30, "the router address back")
        wait_for(lambda: names.bridge(stale) not in netcloud.network_objects()["links"], 30,
                 "the stale bridge removed")
        assert names.netns(stale) not in netcloud.network_objects()["namespaces"]
    finally:
        delete_networks(netcloud, shown["uuid"])


def test_dnsmasq_that_dies_is_restarted_at_once(netcloud: Cloud) -> None:
    shown = create_network(netcloud, "health", "10.77.0.0/24", provide_nat=False)
    try:
        (old,) = netcloud.dnsmasq_pids()
        os.kill(old, signal.SIGKILL)
        # No timer: its exit is an event the agent waits on.
        new = wait_for(lambda: [p for p in netcloud.dnsmasq_pids() if p != old], 10,
                       "a new dnsmasq")
        assert len(new) == 1
        # And says so in the network's event log.
        wait_for(lambda: any(e["message"] == f"dnsmasq started (pid {new[0]})" for e in
                             netcloud.api().get(f"/networks/{shown['uuid']}/events").json()),
                 30, "the restart in the event log")
    finally:
        delete_networks(netcloud, shown["uuid"])
