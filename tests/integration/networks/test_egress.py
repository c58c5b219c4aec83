"""NAT egress, names resolved beyond the cloud and floating addresses,
through the uplink into a test-made outside world (never this machine's own
uplink), and a cloud without an uplink that has no egress at all."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import (
    allow_ping,
    create_instance,
    create_network,
    delete_instances,
    delete_networks,
)
from tests.support.networld import UPSTREAM, UPSTREAM_PORT, OutsideWorld, in_netns, ping

pytestmark = pytest.mark.integration
BOOT = 150


def floating_keys(cloud: Cloud) -> list[str]:
    return cloud.etcd_keys("ipam/floating/")


def test_egress_float_defloat_and_release(netcloud: Cloud, outside_world: OutsideWorld) -> None:
    api = netcloud.api()
    before = floating_keys(netcloud)
    net = create_network(netcloud, "out", "10.70.0.0/24")
    gateway = net["floating_gateway"]
    seen_before = len(outside_world.requests_seen())
    vm = create_instance(netcloud, "egress", [{"network_uuid": "out"}], user_data=f"""
for i in $(seq 60); do
    timeout 5 wget -q -O - http://{UPSTREAM}:{UPSTREAM_PORT}/from-guest && exit 0
    sleep 1
done
echo "NET-TEST no egress"
""")
    nic = vm["interfaces"][0]
    try:
        # The node's own addresses stay off the uplink's segment: its bridge
        # answers no ARP (a floating address may equal one of the host's).
        knob = Path(f"/proc/sys/net/ipv4/conf/{netcloud.net_names.uplink_bridge}/arp_ignore")
        assert knob.read_text().strip() == "8"
        log = netcloud.wait_console(vm["uuid"], "SFCLOUD-READY", BOOT)
        # The far host saw the request come from the network's NAT address.
        assert f"SFCLOUD-UPSTREAM-SAW {gateway}" in log, log
        assert outside_world.requests_seen()[seen_before:] == [gateway]

        # Float: the outside reaches the guest at its floating address (once
        # its security groups let pings in).
        allow_ping(netcloud, nic["uuid"])
        assert api.post(f"/interfaces/{nic['uuid']}/float").json() is None
        floating = api.get(f"/interfaces/{nic['uuid']}").json()["floating"]
        assert floating and floating.startswith("192.0.2.") and floating != gateway
        assert f"{netcloud.prefix}/ipam/floating/{floating}" in floating_keys(netcloud)
        wait_for(lambda: ping(outside_world.www, floating), 60, "the floating address to answer")
        assert api.get(f"/networks/{net['uuid']}/interfaces").json()[0]["floating"] == floating

        # Twice is refused, and changes nothing.
        response = api.post(f"/interfaces/{nic['uuid']}/float")
        assert response.status_code == 409
        assert f"already has the floating address {floating}" in response.json()["error"]

        # Defloat: no longer reachable, and the address goes back to the pool
        # once the network node has removed its NAT.
        assert api.post(f"/interfaces/{nic['uuid']}/defloat").json() is None
        wait_for(lambda: not ping(outside_world.www, floating, count=1, wait=1), 30,
                 "the floating address to stop answering")
        wait_for(lambda: f"{netcloud.prefix}/ipam/floating/{floating}"
                 not in floating_keys(netcloud), 30, "the floating address released")
        response = api.post(f"/interfaces/{nic['uuid']}/defloat")
        assert response.status_code == 409
        assert "has no floating address" in response.json()["error"]

        # Float again and delete the instance: released with its interface.
        api.post(f"/interfaces/{nic['uuid']}/float")
        again = api.get(f"/interfaces/{nic['uuid']}").json()["floating"]
        wait_for(lambda: ping(outside_world.www, again), 60, "the new floating address")
    finally:
        delete_instances(netcloud, vm["uuid"])
    wait_for(lambda: f"{netcloud.prefix}/ipam/floating/{again}" not in floating_keys(netcloud),
             30, "the floating address released with its interface")
    assert not ping(outside_world.www, again, count=1, wait=1)
    delete_networks(netcloud, net["uuid"])
    # The network's NAT address went back too.
    assert floating_keys(netcloud) == before


def test_floating_pool_exhaustion_is_507(netcloud: Cloud) -> None:
    """Networks with NAT take an address each; when none is left, both a new
    NAT network and a float get 507, and nothing half-made stays."""
    api = netcloud.api()
    size = 16 - 3  # a /28 less its network, broadcast and router addresses
    fillers = []
    try:
        free = size - len(floating_keys(netcloud))
        for index in range(free):
            fillers.append(create_network(netcloud, f"fill-{index}", f"10.71.{index}.0/24"))
        response = api.post("/networks", {"name": "one-too-many", "netblock": "10.72.0.0/24"})
        assert response.status_code == 507, response.text
        assert "no free address" in response.json()["error"]
        assert api.get("/networks/one-too-many").status_code == 404
        # Without NAT a network needs no floating address.
        plain = create_network(netcloud, "plain", "10.72.0.0/24", provide_nat=False)
        fillers.append(plain)
        response = api.post("/instances", {
            "name": "floatless", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
            "network": [{"network_uuid": "plain", "float": True}],
        })
        assert response.status_code == 507, response.text
        assert "no free address" in response.json()["error"]
        assert netcloud.etcd_keys("interfaces/") == []
    finally:
        delete_networks(netcloud, *(n["uuid"] for n in fillers))
    assert len(floating_keys(netcloud)) == size - free


def test_no_uplink_means_no_egress(cloud: Cloud) -> None:
    """The shared test cloud has no uplink and no floating network."""
    api = cloud.api()
    response = api.post("/networks", {"name": "inside", "netblock": "10.73.0.0/24"})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    assert response.json()["floating_gateway"] is None
    try:
        shown = wait_for(lambda: (n := api.get(f"/networks/{uuid}").json())["state"] == "created"
                         and n, 60, "the network created")
        namespace = cloud.net_names.netns(shown["vxlan_id"])
        links = in_netns(namespace, "ip", "-o", "link", "show").stdout
        assert "int0" in links and "eg0" not in links
        assert in_netns(namespace, "ip", "route", "show", "default").stdout.strip() == ""
        assert in_netns(namespace, "nft", "list", "ruleset").stdout.strip() == ""
        assert in_netns(namespace, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
        assert api.get("/networks/floating").status_code == 404
    finally:
        api.delete(f"/networks/{uuid}")
        wait_for(lambda: api.get(f"/networks/{uuid}").json()["state"] == "deleted", 60,
                 "the network deleted")


FAR_NAME, FAR_ADDRESS = "far.sfcloud-test", "203.0.113.77"


@pytest.fixture
def far_resolver(outside_world: OutsideWorld) -> Iterator[None]:
    """A DNS server on the far host that knows one name: the cloud's
    SFCLOUD_DNS_SERVERS points there."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", outside_world.www, "dnsmasq", "--keep-in-foreground",
         "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={UPSTREAM}",
         "--port=53", f"--address=/{FAR_NAME}/{FAR_ADDRESS}", "--pid-file=", "--user=root",
         "--log-queries", "--log-facility=-"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: FAR_ADDRESS in in_netns(
            outside_world.www, "busybox", "nslookup", FAR_NAME, UPSTREAM).stdout, 10,
            "the far resolver")
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_guests_resolve_names_beyond_the_cloud(netcloud: Cloud, far_resolver: None) -> None:
    """With DNS of its own, a network's dnsmasq answers instance names and
    forwards the rest; without, DHCP hands out the cloud's resolvers."""
    lookup = f"""
for i in $(seq 30); do
    a=$(nslookup {FAR_NAME} 2>/dev/null | sed -n 's/^Address: \\(203\\.[0-9.]*\\)$/\\1/p')
    [ -n "$a" ] && break
    sleep 1
done
echo "NET-TEST far-name ${{a:-none}}"
echo "NET-TEST resolver $(sed -n 's/^nameserver //p' /etc/resolv.conf | head -n 1)"
"""
    own = create_network(netcloud, "names", "10.71.0.0/24", provide_dns=True)
    plain = create_network(netcloud, "nonames", "10.72.0.0/24")
    vms = [create_instance(netcloud, "resolver-own", [{"network_uuid": own["uuid"]}],
                           user_data=lookup),
           create_instance(netcloud, "resolver-far", [{"network_uuid": plain["uuid"]}],
                           user_data=lookup)]
    try:
        own_log, plain_log = (netcloud.wait_console(vm["uuid"], "SFCLOUD-READY", BOOT)
                              for vm in vms)
        assert f"NET-TEST far-name {FAR_ADDRESS}" in own_log, own_log
        assert "NET-TEST resolver 10.71.0.1" in own_log, own_log
        assert f"NET-TEST far-name {FAR_ADDRESS}" in plain_log, plain_log
        assert f"NET-TEST resolver {UPSTREAM}" in plain_log, plain_log
    finally:
        delete_instances(netcloud, *(vm["uuid"] for vm in vms))
        delete_networks(netcloud, own["uuid"], plain["uuid"])
