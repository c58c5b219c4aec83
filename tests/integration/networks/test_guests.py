"""Real guests on virtual networks: DHCP hands out exactly the reserved
addresses, guests on one network reach each other (by address and, with
DNS, by name), a network with the same range stays apart, and an instance
with two NICs has both addresses in order."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pycdlib
import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import (
    create_instance,
    create_network,
    delete_instances,
    delete_networks,
    namespace_key,
)

pytestmark = pytest.mark.integration
BOOT = 150  # TCG guests on a shared, loaded 2-core machine

# Try for up to 60 s (the other guest may still be booting), then report.
PING_UNTIL_UP = """
reach() {
    for i in $(seq 60); do ping -c1 -W1 "$1" >/dev/null 2>&1 && return 0; sleep 1; done
    return 1
}
"""


def marker_lines(log: str, marker: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if line.startswith(marker)]


def test_dhcp_ping_dns_and_isolation_of_overlapping_ranges(netcloud: Cloud) -> None:
    api = netcloud.api()
    blue = create_network(netcloud, "blue", "10.60.0.0/24", provide_dns=True, provide_nat=False)
    # The same range again: its guests must not see blue's.
    green = create_network(netcloud, "green", "10.60.0.0/24", provide_nat=False)
    alpha = create_instance(
        netcloud, "alpha", [{"network_uuid": "blue", "address": "10.60.0.10"}],
        user_data=PING_UNTIL_UP + """
reach 10.60.0.11 && echo "NET-TEST peer ok" || echo "NET-TEST peer FAILED"
nslookup beta | sed -n 's/^Address: \\([0-9.]*\\)$/NET-TEST dns \\1/p'
""")
    beta = create_instance(netcloud, "beta", [{"network_uuid": blue["uuid"],
                                               "address": "10.60.0.11"}])
    # gamma has alpha's very address, on green.
    gamma = create_instance(
        netcloud, "gamma", [{"network_uuid": "green", "address": "10.60.0.10"}],
        user_data=PING_UNTIL_UP + """
reach 10.60.0.1 && echo "NET-TEST router ok" || echo "NET-TEST router FAILED"
ping -c3 -W1 10.60.0.11 >/dev/null 2>&1 && echo "NET-TEST crossed" || echo "NET-TEST isolated"
""")
    try:
        assert [i["ipv4"] for i in alpha["interfaces"]] == ["10.60.0.10"]

        # A taken address is refused, and a create that fails reserves nothing.
        response = api.post("/instances", {
            "name": "thief", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
            "network": [{"network_uuid": "blue", "address": "10.60.0.11"}],
        })
        assert response.status_code == 409, response.text
        assert "already in use" in response.json()["error"]

        alpha_log = netcloud.wait_console(alpha["uuid"], "SFCLOUD-READY", BOOT)
        gamma_log = netcloud.wait_console(gamma["uuid"], "SFCLOUD-READY", BOOT)
        beta_log = netcloud.wait_console(beta["uuid"], "SFCLOUD-READY", BOOT)
        # DHCP gave each guest exactly its reserved address, with the network's prefix.
        assert "SFCLOUD-IP: eth0 10.60.0.10/24" in alpha_log
        assert "SFCLOUD-IP: eth0 10.60.0.11/24" in beta_log
        assert "SFCLOUD-IP: eth0 10.60.0.10/24" in gamma_log
        assert "NET-TEST peer ok" in alpha_log, alpha_log
        assert "NET-TEST dns 10.60.0.11" in alpha_log, alpha_log
        assert "NET-TEST router ok" in gamma_log, gamma_log
        assert "NET-TEST isolated" in gamma_log, gamma_log

        # Another namespace sees none of it.
        outsider = netcloud.api("guests-outsider", namespace_key(netcloud, "guests-outsider"))
        nic = alpha["interfaces"][0]["uuid"]
        for method, path in (("GET", f"/interfaces/{nic}"), ("POST", f"/interfaces/{nic}/float"),
                             ("POST", f"/interfaces/{nic}/defloat"),
                             ("GET", f"/instances/{alpha['uuid']}/interfaces")):
            assert outsider.request(method, path).status_code == 404, path

        shown = api.get(f"/networks/{blue['uuid']}/interfaces").json()
        assert sorted(i["ipv4"] for i in shown) == ["10.60.0.10", "10.60.0.11"]
        assert all(i["state"] == "created" for i in shown)
        # Deleting a network that live instances use is refused with their names.
        response = api.delete("/networks/blue")
        assert response.status_code == 409
        assert "alpha" in response.json()["error"] and "beta" in response.json()["error"]
    finally:
        delete_instances(netcloud, alpha["uuid"], beta["uuid"], gamma["uuid"])
        delete_networks(netcloud, blue["uuid"], green["uuid"])
    # Released with their instances: addresses, MACs and interfaces.
    assert netcloud.etcd_keys(f"ipam/{blue['uuid']}/") == []
    assert netcloud.etcd_keys("macs/") == []
    assert netcloud.etcd_keys("interfaces/") == []


def test_two_nics_on_two_networks_in_order(netcloud: Cloud) -> None:
    red = create_network(netcloud, "red", "10.61.0.0/24", provide_nat=False)
    white = create_network(netcloud, "white", "10.62.0.0/25", provide_nat=False)
    both = create_instance(
        netcloud, "both", [{"network_uuid": "red"},
                           # The test image has drivers for virtio NICs only.
                           {"network_uuid": "white", "macaddress": "02:00:00:aa:bb:cc",
                            "model": "virtio"}],
        user_data=PING_UNTIL_UP + """
