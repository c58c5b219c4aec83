"""What this node's firewall must do, worked out from etcd: the ports it
filters, the security group rules in force on each, the sets they match
against, and the conntrack zone of each network.

A Policy is plain data, built from one Snapshot (``build``) and nothing
else, so the same etcd always gives the same policy. ``firewall`` renders
it as nftables, and ``allows`` answers the question conntrack cleanup asks
after a change: would this tracked flow still be let in now?

Groups are checked before they get here (nodeagent.records refuses a
record no portal would write) and their rules again here
(cloudstate.secgroups). A group refused either way keeps the chains it had
in the last policy applied (none, if it never had any: its ports then let
nothing in or out but DHCP), and the ports that use it report why.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cloudstate import netvalidation, secgroups
from cloudstate.model import (
    AddressSet,
    InterfaceSpec,
    NetworkSpec,
    SecurityGroup,
    SecurityRule,
)
from cloudstate.secgroups import Ports
from cloudstate.validation import ValidationError
from nodeagent.net.names import NetNames
from nodeagent.net.snapshot import Snapshot

log = logging.getLogger(__name__)

IPV4 = ipaddress.IPv4Network
DHCP_SERVER, DHCP_CLIENT = 67, 68
UDP, ICMP = 17, 1
ECHO_REQUEST = 8


@dataclass(frozen=True)
class Rule:
    """One allow rule as the firewall applies it."""

    direction: str
    protocol: int | None  # None: any
    ports: Ports | None  # tcp/udp destination ports; None: all
    icmp_type: int | None
    icmp_code: int | None
    # The remote end: None is anywhere; otherwise CIDRs, either inline or
    # held by a named set (a remote group's members, an address set).
    remote: tuple[str, ...] | None
    remote_set: str | None = None

    def matches(self, flow: Flow, remote_address: str) -> bool:
        if self.protocol is not None and flow.protocol != self.protocol:
            return False
        if self.ports is not None and flow.dport not in self.ports:
            return False
        if self.icmp_type is not None and flow.icmp_type != self.icmp_type:
            return False
        if self.icmp_code is not None and flow.icmp_code != self.icmp_code:
            return False
        if self.remote is None:
            return True
        address = ipaddress.IPv4Address(remote_address)
        return any(address in IPV4(cidr) for cidr in self.remote)


@dataclass(frozen=True)
class GroupChain:
    """One group's rules of one direction, for the ports of one network
    (a remote group's members are those on the same network)."""

    name: str
    group: str
    generation: int
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Port:
    """A guest's interface on this node, by the name its tap will have."""

    tap: str
    interface: str
    instance: str
    network: str
    zone: int
    mac: str
    address: str | None  # its own IPv4 address
    allowed: tuple[str, ...] = ()  # further CIDRs it may send from
    # Its network's router, whose pings it answers whatever its groups say
    # (Shaken Fist's `network ping` from the network node).
    router: str | None = None
    filtered: bool = True  # port security
    groups: dict[str, int] = field(default_factory=dict)  # uuid -> generation applied
    egress: tuple[str, ...] = ()  # GroupChain names, in order
    ingress: tuple[str, ...] = ()
    error: str | None = None  # why its groups could not all be applied as they are now

    @property
    def sources(self) -> tuple[str, ...]:
        """The CIDRs it may send from."""
        own = (f"{self.address}/32",) if self.address else ()
        return collapse((*own, *self.allowed))

    def owns(self, address: str) -> bool:
        ip = ipaddress.IPv4Address(address)
        return any(ip in IPV4(cidr) for cidr in self.sources)


@dataclass(frozen=True)
class Segment:
    """A network as this node carries it: its bridge, trusted ports (the
    VXLAN link, the network node's router veth) and conntrack zone."""

    network: str
    bridge: str
    zone: int
    netblock: str
    router: str
    uplinks: tuple[str, ...]
    known: tuple[str, ...]  # every address of its interfaces, on any node


@dataclass(frozen=True)
class Flow:
    """A tracked connection's original direction, as conntrack lists it."""

    zone: int
    protocol: int
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True)
class Policy:
    segments: tuple[Segment, ...] = ()
    ports: tuple[Port, ...] = ()
    chains: dict[str, GroupChain] = field(default_factory=dict)
    sets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def bridges(self) -> dict[str, int]:
        return {segment.bridge: segment.zone for segment in self.segments}

    @property
    def uplinks(self) -> tuple[str, ...]:
        return tuple(sorted(name for s in self.segments for name in s.uplinks))

    def port(self, interface: str) -> Port | None:
        return next((p for p in self.ports if p.interface == interface), None)

    def segment_of(self, zone: int) -> Segment | None:
        return next((s for s in self.segments if s.zone == zone), None)

    # --- what a flow may do ------------------------------------------------------------------

    def allows(self, flow: Flow) -> bool:
        """Whether the flow would be let through now, were it new."""
        local = [p for p in self.ports if p.zone == flow.zone]
        senders = [p for p in local if p.owns(flow.src)]
        receivers = [p for p in local if p.owns(flow.dst)]
        if senders and not any(self._port_allows(p, "egress", flow, flow.dst)
                               for p in senders):
            return False
        return not receivers or any(self._port_allows(p, "ingress", flow, flow.src)
                                    for p in receivers)

    def _port_allows(self, port: Port, direction: str, flow: Flow, remote: str) -> bool:
        if not port.filtered or _baseline(direction, flow, port.router):
            return True
        chains = port.egress if direction == "egress" else port.ingress
        return any(rule.matches(flow, remote) for name in chains
                   for rule in self.chains[name].rules)

    def stale(self, flow: Flow) -> bool:
        """Whether the flow involves an address of its network that no
        interface has any more (a guest deleted while it was tracked)."""
        segment = self.segment_of(flow.zone)
        if segment is None:
            return True
        network = IPV4(segment.netblock)
        for address in (flow.src, flow.dst):
            ip = ipaddress.IPv4Address(address)
            if ip in network and address != segment.router and \
                    ip not in (network.network_address, network.broadcast_address) and \
                    not any(ip in IPV4(cidr) for cidr in segment.known):
                return True
        return False


