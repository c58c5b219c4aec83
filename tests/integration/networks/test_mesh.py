"""Guests on two simulated hypervisors, each node agent in its own network
namespace, reach each other over the VXLAN mesh; the one that is not the
network node even gets its address by DHCP across it. A snapshot taken on
one of them boots on the other."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_snapshots import reader as snapshot_reader
from tests.integration.test_snapshots import writer as snapshot_writer
from tests.support.cloud import wait_for
from tests.support.fixtures_networks import (
    allow_ping,
    create_instance,
    create_network,
    delete_instances,
    delete_networks,
)
from tests.support.meshcloud import MeshCloud
from tests.support.networld import Mesh, ip, ping

pytestmark = pytest.mark.integration
BOOT = 150


@pytest.fixture
def mesh_cloud(etcd_server, guest_image_dir: Path,  # type: ignore[no-untyped-def]
               libvirt_daemon: None) -> Iterator[MeshCloud]:
    mesh = Mesh().start(2)
    running = MeshCloud(etcd_server, mesh, demo_image=guest_image_dir / "disk.qcow2")
    try:
        # Agents in the hosts reach etcd and the portal (for their events)
        # on their own loopback.
        mesh.relay([etcd_server.client_port, running.port, running.agents_port])
        yield running.start()
    finally:
        try:
            running.stop()
        finally:
            mesh.close()


def flood_entries(host: str, vxlan: str) -> str:
    return subprocess.run(["bridge", "-n", host, "fdb", "show", "dev", vxlan],
                          capture_output=True, text=True, check=True).stdout


def vxlan_stats(host: str, name: str) -> tuple[int, int]:
    """(rx packets, tx packets) of a link in a host's namespace."""
    lines = ip("-s", "link", "show", "dev", name, netns=host).stdout.splitlines()
    rx = int(lines[lines.index(next(line for line in lines if "RX:" in line)) + 1].split()[1])
    tx = int(lines[lines.index(next(line for line in lines if "TX:" in line)) + 1].split()[1])
    return rx, tx


def test_guests_on_two_hypervisors_ping_across_the_mesh(mesh_cloud: MeshCloud) -> None:
    cloud = mesh_cloud
    network_node, hypervisor = cloud.nodes
    net = create_network(cloud, "mesh", "10.50.0.0/24", provide_nat=False)
    names = cloud.net_names
    near = create_instance(cloud, "near", [{"network_uuid": "mesh", "address": "10.50.0.10"}],
                           placed_on=network_node)
    far = create_instance(cloud, "far", [{"network_uuid": "mesh", "address": "10.50.0.20"}],
                          placed_on=hypervisor, user_data="""
for i in $(seq 90); do ping -c1 -W1 10.50.0.10 >/dev/null 2>&1 && break; sleep 1; done
ping -c3 -W2 10.50.0.10 >/dev/null 2>&1 && echo "NET-TEST mesh ok" || echo "NET-TEST mesh FAILED"
""")
    try:
        # The router pings the far guest below: let pings in.
        allow_ping(cloud, far["interfaces"][0]["uuid"])
        assert near["node"] == network_node and far["node"] == hypervisor
        far_log = cloud.wait_console(far["uuid"], "SFCLOUD-READY", BOOT)
        near_log = cloud.wait_console(near["uuid"], "SFCLOUD-READY", BOOT)
        # The far guest's DHCP came from the network node, across the mesh.
        assert "SFCLOUD-IP: eth0 10.50.0.20/24" in far_log, far_log
        assert "SFCLOUD-IP: eth0 10.50.0.10/24" in near_log, near_log
        assert "NET-TEST mesh ok" in far_log, far_log

        # Each node floods to the other through the mesh (head-end
        # replication), and the traffic really went through VXLAN.
        vxlan = names.vxlan(net["vxlan_id"])
        far_host, near_host = cloud.host_of(hypervisor), cloud.host_of(network_node)
        assert f"vxlan id {net['vxlan_id']}" in \
            ip("-d", "link", "show", "dev", vxlan, netns=far_host).stdout
        assert f"00:00:00:00:00:00 dst {cloud.mesh.hosts[0].address}" in \
            flood_entries(far_host, vxlan)
        assert f"00:00:00:00:00:00 dst {cloud.mesh.hosts[1].address}" in \
            flood_entries(near_host, vxlan)
        rx, tx = vxlan_stats(far_host, vxlan)
        assert rx > 0 and tx > 0
        # The guests' taps moved into their nodes' namespaces, and nothing of
        # the network is left in the root namespace.
        assert names.tap(far["interfaces"][0]["uuid"]) in ip("-o", "link", "show",
                                                             netns=far_host).stdout
        assert cloud.network_objects()["links"] == []

        # Killed, and its bridge removed behind its back: the restarted agent
        # makes it again and plugs the running guest's tap back in.
        bridge, tap = names.bridge(net["vxlan_id"]), names.tap(far["interfaces"][0]["uuid"])
        cloud.restart_node(hypervisor, meanwhile=lambda: ip("link", "del", bridge,
                                                             netns=far_host))
        wait_for(lambda: f"master {bridge}" in ip("link", "show", "dev", tap, netns=far_host,
                                                  check=False).stdout, 60,
                 "the tap back in a rebuilt bridge")
        assert f"00:00:00:00:00:00 dst {cloud.mesh.hosts[0].address}" in \
            flood_entries(far_host, vxlan)
        # The network's router (in the network node's namespace) reaches the
        # far guest again, across the mesh.
        wait_for(lambda: ping(names.netns(net["vxlan_id"]), "10.50.0.20"), 30,
                 "the far guest reachable from its router")

        # Once its only guest is gone, the hypervisor drops the network; the
        # network node keeps it while the network exists.
        delete_instances(cloud, far["uuid"])
        wait_for(lambda: ip("link", "show", "dev", names.bridge(net["vxlan_id"]),
                            netns=far_host, check=False).returncode != 0, 30,
                 "the far node's bridge removed")
        wait_for(lambda: cloud.mesh.hosts[1].address not in flood_entries(near_host, vxlan),
                 30, "the network node to forget the far node")
    finally:
        delete_instances(cloud, near["uuid"], far["uuid"])
        delete_networks(cloud, net["uuid"])
    for host in cloud.mesh.hosts:
        assert cloud.network_objects(netns=host.name) == {
            "namespaces": [], "links": [], "tables": [], "dnsmasq": []}


