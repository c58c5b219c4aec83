"""A remote-group rule between guests on two hypervisors: B (on the second
node) lets tcp/8080 in from members of ``front`` only; A (on the network
node) is one, then is not. B's node learns A's address from etcd, as a set
element, though A's port is on another node."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.networks.test_mesh import mesh_cloud  # noqa: F401 - the fixture
from tests.support.cloud import wait_for
from tests.support.fixtures_networks import delete_instances, delete_networks
from tests.support.meshcloud import MeshCloud
from tests.support.secguests import BOOT, SERVE, Console, boot, probe

pytestmark = pytest.mark.integration


def filter_tables(cloud: MeshCloud, host: str) -> str:
    return subprocess.run(["ip", "netns", "exec", host, "nft", "list", "table", "bridge",
                           cloud.net_names.filter_table], capture_output=True, text=True,
                          timeout=30).stdout


def test_a_remote_group_rule_across_two_nodes(mesh_cloud: MeshCloud) -> None:  # noqa: F811
    cloud = mesh_cloud
    network_node, hypervisor = cloud.nodes
    api = cloud.api()
    response = api.post("/networks", {"name": "sgmesh", "netblock": "10.51.0.0/24",
                                      "provide_nat": False})
    assert response.status_code == 200, response.text
    net = wait_for(lambda: (n := api.get(f"/networks/{response.json()['uuid']}").json())
                   ["state"] == "created" and n, 60, "the network")
    front = api.post("/security-groups", {"name": "front", "rules": [
        {"direction": "egress"}]}).json()
    back = api.post("/security-groups", {"name": "back", "rules": [
        {"direction": "ingress", "protocol": "tcp", "ports": "8080",
         "remote": {"group": "front"}}]}).json()
    a = boot(api, "a", net["uuid"], "10.51.0.10", ["default", front["uuid"]],
             probe("b", "http://10.51.0.20:8080/"), placed_on=network_node)
    b = boot(api, "b", net["uuid"], "10.51.0.20", [back["uuid"]], SERVE, placed_on=hypervisor)
    try:
        assert (a["node"], b["node"]) == (network_node, hypervisor)
        consoles = {vm["name"]: Console(cloud, vm["uuid"]) for vm in (a, b)}
        for console in consoles.values():
            console.wait("SFCLOUD-READY", BOOT)
        consoles["a"].settled("b", "ok")
        # A's address is a member on B's node, which carries no port of A's.
        b_host = cloud.host_of(hypervisor)
        assert "10.51.0.10" in filter_tables(cloud, b_host)

        consoles["a"].mark()
        response = api.request("PUT", f"/interfaces/{a['interfaces'][0]['uuid']}/"
                               "security-groups", {"security_groups": ["default"]})
        assert response.status_code == 200, response.text
        consoles["a"].settled("b", "no", 60)
        wait_for(lambda: "10.51.0.10" not in filter_tables(cloud, b_host), 30,
                 "A's address gone from B's node")
    finally:
        delete_instances(cloud, a["uuid"], b["uuid"])
        delete_networks(cloud, net["uuid"])
    for host in cloud.mesh.hosts:
        assert cloud.network_objects(netns=host.name)["tables"] == []