def _baseline(direction: str, flow: Flow, router: str | None) -> bool:
    """DHCP, which every guest needs whatever its groups say (the spoofing
    checks keep guests from answering it), and its router's pings."""
    if direction == "ingress" and flow.protocol == ICMP and flow.src == router \
            and flow.icmp_type == ECHO_REQUEST:
        return True
    if flow.protocol != UDP:
        return False
    if direction == "egress":
        return (flow.sport, flow.dport) == (DHCP_CLIENT, DHCP_SERVER)
    return (flow.sport, flow.dport) == (DHCP_SERVER, DHCP_CLIENT)


def collapse(cidrs: Iterable[str]) -> tuple[str, ...]:
    """CIDRs merged where they overlap or touch, sorted: what an interval
    set may hold."""
    networks = [IPV4(c, strict=False) for c in cidrs]
    return tuple(str(n) for n in ipaddress.collapse_addresses(networks))


# --- building one from etcd ---------------------------------------------------------------------


def build(snap: Snapshot, *, node: str, names: NetNames, zones: Mapping[int, int],
          wanted_networks: Iterable[str], network_node: bool,
          previous: Policy | None = None) -> Policy:
    """The policy for ``node``: a port for each interface of an instance
    placed here, a segment for each network in ``wanted_networks`` (those
    whose bridge this node has), zones from ``zones`` (vxid -> zone)."""
    segments = []
    for uuid in sorted(wanted_networks):
        found = snap.networks.get(uuid)
        if found is None:
            continue
        spec = found[0]
        on_network = snap.on(uuid)
        known = collapse(c for i in on_network for c in _sources(i))
        uplinks = [names.vxlan(spec.vxid)] + ([names.veth(spec.vxid)] if network_node else [])
        segments.append(Segment(network=uuid, bridge=names.bridge(spec.vxid),
                                zone=zones[spec.vxid], netblock=spec.netblock,
                                router=spec.router, uplinks=tuple(uplinks), known=known))
    builder = _Builder(snap, names, {s.network: s for s in segments}, previous)
    ports = []
    for iface in sorted(snap.interfaces.values(), key=lambda i: i.uuid):
        if snap.node_of(iface) != node or iface.network_uuid not in builder.segments:
            continue
        if (problem := _unusable(iface)) is not None:
            # Left out: its tap then passes nothing (fail closed).
            log.warning("interface %s is not filtered (so passes nothing): %s",
                        iface.uuid, problem)
            continue
        ports.append(builder.port(iface))
    return Policy(segments=tuple(segments), ports=tuple(ports), chains=builder.chains,
                  sets=builder.sets)


