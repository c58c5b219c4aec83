"""The pure parts of networking: names, validation, rendering of dnsmasq,
nftables and network_data, NIC XML, and the address pool's choices."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cloudstate import ipam, netvalidation
from cloudstate.model import InterfaceSpec, NetworkObserved, NetworkSpec
from cloudstate.states import network_state
from cloudstate.validation import ValidationError
from nodeagent import domainxml
from nodeagent.domainxml import DomainDisk, DomainInterface, DomainOwner
from nodeagent.net import dnsmasq, networkdata, nftables
from nodeagent.net.names import NetNames, tag_for
from nodeagent.net.snapshot import Snapshot

NET = NetworkSpec(uuid="n1", name="blue", namespace="system", netblock="10.0.0.0/24",
                  vxid=0x12AB, provide_dns=True)


# --- names ---------------------------------------------------------------------------------


def test_names_fit_linux_and_carry_the_cluster_tag() -> None:
    names = NetNames.for_cluster("test-1234abcd")
    assert names.tag == tag_for("test-1234abcd") != tag_for("sfcloud")
    vxid = 2**24 - 1
    for name in (names.bridge(vxid), names.vxlan(vxid), names.veth(vxid), names.egress(vxid),
                 names.uplink_bridge, names.tap("0f8e2c1a-0000-4000-8000-000000000001")):
        assert len(name) <= 15 and names.owns(name)
    assert names.parse_link(names.vxlan(0x12AB)) == ("vxlan", 0x12AB)
    assert names.parse_link(names.tap("0f8e2c1a-0000")) is None
    assert names.parse_link("eth0") is None
    assert names.parse_netns(names.netns(77)) == 77
    assert names.parse_netns("other-net-00004d") is None
    # Namespaces are shared by a whole host: each node only reads its own.
    node_a = NetNames.for_cluster("test-1234abcd", node="a")
    node_b = NetNames.for_cluster("test-1234abcd", node="b")
    assert node_a.netns(77) != node_b.netns(77)
    assert node_b.parse_netns(node_a.netns(77)) is None
    assert node_a.bridge(77) == node_b.bridge(77)  # links live in each node's own namespace
    with pytest.raises(ValueError):
        NetNames("bad tag")


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    (" 10.0.0.0/24 ", "10.0.0.0/24"), ("192.168.5.0/29", "192.168.5.0/29"),
    ("172.16.0.0/12", "172.16.0.0/12"),
])
def test_netblocks(value: str, expected: str) -> None:
    assert str(netvalidation.netblock(value)) == expected


@pytest.mark.parametrize("value,message", [
    ("10.0.0.0/30", "smaller than a /29"), ("10.0.0.0", "not an address range"),
    ("10.0.0.0/7", "larger than a /8"), ("224.0.0.0/24", "multicast"),
    ("0.0.0.0/8", "this host's own network"), ("x/24", '"x" is not an IPv4 address'),
    (None, "null is not an address range"),
    # Said in the portal's words: the part that is wrong, and no IPv6 the cloud doesn't offer.
    ("10.123.0.0/33", "/33 is not a prefix length: give one from /8 to /29"),
    ("fd00::/64", "IPv6 range: networks here are IPv4 only"),
    # Host bits are a typo to point out, not something to change silently (as Shaken Fist).
    ("192.168.1.2/24", "192.168.1.2/24 has host bits set: the range that address is in is "
                       "192.168.1.0/24; give that"),
])
def test_bad_netblocks(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        netvalidation.netblock(value)
    # Not Python's: no ipaddress message, no repr in single quotes.
    assert "does not appear" not in str(raised.value)
    assert not re.search(r"'[^' ]*'", raised.value.message)


def test_addresses_macs_and_models() -> None:
    network = ipaddress.IPv4Network("10.0.0.0/29")
    assert netvalidation.address_in(" 10.0.0.2 ", network) == "10.0.0.2"
    for bad, message in (("10.0.0.1", "router"), ("10.0.0.0", "network's own"),
                         ("10.0.0.7", "broadcast"), ("10.0.1.2", "not in"), ("x", "IPv4")):
        with pytest.raises(ValidationError, match=message):
            netvalidation.address_in(bad, network)
    assert netvalidation.mac_address("02-00-00-AA-BB-CC") == "02:00:00:aa:bb:cc"
    for bad in ("01:00:00:00:00:01", "00:00:00:00:00:00", "02:00:00:aa:bb", "zz:00:00:00:00:00"):
        with pytest.raises(ValidationError):
            netvalidation.mac_address(bad)
    assert netvalidation.nic_model(None) == "virtio"
    with pytest.raises(ValidationError, match="not offered"):
        netvalidation.nic_model("pcnet")
    with pytest.raises(ValidationError, match="reserved"):
        netvalidation.network_name("Floating")


def test_floating_settings() -> None:
    network = netvalidation.floating_network("192.0.2.0/28")
    assert network is not None
    assert netvalidation.floating_router(network, "") == "192.0.2.1"
    assert netvalidation.floating_network("") is None
    with pytest.raises(ValueError, match="not in"):
        netvalidation.floating_router(network, "198.51.100.1")
    with pytest.raises(ValueError, match="not a valid CIDR"):
        netvalidation.floating_network("192.0.2.1/28")  # host bits: a typo, not a pool


# --- the pool ------------------------------------------------------------------------------


def test_pool_never_hands_out_what_is_taken_or_reserved_by_rule() -> None:
    pool = ipam.Pool.for_network("n1", "10.0.0.0/29")
    assert pool.capacity == 5
    chosen = pool.choose(set(), count=5)
    assert sorted(chosen) == [f"10.0.0.{i}" for i in range(2, 7)]
    assert pool.choose({"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}) == ["10.0.0.6"]
    with pytest.raises(ipam.PoolExhausted, match="no free address"):
        pool.choose({f"10.0.0.{i}" for i in range(2, 7)})
    floating = ipam.Pool.floating(ipaddress.IPv4Network("192.0.2.0/28"), "192.0.2.1")
    assert "192.0.2.1" not in floating.choose(set(), count=13)


def test_random_macs_are_local_unicast() -> None:
    macs = {ipam.random_mac() for _ in range(50)}
    assert len(macs) == 50
    for mac in macs:
        assert netvalidation.mac_address(mac) == mac
        assert int(mac[:2], 16) & 2  # locally administered
    assert all(1 <= ipam.random_vxid() <= ipam.MAX_VXID for _ in range(50))


# --- states --------------------------------------------------------------------------------


def test_network_states() -> None:
    observed = NetworkObserved(node="n")
    assert network_state(NET, None, False) == "initial"
    assert network_state(NET, observed, True) == "created"
    gone = NET.replace(desired="deleted")
    assert network_state(gone, observed, True) == "delete-wait"
    assert network_state(gone, observed, False) == "deleting"
    assert network_state(gone, observed.replace(state="deleted"), False) == "deleted"
    assert NET.router == "10.0.0.1" and NET.netmask == "255.255.255.0"


# --- dnsmasq ------------------------------------------------------------------------------


def dhcp(**changes: object) -> dnsmasq.DnsmasqConfig:
    base = dnsmasq.DnsmasqConfig(
        network="10.0.0.0/24", netmask="255.255.255.0", router="10.0.0.1", mtu=1450, dns=False,
        domain="system.sfcloud",
        hosts=(dnsmasq.DhcpHost("02:00:00:00:00:01", "10.0.0.5", "vm1"),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_dnsmasq_hands_out_only_reserved_addresses(tmp_path: Path) -> None:
    conf = dnsmasq.render_conf(dhcp(), tmp_path)
    assert "dhcp-range=10.0.0.0,static,255.255.255.0,1h" in conf
    assert f"dhcp-hostsfile={tmp_path / 'hosts'}" in conf
    assert "leasefile-ro" in conf and "port=0" in conf and "interface=int0" in conf
    assert "dhcp-option=option:mtu,1450" in conf
    assert dnsmasq.render_hosts(dhcp()) == "02:00:00:00:00:01,10.0.0.5,vm1\n"
    with_dns = dnsmasq.render_conf(dhcp(dns=True), tmp_path)
    assert "port=53" in with_dns and "no-resolv" in with_dns
    assert "dhcp-option=option:dns-server,10.0.0.1" in with_dns
    assert dnsmasq.render_names(dhcp()) == "10.0.0.5 vm1.system.sfcloud vm1\n"
    assert "server=" not in with_dns and "dns-server" not in conf
    # The network's extra names: a bare one in its domain too, a dotted one as given.
    extra = dhcp(names=(("db", "10.0.0.9"), ("www.example.org", "192.0.2.7")))
    assert dnsmasq.render_names(extra) == ("10.0.0.5 vm1.system.sfcloud vm1\n"
                                           "10.0.0.9 db.system.sfcloud db\n"
                                           "192.0.2.7 www.example.org\n")


def test_dnsmasq_forwards_other_names_to_the_configured_resolvers(tmp_path: Path) -> None:
    upstream = ("192.0.2.53", "198.51.100.53")
    with_dns = dnsmasq.render_conf(dhcp(dns=True, upstream=upstream), tmp_path)
    assert "server=192.0.2.53\nserver=198.51.100.53" in with_dns
    assert "dhcp-option=option:dns-server,10.0.0.1" in with_dns
    # Without DNS of its own, the network hands the resolvers out directly.
    without = dnsmasq.render_conf(dhcp(upstream=upstream), tmp_path)
    assert "dhcp-option=option:dns-server,192.0.2.53,198.51.100.53" in without
    assert "server=" not in without


def test_watcher_reports_an_exit_once() -> None:
    import asyncio
    import subprocess

    async def run() -> list[str]:
        exits: list[str] = []
        done = asyncio.Event()
        watcher = dnsmasq.Watcher(lambda key: (exits.append(key), done.set()))
        child = subprocess.Popen(["sleep", "30"])
        watcher.watch("net", child.pid)
        watcher.watch("net", child.pid)  # the same pid twice: one watch
        child.kill()
        child.wait()
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.05)
        watcher.close()
        return exits

    assert asyncio.run(run()) == ["net"]


# --- nftables ------------------------------------------------------------------------------


def test_nft_rules_nat_and_floating() -> None:
    rules = nftables.EgressRules(table="sfab12_net", netblock="10.0.0.0/24",
                                 gateway="192.0.2.5",
                                 floating=(nftables.Floating("192.0.2.9", "10.0.0.7"),))
    text = nftables.render(rules)
    # Replaced whole, in one transaction, even if it does not exist yet.
    assert text.startswith("table ip sfab12_net\ndelete table ip sfab12_net\n")
    assert 'iifname "eg0" ip daddr 192.0.2.9 dnat to 10.0.0.7' in text
    assert 'oifname "eg0" ip saddr 10.0.0.7 snat to 192.0.2.9' in text
    assert 'oifname "eg0" ip saddr 10.0.0.0/24 snat to 192.0.2.5' in text
    # A floated guest's own address is rewritten before the network's.
    assert text.index("snat to 192.0.2.9") < text.index("snat to 192.0.2.5")
    assert "policy drop" in text
    assert nftables.digest_of(text) == nftables.digest_of(nftables.render(rules))
    no_nat = nftables.render(dataclasses.replace(rules, gateway=None))
    assert "snat to 192.0.2.5" not in no_nat
    assert 'ip saddr 10.0.0.7 accept' in no_nat and 'ip saddr 10.0.0.0/24 accept' not in no_nat
    assert nftables.digest_of(no_nat) != nftables.digest_of(text)
    # A routed address passes both ways as it is, without NAT.
    routed = nftables.render(dataclasses.replace(rules, routed=("192.0.2.12",)))
    assert 'iifname "eg0" oifname "int0" ip daddr 192.0.2.12 accept' in routed
    assert 'iifname "int0" oifname "eg0" ip saddr 192.0.2.12 accept' in routed
    assert "192.0.2.12" not in routed.split("chain forward")[0]


def test_routed_addresses_go_back_to_the_pool_once_unrouted() -> None:
    from cloudstate.model import AddressReservation
    from nodeagent.net import releases
    from nodeagent.net.snapshot import Snapshot

    def reservation(address: str, kind: str) -> AddressReservation:
        return AddressReservation(address=address, type=kind, user=["network", NET.uuid],
                                  network_uuid=NET.uuid)

    snap = Snapshot(floating={"k/192.0.2.12": (reservation("192.0.2.12", "routed"), 5),
                              "k/192.0.2.13": (reservation("192.0.2.13", "routed"), 6)})
    spec = NET.replace(routed=["192.0.2.12"])
    assert releases.unused_floating(snap, spec) == [("k/192.0.2.13", 6)]


# --- the guest's view ---------------------------------------------------------------------


def iface(order: int, ipv4: str | None, mac: str) -> InterfaceSpec:
    return InterfaceSpec(uuid=f"i{order}", network_uuid="n1", instance_uuid="vm", namespace="s",
                         order=order, macaddr=mac, ipv4=ipv4)


def test_network_data_lists_nics_in_order_with_one_default_route() -> None:
    other = NET.replace(uuid="n2", netblock="10.1.0.0/25", provide_dns=False)
    data = networkdata.build([(iface(1, "10.1.0.9", "02:00:00:00:00:02"), other),
                              (iface(0, "10.0.0.5", "02:00:00:00:00:01"), NET),
                              (iface(2, None, "02:00:00:00:00:03"), NET)])
    assert [link["id"] for link in data["links"]] == ["eth0", "eth1", "eth2"]
    assert [n["link"] for n in data["networks"]] == ["eth0", "eth1"]
    assert data["networks"][0]["routes"] == [
        {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]
    assert data["networks"][1]["routes"] == []
    assert data["networks"][1]["netmask"] == "255.255.255.128"
    assert data["services"] == [{"type": "dns", "address": "10.0.0.1"}]
    # The router answers names when its network does; otherwise the cloud's resolvers.
    upstream = ("192.0.2.53",)
    assert networkdata.build([(iface(0, "10.0.0.5", "02:00:00:00:00:01"), NET)],
                             upstream)["services"] == [{"type": "dns", "address": "10.0.0.1"}]
    assert networkdata.build([(iface(0, "10.1.0.9", "02:00:00:00:00:02"), other)],
                             upstream)["services"] == [{"type": "dns", "address": "192.0.2.53"}]


def test_nic_xml_bridge_or_plain_tap() -> None:
    def render(nic: DomainInterface) -> ET.Element:
        xml = domainxml.render(
            template_path=None, owner=DomainOwner("c", "n"), uuid="0f8e2c1a-0000-4000-8000-"
            "000000000001", domain_name="sfcloud-0f8e2c1a-0000-4000-8000-000000000001",
            name="vm", namespace="s", cpus=1, memory_mib=128, virt_type="qemu", machine="pc",
            disks=[DomainDisk(device="vda", path=Path("/d/vda.qcow2"))], interfaces=[nic],
            console_log=Path("/d/c.log"), video_model="cirrus")
        return ET.fromstring(xml).find("devices/interface")

    bridged = render(DomainInterface(bridge="sfab12b0012ab", mac="02:00:00:00:00:01",
                                     mtu=1450, tap="sfab12t12345678"))
    assert bridged.get("type") == "bridge"
    assert bridged.find("source").get("bridge") == "sfab12b0012ab"
    assert bridged.find("target").get("dev") == "sfab12t12345678"
    assert bridged.find("mtu").get("size") == "1450"
    plain = render(DomainInterface(bridge=None, mac="02:00:00:00:00:01", tap="sfab12t12345678"))
    assert plain.get("type") == "ethernet" and plain.find("source") is None
    # A NIC plugged into a running guest is described the same way as in the domain.
    for nic, element in ((DomainInterface(bridge="sfab12b0012ab", mac="02:00:00:00:00:01",
                                          mtu=1450, tap="sfab12t12345678"), bridged),
                         (DomainInterface(bridge=None, mac="02:00:00:00:00:01",
                                          tap="sfab12t12345678"), plain)):
        alone = ET.fromstring(domainxml.interface_xml(nic))
        assert ET.tostring(alone) == ET.tostring(element).strip() or \
            {(e.tag, tuple(sorted(e.attrib.items()))) for e in alone.iter()} == \
            {(e.tag, tuple(sorted(e.attrib.items()))) for e in element.iter()}
        assert set(domainxml.interface_macs(f"<domain><devices>{ET.tostring(alone).decode()}"
                                            "</devices></domain>")) == {"02:00:00:00:00:01"}


def test_a_deleted_networks_links_stay_when_a_live_network_reuses_its_vxlan_id() -> None:
    from nodeagent.net.reconciler import vxid_reused_here
    from nodeagent.net.snapshot import Snapshot

    old = dataclasses.replace(NET, uuid="old", desired="deleted")
    new = dataclasses.replace(NET, uuid="new", name="green")
    other = dataclasses.replace(NET, uuid="other", vxid=NET.vxid + 1)
    snap = Snapshot(networks={"old": (old, 1), "new": (new, 2), "other": (other, 3)})

    def wanted_here(_: Snapshot, spec: NetworkSpec) -> bool:
        return spec.desired != "deleted"

    assert vxid_reused_here(snap, old, wanted_here)
    # Nothing live shares the id: the old network's links may go.
    assert not vxid_reused_here(Snapshot(networks={"old": (old, 1), "other": (other, 3)}),
                                old, wanted_here)
    # A network never counts as reusing its own id.
    assert not vxid_reused_here(snap, new, lambda _s, spec: spec.uuid == "new")


def test_a_network_s_nodes_come_from_its_interfaces_alone() -> None:
    """An agent follows only its own node's instances (nodeagent.scope): the
    interfaces say which nodes a network's mesh joins."""
    ours = InterfaceSpec(uuid="i1", network_uuid="n", instance_uuid="a", namespace="ns",
                         order=0, macaddr="02:00:00:00:00:01", ipv4=None, node="node-a")
    theirs = InterfaceSpec(uuid="i2", network_uuid="n", instance_uuid="b", namespace="ns",
                           order=0, macaddr="02:00:00:00:00:02", ipv4=None, node="node-b")
    snap = Snapshot(interfaces={"i1": ours, "i2": theirs})
    assert snap.nodes_on("n") == {"node-a", "node-b"}
    assert snap.local_networks("node-b") == {"n"}
