"""The hypervisor half of the cloud's invariants: what one node holds
(libvirt domains, instance files, taps, bridges, namespaces, dnsmasq hosts,
nftables elements) against what etcd says it should hold.

Run on a node, as its agent runs (same settings, same certificate):

    python -m nodeagent.check [--settle SECONDS] [--json]

It prints one line per drift and exits 1 if there is any, 0 if none. It
only reads: the agent repairs, this tells. The etcd half (names, addresses,
stuck states...) is ``cloudstate.audit``, run by the portal's
``manage.py check-cloud``; tests run both (tests.support.invariants).

The machine is read once into a ``Host``; the checks are functions of
(etcd state, site, host) registered with ``@node_check``, so they are tried
on fakes in unit tests, and a new kind of kernel object (security groups'
chains and sets, say) adds a check of its own here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import subprocess
import sys
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cloudstate.audit import DEFAULT_SETTLE, Drift, EtcdState
from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.model import InstanceSpec, NetworkSpec
from nodeagent.domainxml import DomainOwner, read_owner
from nodeagent.net import dnsmasq
from nodeagent.net.context import vxid_of_dir
from nodeagent.net.names import NetNames

CONFIG_DRIVE = "config.iso"
CONSOLE_LOG = "console.log"


@dataclass(frozen=True)
class NodeSite:
    """Where one node keeps what it makes."""

    node: str
    owner: DomainOwner
    names: NetNames
    instances_dir: Path
    networks_dir: Path
    libvirt_uri: str = "qemu:///system"


@dataclass
class Host:
    """What the machine holds of one node's cloud objects, read at once."""

    domains: dict[str, str] = field(default_factory=dict)  # uuid -> power state
    # uuid -> names of the files in the instance's directory
    instance_files: dict[str, list[str]] = field(default_factory=dict)
    links: dict[str, str | None] = field(default_factory=dict)  # ours: name -> kind
    namespaces: list[str] = field(default_factory=list)  # ours
    # vxid -> (mac, address) bindings of its dnsmasq hosts file
    dhcp_hosts: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    dnsmasq_running: set[int] = field(default_factory=set)  # vxids
    # vxid -> (floating, private) DNAT pairs of its namespace's nftables table,
    # for the namespaces that have one
    dnat: dict[int, set[tuple[str, str]]] = field(default_factory=dict)


NodeCheck = Callable[[EtcdState, NodeSite, Host], Iterable[Drift]]
_NODE_CHECKS: dict[str, NodeCheck] = {}


def node_check(name: str) -> Callable[[NodeCheck], NodeCheck]:
    def register(fn: NodeCheck) -> NodeCheck:
        if name in _NODE_CHECKS:
            raise ValueError(f"a node check named {name!r} is already registered")
        _NODE_CHECKS[name] = fn
        return fn

    return register


def check_node(state: EtcdState, site: NodeSite, host: Host) -> list[Drift]:
    found: list[Drift] = []
    for name in sorted(_NODE_CHECKS):
        found.extend(_NODE_CHECKS[name](state, site, host))
    return sorted(set(found))


# --- what etcd wants of this node ------------------------------------------------------------


def _local(state: EtcdState, site: NodeSite) -> dict[str, InstanceSpec]:
    return {uuid: spec for uuid, spec in state.instances.items() if spec.node == site.node}


def _expects_guest(state: EtcdState, spec: InstanceSpec) -> bool:
    """It was built (created) and is not being deleted: its domain must exist."""
    observed = state.observed_instances.get(spec.uuid)
    return spec.desired != "deleted" and observed is not None and observed.state == "created"


def _is_network_node(state: EtcdState, site: NodeSite) -> bool:
    kv = state.kvs.get(state.keys.network_node_role)
    return kv is not None and kv.value.decode(errors="replace") == site.node