def test_a_snapshot_taken_on_one_node_boots_on_another(mesh_cloud: MeshCloud) -> None:
    """The other node's agent copies the snapshot's blob from the agent of the
    node that took it (a signed grant, the holder's sha512 checked) and boots it."""
    cloud = mesh_cloud
    holder, other = cloud.nodes
    api = cloud.api()
    marker = f"M{secrets.token_hex(4)}"
    made: list[str] = []
    try:
        source = _create(cloud, "snap-source", holder, [{"size": 1, "base": "demo"}, {"size": 1}],
                         snapshot_writer(marker))
        made.append(source["uuid"])
        cloud.wait_console(source["uuid"], "SNAPDATA-WRITTEN", BOOT)
        taken = api.post(f"/instances/{source['uuid']}/snapshot", {"all": True}).json()
        images = [taken[device]["artifact_uuid"] for device in ("vda", "vdc")]
        blobs = [taken[device]["blob_uuid"] for device in ("vda", "vdc")]
        wait_for(lambda: {i["state"] for i in api.get(
            f"/instances/{source['uuid']}/snapshot").json()} == {"created"}, 90, "the snapshots")

        copy = _create(cloud, "snap-copy", other,
                       [{"size": 1, "base": image} for image in images], snapshot_reader())
        made.append(copy["uuid"])
        assert copy["node"] == other
        log = cloud.wait_console(copy["uuid"], "SFCLOUD-READY", BOOT)
        assert f"SNAPDATA-READ vda: {marker}-vda" in log, log
        assert f"SNAPDATA-READ vdc: {marker}-vdc" in log, log
        for blob in blobs:
            events = [e["message"] for e in api.get(f"/blobs/{blob}/events").json()]
            assert f"fetching onto {other}" in events, events
            # The copy is the holder's bytes: both nodes report the same sha512.
            copies = {n: cloud.etcd_call(lambda etcd, n=n, b=blob: etcd.get(
                cloud.keys.observed_blob(n, b))) for n in (holder, other)}
            digests = {json.loads(kv.value)["sha512"] for kv in copies.values()}
            assert len(digests) == 1, copies
            assert sorted(api.get(f"/blobs/{blob}").json()["locations"]) == sorted(
                [holder, other])
    finally:
        delete_instances(cloud, *made)


def _create(cloud: MeshCloud, name: str, node: str, disks: list[dict], user_data: str) -> dict:
    response = cloud.api().post("/instances", {"name": name, "cpus": 1, "memory": 128,
                                               "disk": disks, "placed_on": node,
                                               "user_data": user_data})
    assert response.status_code == 200, response.text
    return response.json()