def _unusable(iface: InterfaceSpec) -> str | None:
    """Why an interface record can't be rendered (etcd may hold what no
    portal wrote), or None."""
    try:
        if str(uuidlib.UUID(iface.uuid)) != iface.uuid:
            return "its uuid is not in canonical form"
        netvalidation.mac_address(iface.macaddr)
        if iface.ipv4 is not None:
            ipaddress.IPv4Address(iface.ipv4)
        secgroups.allowed_addresses(list(iface.allowed_addresses))
    except (ValueError, ValidationError) as exc:
        return str(exc)
    return None


def _sources(iface: InterfaceSpec) -> list[str]:
    """The CIDRs an interface may send from (none, for a record that can't be used)."""
    if _unusable(iface) is not None:
        return []
    own = [f"{iface.ipv4}/32"] if iface.ipv4 else []
    return own + list(iface.allowed_addresses)


class _Builder:
    """Chains and sets, each made once however many ports use it."""

    def __init__(self, snap: Snapshot, names: NetNames, segments: Mapping[str, Segment],
                 previous: Policy | None):
        self.snap = snap
        self.names = names
        self.segments = segments
        self.previous = previous or Policy()
        self.chains: dict[str, GroupChain] = {}
        self.sets: dict[str, tuple[str, ...]] = {}
        self._errors: dict[str, str | None] = {}

    def port(self, iface: InterfaceSpec) -> Port:
        segment = self.segments[iface.network_uuid]
        common = dict(tap=self.names.tap(iface.uuid), interface=iface.uuid,
                      instance=iface.instance_uuid, network=iface.network_uuid,
                      zone=segment.zone, mac=iface.macaddr.lower(), address=iface.ipv4,
                      allowed=tuple(iface.allowed_addresses), router=segment.router)
        if not iface.port_security:
            return Port(**common, filtered=False)  # type: ignore[arg-type]
        egress, ingress, groups, errors = [], [], {}, []
        for uuid in iface.security_groups:
            group = self.snap.groups.get(uuid)
            if group is None and uuid in self.snap.refused_groups:
                # Its record was refused: what was applied of it stays.
                error: str | None = (f"security group {uuid}: "
                                     f"{self.snap.refused_groups[uuid]}")
                out, into = (self._kept(uuid, segment, direction)
                             for direction in ("egress", "ingress"))
            elif group is None:
                errors.append(f"security group {uuid} does not exist")
                continue
            else:
                error = self._check(group)
                out = self._chain(group, segment, "egress", error)
                into = self._chain(group, segment, "ingress", error)
            if error is not None:
                errors.append(error)
            if out is not None and into is not None:
                egress.append(out.name)
                ingress.append(into.name)
                groups[uuid] = out.generation
        return Port(**common, groups=groups, egress=tuple(egress),  # type: ignore[arg-type]
                    ingress=tuple(ingress), error="; ".join(errors) or None)

    def _check(self, group: SecurityGroup) -> str | None:
        if group.uuid not in self._errors:
            try:
                for rule in group.rules:
                    secgroups.recheck(rule)
                self._errors[group.uuid] = None
            except ValidationError as exc:
                self._errors[group.uuid] = f"security group {group.name}: {exc}"
        return self._errors[group.uuid]

    def _chain(self, group: SecurityGroup, segment: Segment, direction: str,
               error: str | None) -> GroupChain | None:
        name = chain_name(group.uuid, segment.network, direction, self.snap)
        if name in self.chains:
            return self.chains[name]
        if error is not None:
            return self._kept(group.uuid, segment, direction)
        rules = tuple(self._rule(rule, segment) for rule in group.rules
                      if rule.direction == direction)
        chain = self.chains[name] = GroupChain(name=name, group=group.uuid,
                                               generation=group.generation, rules=rules)
        return chain

    def _kept(self, group: str, segment: Segment, direction: str) -> GroupChain | None:
        """The chain applied before (with the sets it used), if anything."""
        name = chain_name(group, segment.network, direction, self.snap)
        if name in self.chains:
            return self.chains[name]
        kept = self.previous.chains.get(name)
        if kept is not None:
            self.chains[name] = kept
            for rule in kept.rules:
                if rule.remote_set and rule.remote_set in self.previous.sets:
                    self.sets[rule.remote_set] = self.previous.sets[rule.remote_set]
        return kept

    def _rule(self, rule: SecurityRule, segment: Segment) -> Rule:
        remote: tuple[str, ...] | None = None
        remote_set = None
        if rule.remote_cidrs:
            remote = collapse(rule.remote_cidrs)
        elif rule.remote_group:
            remote_set = group_set_name(rule.remote_group, segment.network, self.snap)
            remote = self.sets.setdefault(remote_set, self._members(rule.remote_group,
                                                                    segment.network))
        elif rule.remote_address_set:
            remote_set = address_set_name(rule.remote_address_set)
            found: AddressSet | None = self.snap.address_sets.get(rule.remote_address_set)
            remote = self.sets.setdefault(remote_set, _cidrs_of(found))
        return Rule(direction=rule.direction, protocol=secgroups.protocol_number(rule.protocol),
                    ports=secgroups.parse_ports(rule.ports), icmp_type=rule.icmp_type,
                    icmp_code=rule.icmp_code, remote=remote, remote_set=remote_set)

    def _members(self, group: str, network: str) -> tuple[str, ...]:
        return collapse(c for iface in self.snap.on(network)
                        if iface.port_security and group in iface.security_groups
                        for c in _sources(iface))


def _cidrs_of(address_set: AddressSet | None) -> tuple[str, ...]:
    """An address set's CIDRs; none (matching nothing) if it is gone or
    holds what is not a CIDR."""
    if address_set is None:
        return ()
    try:
        return collapse(secgroups.cidrs(address_set.cidrs, "cidrs",
                                        secgroups.MAX_ADDRESS_SET_CIDRS))
    except ValidationError as exc:
        log.warning("address set %s matches nothing: %s", address_set.uuid, exc)
        return ()


# --- names --------------------------------------------------------------------------------------


def _vx(network: str, snap: Snapshot) -> str:
    found: tuple[NetworkSpec, int] | None = snap.networks.get(network)
    return f"{found[0].vxid:06x}" if found else "000000"


def chain_name(group: str, network: str, direction: str, snap: Snapshot) -> str:
    return f"g_{group.replace('-', '')}_{_vx(network, snap)}_{direction[0]}"


def group_set_name(group: str, network: str, snap: Snapshot) -> str:
    return f"rg_{group.replace('-', '')}_{_vx(network, snap)}"


def address_set_name(address_set: str) -> str:
    return f"as_{address_set.replace('-', '')}"
