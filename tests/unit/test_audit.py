"""The invariant checker (cloudstate.audit, nodeagent.check) on records made
here: a consistent cloud shows no drift, and each way of breaking it is
found and named."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloudstate.audit import Drift, EtcdState, Limits, audit, check_names
from cloudstate.etcd import KeyValue
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import (
    AddressReservation,
    Disk,
    InstanceObserved,
    InstanceSpec,
    InterfaceSpec,
    Keypair,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
    Record,
)
from nodeagent.check import Host, NodeSite, check_node
from nodeagent.domainxml import DomainOwner
from nodeagent.net.names import NetNames

NOW = time.time()
NODE = "node-a"
INSTANCE = "11111111-1111-4111-8111-111111111111"
NETWORK = "22222222-2222-4222-8222-222222222222"
IFACE = "33333333-3333-4333-8333-333333333333"
KEYPAIR = "44444444-4444-4444-8444-444444444444"
MAC = "02:00:00:aa:bb:cc"


@dataclass
class World:
    keys: Keys = field(default_factory=lambda: Keys("/audit"))
    kvs: dict[str, bytes] = field(default_factory=dict)
    uncopied: set[str] = field(default_factory=set)  # node copies left out

    def put(self, key: str, value: Record | str | bytes) -> None:
        self.kvs[key] = value.to_json() if isinstance(value, Record) else \
            value.encode() if isinstance(value, str) else value

    def drop(self, key: str) -> None:
        del self.kvs[key]

    def state(self, settle: float = 60, limits: Limits | None = None) -> EtcdState:
        every = {**self._copies(), **self.kvs}
        kvs = {key: KeyValue(key, value, n + 1, n + 1, 1, 0)
               for n, (key, value) in enumerate(every.items()) if key not in self.uncopied}
        return EtcdState(self.keys, kvs, NOW, settle, limits or Limits())

    def _copies(self) -> dict[str, bytes]:
        """Each node's copies of its instances' records, as their writers
        keep them (a copy put here explicitly wins)."""
        k, found = self.keys, {}
        for family, copy in ((k.instances, k.node_instance),
                             (k.observed_instances, k.node_observed_instance)):
            for key, value in self.kvs.items():
                if key.startswith(family):
                    try:
                        node = json.loads(value)["node"]
                    except (ValueError, KeyError):
                        continue
                    found[copy(node, key[len(family):])] = value
        return found


def consistent() -> World:
    """One node (the network node), a network with one floated NIC of a
    running instance, and a keypair: everything reserved as the portal and
    agents leave it."""
    w, k = World(), Keys("/audit")
    w.put(k.node(NODE), NodeInfo(name=NODE, ip="127.0.0.1", vcpus=2, memory_mib=2048,
                                 disk_total_gb=10, disk_free_gb=10, virt_type="qemu",
                                 machine="pc"))
    w.put(k.network_node_role, NODE)
    net = NetworkSpec(uuid=NETWORK, name="net", namespace="team", netblock="10.0.0.0/24",
                      vxid=42, floating_gateway="192.0.2.2")
    w.put(k.network(NETWORK), net)
    w.put(k.observed_network(NETWORK), NetworkObserved(node=NODE, applied=[IFACE]))
    w.put(k.network_name("team", "net"), NETWORK)
    w.put(k.vxlan(42), NETWORK)
    w.put(k.network_fence(NETWORK), "1")
    w.put(k.address(FLOATING_POOL, "192.0.2.2"), AddressReservation(
        address="192.0.2.2", type="gateway", user=["network", NETWORK], network_uuid=NETWORK))
    spec = InstanceSpec(uuid=INSTANCE, name="vm", namespace="team", cpus=1, memory=512,
                        disks=[Disk(device="vda", size_gb=1)], node=NODE, interfaces=[IFACE],
                        created_at=NOW - 10)
    w.put(k.instance(INSTANCE), spec)
    w.put(k.instance_name("team", "vm"), INSTANCE)
    w.put(k.observed_instance(INSTANCE), InstanceObserved(node=NODE, state="created",
                                                          power_state="on",
                                                          applied_power_generation=1,
                                                          updated_at=NOW - 3600))
    w.put(k.interface(IFACE), InterfaceSpec(uuid=IFACE, network_uuid=NETWORK,
                                            instance_uuid=INSTANCE, namespace="team", order=0,
                                            macaddr=MAC, ipv4="10.0.0.5",
                                            floating="192.0.2.9"))
    w.put(k.address(NETWORK, "10.0.0.5"), AddressReservation(
        address="10.0.0.5", type="instance", user=["interface", IFACE], network_uuid=NETWORK))
    w.put(k.address(FLOATING_POOL, "192.0.2.9"), AddressReservation(
        address="192.0.2.9", type="floating", user=["interface", IFACE], network_uuid=NETWORK))
    w.put(k.mac(MAC), IFACE)
    w.put(k.keypair(KEYPAIR), Keypair(uuid=KEYPAIR, name="kp", namespace="team",
                                      public_key="ssh-ed25519 AAAA", fingerprint="SHA256:x"))
    w.put(k.keypair_name("team", "kp"), KEYPAIR)
    return w


def test_a_consistent_cloud_shows_no_drift() -> None:
    assert audit(consistent().state()) == []


def test_instances_need_no_name_key_and_may_share_a_name() -> None:
    """As in Shaken Fist: instances are told apart by UUID."""
    w = consistent()
    w.drop(w.keys.instance_name("team", "vm"))
    twin = "77777777-7777-4777-8777-777777777777"
    w.put(w.keys.instance(twin), spec_of(w).replace(uuid=twin, interfaces=[]))
    assert [d for d in audit(w.state()) if d.check == "names"] == []


def spec_of(w: World) -> InstanceSpec:
    return InstanceSpec.from_json(w.kvs[w.keys.instance(INSTANCE)])


def delete_instance(w: World, *, torn_down: bool, ago: float = 1) -> None:
    spec = spec_of(w)
    w.put(w.keys.instance(INSTANCE), spec.replace(desired="deleted", deleted_at=NOW - ago))
    w.drop(w.keys.instance_name("team", "vm"))
    if torn_down:
        w.put(w.keys.observed_instance(INSTANCE), InstanceObserved(node=NODE, state="deleted",
                                                                   power_state="off"))


def released(w: World) -> None:
    """What the agent gives back with the deleted report."""
    for key in (w.keys.interface(IFACE), w.keys.address(NETWORK, "10.0.0.5"), w.keys.mac(MAC)):
        w.drop(key)


# Each breakage, and the check that must name it (with a word of its detail).
BREAKAGES: dict[str, tuple[Callable[[World], None], str, str]] = {
    "name index gone": (lambda w: w.drop(w.keys.keypair_name("team", "kp")),
                        "names", "does not point at it"),
    "an instance's old name key pointing at another": (
        lambda w: w.put(w.keys.instance_name("team", "vm"),
                        "66666666-6666-4666-8666-666666666666"),
        "names", "does not exist"),
    "name of a deleted instance kept": (
        lambda w: (delete_instance(w, torn_down=True), released(w),
                   w.put(w.keys.instance_name("team", "vm"), INSTANCE)),
        "names", "was deleted"),
    "two networks, one name": (
        lambda w: w.put(w.keys.network("55555555-5555-4555-8555-555555555555"), NetworkSpec(
            uuid="55555555-5555-4555-8555-555555555555", name="net", namespace="team",
            netblock="10.1.0.0/24", vxid=43)),
        "names", "does not point at it"),
    "keypair name pointing nowhere": (lambda w: w.drop(w.keys.keypair(KEYPAIR)),
                                      "names", "does not exist"),
    "observed without desired": (
        lambda w: w.put(w.keys.observed_instance("66666666-6666-4666-8666-666666666666"),
                        InstanceObserved(node=NODE)),
        "observed", "without a desired"),
    "address not released with the deleted report": (
        lambda w: delete_instance(w, torn_down=True), "interfaces", "not released"),
    "address reservation leaked": (
        lambda w: (delete_instance(w, torn_down=True), released(w),
                   w.put(w.keys.address(NETWORK, "10.0.0.5"), AddressReservation(
                       address="10.0.0.5", type="instance", user=["interface", IFACE],
                       network_uuid=NETWORK))),
        "addresses", "does not use it"),
    "address outside its network": (
        lambda w: w.put(w.keys.address(NETWORK, "10.9.9.9"), AddressReservation(
            address="10.9.9.9", type="instance", user=["interface", IFACE],
            network_uuid=NETWORK)),
        "addresses", "not an address of"),
    "MAC index lost": (lambda w: w.drop(w.keys.mac(MAC)), "interfaces", "MAC"),
    "MAC leaked": (lambda w: w.put(w.keys.mac("02:00:00:00:00:01"), IFACE), "macs",
                   "does not use it"),
    "floating address leaked": (
        lambda w: w.put(w.keys.address(FLOATING_POOL, "192.0.2.50"), AddressReservation(
            address="192.0.2.50", type="floating", user=["interface", IFACE],
            network_uuid=NETWORK)),
        "addresses", "floats interface"),
    "VXLAN id lost": (lambda w: w.drop(w.keys.vxlan(42)), "vxlan", "not reserved"),
    "VXLAN id kept after the network went": (
        lambda w: (w.put(w.keys.network(NETWORK), NetworkSpec.from_json(
            w.kvs[w.keys.network(NETWORK)]).replace(desired="deleted", deleted_at=NOW)),
            w.put(w.keys.observed_network(NETWORK), NetworkObserved(node=NODE,
                                                                    state="deleted"))),
        "vxlan", "was released"),
    "fence of a blob that is gone": (
        lambda w: w.put(w.keys.blob_fence("77777777-7777-4777-8777-777777777777"), "1"),
        "fences", "blob is gone"),
    "node overcommitted": (
        lambda w: w.put(w.keys.instance(INSTANCE), spec_of(w).replace(memory=4096)),
        "capacity", "MiB placed"),
    "instance on an unknown node": (
        lambda w: (w.put(w.keys.instance(INSTANCE), spec_of(w).replace(node="elsewhere")),
                   w.drop(w.keys.observed_instance(INSTANCE))),
        "capacity", "not a registered node"),
    "stuck deleting": (lambda w: delete_instance(w, torn_down=False, ago=3600),
                       "stuck", "deleting for"),
    "stuck initial": (
        lambda w: (w.drop(w.keys.observed_instance(INSTANCE)),
                   w.put(w.keys.instance(INSTANCE), spec_of(w).replace(created_at=NOW - 3600))),
        "stuck", "initial"),
    "power action never applied": (
        lambda w: w.put(w.keys.instance(INSTANCE), spec_of(w).replace(
            power=spec_of(w).power.replace(generation=2, action="pause"))),
        "stuck", "power action pause"),
    "a node's copy missing": (
        lambda w: w.uncopied.add(w.keys.node_instance(NODE, INSTANCE)),
        "copies", "is missing"),
    "a node's copy behind its record": (
        lambda w: w.put(w.keys.node_observed_instance(NODE, INSTANCE),
                        InstanceObserved(node=NODE, state="creating")),
        "copies", "differs"),
    "a copy left after its record": (
        lambda w: w.put(w.keys.node_instance(NODE, "66666666-6666-4666-8666-666666666666"),
                        spec_of(w)),
        "copies", "a copy of no record"),
    "undecodable record": (lambda w: w.put(w.keys.instance(INSTANCE), b"{not json"),
                           "records", "does not decode"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_breakage_is_found(breakage: str) -> None:
    world = consistent()
    breaking, check, words = BREAKAGES[breakage]
    breaking(world)
    drift = audit(world.state())
    assert any(d.check == check and words in d.detail for d in drift), drift


def test_work_in_flight_is_not_drift_until_it_lasts() -> None:
    """A delete not yet done is normal; the same delete an hour old is stuck."""
    world = consistent()
    delete_instance(world, torn_down=False, ago=5)
    assert audit(world.state(settle=60)) == []
    assert [d.check for d in audit(world.state(settle=1))] == ["stuck"]


def test_a_deleted_instance_released_and_torn_down_is_consistent() -> None:
    world = consistent()
    delete_instance(world, torn_down=True)
    released(world)
    # The floating address waits for the network node to remove its NAT.
    assert [d.check for d in audit(world.state())] == ["addresses"]
    world.drop(world.keys.address(FLOATING_POOL, "192.0.2.9"))
    assert audit(world.state()) == []


def test_checks_are_named_and_can_be_picked() -> None:
    assert {"names", "addresses", "interfaces", "stuck", "capacity"} <= set(check_names())
    world = consistent()
    world.drop(world.keys.vxlan(42))
    assert audit(world.state(), only=["names"]) == []
    with pytest.raises(ValueError, match="no such checks"):
        audit(world.state(), only=["nonsense"])


# --- the node's half ---------------------------------------------------------------------------

NAMES = NetNames.for_cluster("audit", node=NODE)
SITE = NodeSite(node=NODE, owner=DomainOwner(cluster="audit", node=NODE), names=NAMES,
                instances_dir=Path("/nonexistent/instances"),
                networks_dir=Path("/nonexistent/networks"))


def settled_host() -> Host:
    """What the node holds for consistent(): the guest running with its
    files and tap, the network's bridge, namespace, dnsmasq and NAT."""
    return Host(
        domains={INSTANCE: "on"},
        instance_files={INSTANCE: ["config.iso", "console.log", "vda.qcow2"]},
        links={NAMES.bridge(42): "bridge", NAMES.vxlan(42): "vxlan", NAMES.veth(42): "veth",
               NAMES.tap(IFACE): "tun"},
        namespaces=[NAMES.netns(42)],
        dhcp_hosts={42: {(MAC, "10.0.0.5")}},
        dnsmasq_running={42},
        dnat={42: {("192.0.2.9", "10.0.0.5")}},
    )