reach 10.61.0.1 && echo "NET-TEST eth0 router ok"
reach 10.62.0.1 && echo "NET-TEST eth1 router ok"
""")
    try:
        nics = netcloud.api().get(f"/instances/{both['uuid']}/interfaces").json()
        assert [n["order"] for n in nics] == [0, 1]
        assert [n["network_uuid"] for n in nics] == [red["uuid"], white["uuid"]]
        assert nics[1]["macaddr"] == "02:00:00:aa:bb:cc" and nics[1]["model"] == "virtio"
        assert nics[0]["macaddr"] != nics[1]["macaddr"]
        log = netcloud.wait_console(both["uuid"], "SFCLOUD-READY", BOOT)
        assert marker_lines(log, "SFCLOUD-IP:") == [
            f"SFCLOUD-IP: eth0 {nics[0]['ipv4']}/24", f"SFCLOUD-IP: eth1 {nics[1]['ipv4']}/25",
        ]
        assert "NET-TEST eth0 router ok" in log and "NET-TEST eth1 router ok" in log, log

        # The config drive describes both NICs as cloud-init reads them.
        data = network_data(netcloud.instance_dir(both["uuid"]) / "config.iso")
        assert [link["ethernet_mac_address"] for link in data["links"]] == \
            [n["macaddr"] for n in nics]
        assert [n["ip_address"] for n in data["networks"]] == [n["ipv4"] for n in nics]
        assert data["networks"][0]["routes"][0]["gateway"] == "10.61.0.1"
        assert data["networks"][1]["routes"] == []  # one default route, on eth0
        assert data["networks"][1]["netmask"] == "255.255.255.128"
        assert {link["mtu"] for link in data["links"]} == {1450}
        # Shown embedded in the instance too, as Shaken Fist's client likes it.
        shown = netcloud.api().get(f"/instances/{both['uuid']}").json()
        assert [i["uuid"] for i in shown["interfaces"]] == [n["uuid"] for n in nics]
        # dnsmasq's hosts file is exactly the reserved MAC/address pairs.
        directory = (netcloud.state_dir / "node" / netcloud.node / "networks"
                     / f"{red['vxlan_id']:06x}")
        assert (directory / "hosts").read_text() == f"{nics[0]['macaddr']},{nics[0]['ipv4']},both\n"
        assert re.search(r"^dhcp-range=10\.61\.0\.0,static,", (directory / "dnsmasq.conf")
                         .read_text(), re.M)
    finally:
        delete_instances(netcloud, both["uuid"])
    wait_for(lambda: (directory / "hosts").read_text() == "", 30, "the DHCP entry removed")
    delete_networks(netcloud, red["uuid"], white["uuid"])
    assert not directory.exists()


def network_data(iso_path: Path) -> dict:
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/network_data.json")
        return json.loads(out.getvalue())
    finally:
        iso.close()