def _alive_networks(state: EtcdState) -> dict[str, NetworkSpec]:
    """Networks that need their infrastructure: wanted, or still used."""
    used = {iface.network_uuid for iface in state.interfaces.values()}
    return {uuid: net for uuid, net in state.networks.items()
            if net.desired != "deleted" or uuid in used}


def _wanted_vxids(state: EtcdState, site: NodeSite) -> tuple[set[int], set[int]]:
    """(VXLAN ids whose bridge belongs here, those whose namespace does)."""
    alive = _alive_networks(state)
    local = _local(state, site)
    bridges = {alive[iface.network_uuid].vxid for iface in state.interfaces.values()
               if iface.instance_uuid in local and iface.network_uuid in alive}
    namespaces: set[int] = set()
    if _is_network_node(state, site):
        namespaces = {net.vxid for net in alive.values()}
        bridges |= namespaces
    return bridges, namespaces


# --- the checks -------------------------------------------------------------------------------


@node_check("domains")
def check_domains(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    """Every domain of ours is a live instance placed here; every built
    instance has its domain, in the power state its record shows."""
    local = _local(state, site)
    for uuid in host.domains:
        spec = local.get(uuid)
        if spec is None:
            yield Drift("domains", f"domain {uuid}", "no instance placed on this node")
        elif state.torn_down(uuid):
            yield Drift("domains", f"domain {uuid}", "its instance was reported deleted")
    for uuid, spec in local.items():
        if not _expects_guest(state, spec):
            continue
        observed = state.observed_instances[uuid]
        actual = host.domains.get(uuid)
        if actual is None:
            yield Drift("domains", f"instance {uuid}", "created, but its domain is missing")
        elif actual != observed.power_state:
            yield Drift("domains", f"instance {uuid}",
                        f"shown {observed.power_state}, libvirt says {actual}")


@node_check("files")
def check_files(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    """An instance's directory holds exactly its disks, config drive and
    console log; no directory outlives its instance; no temporary file is
    left by an interrupted write."""
    local = _local(state, site)
    for uuid, files in host.instance_files.items():
        spec = local.get(uuid)
        subject = f"instance {uuid}"
        if spec is None or state.torn_down(uuid):
            yield Drift("files", subject, f"directory left in {site.instances_dir}")
            continue
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                yield Drift("files", subject, f"temporary file {name} left behind")
        if not _expects_guest(state, spec):
            continue
        wanted = {f"{disk.device}.qcow2" for disk in spec.disks if disk.type == "disk"}
        if spec.configdrive != "none":
            wanted.add(CONFIG_DRIVE)
        if missing := wanted - set(files):
            yield Drift("files", subject, f"missing {', '.join(sorted(missing))}")
        extra = set(files) - wanted - {CONSOLE_LOG}
        extra = {name for name in extra if not name.startswith(".")}
        if extra:
            yield Drift("files", subject, f"unexpected {', '.join(sorted(extra))}")
    for uuid, spec in local.items():
        if _expects_guest(state, spec) and uuid not in host.instance_files:
            yield Drift("files", f"instance {uuid}", "created, but its directory is missing")


@node_check("taps")
def check_taps(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    """Each tap of ours is a NIC of a running guest placed here, and each
    running guest's NICs have their taps."""
    local = _local(state, site)
    taps = {site.names.tap(iface.uuid): iface for iface in state.interfaces.values()
            if iface.instance_uuid in local}
    prefix = f"{site.names.tag}t"
    for link in host.links:
        if link.startswith(prefix) and site.names.parse_link(link) is None:
            iface = taps.get(link)
            if iface is None:
                yield Drift("taps", f"tap {link}", "no NIC of an instance on this node")
            elif host.domains.get(iface.instance_uuid) not in ("on", "paused"):
                yield Drift("taps", f"tap {link}",
                            f"its instance {iface.instance_uuid} is not running")
    for tap, iface in taps.items():
        if host.domains.get(iface.instance_uuid) in ("on", "paused") and tap not in host.links:
            yield Drift("taps", f"interface {iface.uuid}",
                        f"its guest runs, its tap {tap} is missing")


@node_check("links")
def check_links(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    """Bridges, VXLAN links and veths only for networks this node serves,
    and each such network has its bridge."""
    bridges, namespaces = _wanted_vxids(state, site)
    for link in host.links:
        parsed = site.names.parse_link(link)
        if parsed is None:
            continue
        kind, vxid = parsed
        wanted = namespaces if kind in ("veth", "egress") else bridges
        if vxid not in wanted:
            yield Drift("links", f"{kind} {link}", f"no network with VXLAN id {vxid} is here")
    for vxid in bridges:
        if site.names.bridge(vxid) not in host.links:
            yield Drift("links", f"bridge {site.names.bridge(vxid)}",
                        f"missing for VXLAN id {vxid}")


@node_check("namespaces")
def check_namespaces(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    _, wanted = _wanted_vxids(state, site)
    for namespace in host.namespaces:
        vxid = site.names.parse_netns(namespace)
        if vxid is None or vxid not in wanted:
            yield Drift("namespaces", f"namespace {namespace}", "no network here wants it")
    for vxid in wanted:
        if site.names.netns(vxid) not in host.namespaces:
            yield Drift("namespaces", f"namespace {site.names.netns(vxid)}", "missing")


@node_check("dhcp")
def check_dhcp(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    """On the network node, each network with DHCP has a dnsmasq whose
    hosts are exactly its reserved (MAC, address) pairs; no other network
    has dnsmasq files."""
    _, wanted = _wanted_vxids(state, site)
    by_vxid = {net.vxid: net for net in _alive_networks(state).values()}
    for vxid, bindings in host.dhcp_hosts.items():
        net = by_vxid.get(vxid)
        subject = f"dnsmasq {vxid:06x}"
        if vxid not in wanted or net is None or not net.provide_dhcp:
            yield Drift("dhcp", subject, "hosts file of a network that has no DHCP here")
            continue
        reserved = {(iface.macaddr, iface.ipv4) for iface in state.interfaces.values()
                    if iface.network_uuid == net.uuid and iface.ipv4 is not None}
        for mac, address in sorted(bindings - reserved):
            yield Drift("dhcp", subject, f"hands out {address} to {mac}, reserved for no one")
        for mac, address in sorted(reserved - bindings):
            yield Drift("dhcp", subject, f"does not hand out {address} to {mac}")
        if vxid not in host.dnsmasq_running:
            yield Drift("dhcp", subject, "not running")
    for vxid in wanted:
        net = by_vxid.get(vxid)
        if net is not None and net.provide_dhcp and vxid not in host.dhcp_hosts:
            yield Drift("dhcp", f"dnsmasq {vxid:06x}", f"missing for network {net.uuid}")


@node_check("nat")
def check_nat(state: EtcdState, site: NodeSite, host: Host) -> Iterator[Drift]:
    """Where a network's NAT is in place, it forwards exactly its floating
    addresses, each to the NIC that holds it."""
    by_vxid = {net.vxid: net for net in state.networks.values()}
    for vxid, pairs in host.dnat.items():
        net = by_vxid.get(vxid)
        if net is None:
            yield Drift("nat", f"nftables {vxid:06x}", "table of no network")
            continue
        wanted = {(iface.floating, iface.ipv4) for iface in state.interfaces.values()
                  if iface.network_uuid == net.uuid and iface.floating and iface.ipv4}
        for floating, private in sorted(pairs - wanted):
            yield Drift("nat", f"nftables {vxid:06x}",
                        f"forwards {floating} to {private}, floated by no NIC")
        for floating, private in sorted(wanted - pairs):
            yield Drift("nat", f"nftables {vxid:06x}",
                        f"does not forward {floating} to {private}")


# --- reading the machine -------------------------------------------------------------------

_DNAT = re.compile(r"ip daddr (\S+) dnat to (\S+)")


def read_host(site: NodeSite) -> Host:
    """What the machine holds of this node's objects (blocking calls: the
    CLI's own, or a test's thread)."""
    from nodeagent.net import kernel

    host = Host()
    host.domains = _domains(site)
    if site.instances_dir.is_dir():
        for entry in site.instances_dir.iterdir():
            try:
                uuid = str(uuidlib.UUID(entry.name))
            except ValueError:
                continue
            host.instance_files[uuid] = sorted(p.name for p in entry.iterdir())
    host.links = {name: kind for name, kind in kernel.links().items()
                  if site.names.owns(name)}
    host.namespaces = kernel.namespaces(site.names.netns_prefix)
    if site.networks_dir.is_dir():
        for directory in site.networks_dir.iterdir():
            vxid = vxid_of_dir(directory)
            hosts = directory / dnsmasq.HOSTS
            if vxid is None or not hosts.exists():
                continue
            host.dhcp_hosts[vxid] = dnsmasq.bindings(hosts.read_text())
            if dnsmasq.running_pid(directory) is not None:
                host.dnsmasq_running.add(vxid)
    for namespace in host.namespaces:
        vxid = site.names.parse_netns(namespace)
        if vxid is None:
            continue
        listed = subprocess.run(
            ["ip", "netns", "exec", namespace, "nft", "list", "table", "ip",
             site.names.nft_table], capture_output=True, text=True, timeout=30)
        if listed.returncode == 0:
            host.dnat[vxid] = set(_DNAT.findall(listed.stdout))
    return host


def _domains(site: NodeSite) -> dict[str, str]:
    import libvirt

    from nodeagent.hypervisor import power_state_of

    conn = libvirt.open(site.libvirt_uri)
    try:
        found = {}
        for dom in conn.listAllDomains(0):
            try:
                if read_owner(ET.fromstring(dom.XMLDesc(0))) == site.owner:
                    found[dom.UUIDString()] = power_state_of(dom.state()[0])
            except libvirt.libvirtError:
                continue  # undefined while we looked
        return found
    finally:
        conn.close()


# --- the command ------------------------------------------------------------------------------


def site_of(settings: object) -> NodeSite:
    """The site of this node from the agent's settings."""
    from nodeagent.settings import AgentSettings

    assert isinstance(settings, AgentSettings)
    return NodeSite(
        node=settings.node_name,
        owner=DomainOwner(cluster=settings.common.cluster, node=settings.node_name),
        names=NetNames.for_cluster(settings.common.cluster, settings.net_tag,
                                   node=settings.node_name),
        instances_dir=settings.instances_dir,
        networks_dir=settings.networks_dir,
        libvirt_uri=settings.libvirt_uri,
    )


async def _read_state(settings: object, settle: float) -> EtcdState:
    from nodeagent.settings import AgentSettings

    assert isinstance(settings, AgentSettings)
    etcd = Etcd(settings.common.etcd_endpoints, tls=settings.credentials)
    try:
        return await EtcdState.read(etcd, Keys(settings.common.etcd_prefix), now=time.time(),
                                    settle=settle)
    finally:
        await etcd.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nodeagent.check",
        description="Compare what this node holds (libvirt, files, kernel) with etcd.")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE,
                        help="seconds work may be in flight before it counts as stuck")
    parser.add_argument("--json", action="store_true", help="print the drift as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from nodeagent.settings import AgentSettings

    settings = AgentSettings()
    site = site_of(settings)
    state = asyncio.run(_read_state(settings, args.settle))
    drift = check_node(state, site, read_host(site))
    if args.json:
        print(json.dumps([d.__dict__ for d in drift], indent=2))
    else:
        for item in drift:
            print(item)
        print(f"node {site.node}: {len(drift)} drift" if drift
              else f"node {site.node}: no drift")
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