def test_a_settled_node_shows_no_drift() -> None:
    assert check_node(consistent().state(), SITE, settled_host()) == []


NODE_BREAKAGES: dict[str, tuple[Callable[[Host], None], str, str]] = {
    "orphan domain": (lambda h: h.domains.update({"88888888-8888-4888-8888-888888888888": "on"}),
                      "domains", "no instance placed"),
    "domain missing": (lambda h: h.domains.clear(), "domains", "domain is missing"),
    "power state differs": (lambda h: h.domains.update({INSTANCE: "paused"}), "domains",
                            "libvirt says paused"),
    "directory left": (lambda h: h.instance_files.update(
        {"99999999-9999-4999-8999-999999999999": ["vda.qcow2"]}), "files", "directory left"),
    "half-written file": (lambda h: h.instance_files[INSTANCE].append(".config.iso.tmp"),
                          "files", "temporary file"),
    "disk missing": (lambda h: h.instance_files[INSTANCE].remove("vda.qcow2"), "files",
                     "missing vda.qcow2"),
    "orphan tap": (lambda h: h.links.update({NAMES.tap("abcdef01-0000"): "tun"}), "taps",
                   "no NIC"),
    "tap missing": (lambda h: h.links.pop(NAMES.tap(IFACE)), "taps", "tap"),
    "orphan bridge": (lambda h: h.links.update({NAMES.bridge(99): "bridge"}), "links",
                      "VXLAN id 99"),
    "orphan namespace": (lambda h: h.namespaces.append(NAMES.netns(99)), "namespaces",
                         "no network here"),
    "namespace missing": (lambda h: h.namespaces.clear(), "namespaces", "missing"),
    "DHCP host leaked": (lambda h: h.dhcp_hosts[42].add(("02:00:00:00:00:09", "10.0.0.9")),
                         "dhcp", "reserved for no one"),
    "DHCP host lost": (lambda h: h.dhcp_hosts[42].clear(), "dhcp", "does not hand out"),
    "dnsmasq dead": (lambda h: h.dnsmasq_running.clear(), "dhcp", "not running"),
    "NAT element leaked": (lambda h: h.dnat[42].add(("192.0.2.77", "10.0.0.7")), "nat",
                           "floated by no NIC"),
    "NAT element lost": (lambda h: h.dnat[42].clear(), "nat", "does not forward"),
}


@pytest.mark.parametrize("breakage", sorted(NODE_BREAKAGES))
def test_each_node_breakage_is_found(breakage: str) -> None:
    host = settled_host()
    breaking, check, words = NODE_BREAKAGES[breakage]
    breaking(host)
    drift = check_node(consistent().state(), SITE, host)
    assert any(d.check == check and words in d.detail for d in drift), drift


def test_a_deleted_instance_leaves_nothing_on_its_node() -> None:
    world = consistent()
    delete_instance(world, torn_down=True)
    released(world)
    world.drop(world.keys.address(FLOATING_POOL, "192.0.2.9"))
    host = settled_host()
    drift = check_node(world.state(), SITE, host)
    assert {d.check for d in drift} == {"domains", "files", "taps", "dhcp", "nat"}, drift
    empty = Host(links={NAMES.bridge(42): "bridge", NAMES.vxlan(42): "vxlan",
                        NAMES.veth(42): "veth"},
                 namespaces=[NAMES.netns(42)], dhcp_hosts={42: set()}, dnsmasq_running={42},
                 dnat={42: set()})
    assert check_node(world.state(), SITE, empty) == []


def test_drift_reads_as_a_line() -> None:
    assert str(Drift("names", "x", "y")) == "[names] x: y"
