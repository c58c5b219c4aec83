"""The cloud's invariants over etcd: what must hold between its records once
nothing is in flight, and which transitional states have lasted too long.

The auditor only reads. It takes every key under the cloud's prefix, read
at one revision (``EtcdState``), and runs each registered check over it;
each check yields ``Drift``: what is wrong, about which key or object. No
drift means etcd is consistent with itself. What the machines hold is the
other half, checked on each node against the same state
(``nodeagent.check``).

Checks are small functions registered with ``@check("name")``: a new kind
of object (security groups, say) adds its own beside the others, and every
caller (tests, ``manage.py check-cloud``) runs it without being changed.

A check must only report what can't be true of a settled cloud. Work in
flight (an instance still being built, a delete not yet done) is drift
only once it is older than ``settle`` seconds, by the record's own clock.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from cloudstate.etcd import Etcd, KeyValue
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import (
    AddressReservation,
    Blob,
    InstanceObserved,
    InstanceSpec,
    InterfaceSpec,
    Keypair,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
    Record,
)

R = TypeVar("R", bound=Record)

# How long work may be in flight before it counts as stuck, by default.
DEFAULT_SETTLE = 300.0


@dataclass(frozen=True, order=True)
class Drift:
    """One thing that is not as it should be."""

    check: str  # the check that found it
    subject: str  # the key, or the object (kind and uuid), it is about
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.detail}"


@dataclass(frozen=True)
class Limits:
    """How much the scheduler may place on a node (its settings)."""

    cpu_overcommit: float = 16.0
    ram_overcommit: float = 1.0
    ram_reserved_mib: int = 0

    def memory_mib(self, node: NodeInfo) -> int:
        return int(max(node.memory_mib - self.ram_reserved_mib, 0) * self.ram_overcommit)

    def cpus(self, node: NodeInfo) -> int:
        return int(node.vcpus * self.cpu_overcommit)


@dataclass
class EtcdState:
    """Every key of the cloud at one revision, with its records decoded on
    first use. Records that don't decode are reported by ``check_records``
    and left out of the rest."""

    keys: Keys
    kvs: dict[str, KeyValue]
    now: float
    settle: float = DEFAULT_SETTLE
    limits: Limits = field(default_factory=Limits)
    undecodable: list[Drift] = field(default_factory=list)

    @classmethod
    async def read(cls, etcd: Etcd, keys: Keys, *, now: float, settle: float = DEFAULT_SETTLE,
                   limits: Limits | None = None) -> EtcdState:
        kvs, _ = await etcd.get_prefix(keys.root)
        return cls(keys, {kv.key: kv for kv in kvs}, now, settle, limits or Limits())

    def under(self, prefix: str) -> Iterator[tuple[str, KeyValue]]:
        """(rest of the key after ``prefix``, kv) for each key under it."""
        for key, kv in self.kvs.items():
            if key.startswith(prefix):
                yield key[len(prefix):], kv

    def _records(self, prefix: str, kind: type[R]) -> dict[str, R]:
        """Records whose key is ``prefix`` + one more element, by that element."""
        found: dict[str, R] = {}
        for rest, kv in self.under(prefix):
            if not rest or "/" in rest:
                continue
            try:
                found[rest] = kind.from_json(kv.value)
            except (ValueError, TypeError, KeyError) as exc:
                self.undecodable.append(Drift("records", kv.key, f"does not decode: {exc}"))
        return found

    # --- the records, by uuid (or name) ----------------------------------------------------

    @cached_property
    def instances(self) -> dict[str, InstanceSpec]:
        return self._records(self.keys.instances, InstanceSpec)

    @cached_property
    def observed_instances(self) -> dict[str, InstanceObserved]:
        return self._records(self.keys.observed_instances, InstanceObserved)

    @cached_property
    def networks(self) -> dict[str, NetworkSpec]:
        return self._records(self.keys.networks, NetworkSpec)

    @cached_property
    def observed_networks(self) -> dict[str, NetworkObserved]:
        return self._records(self.keys.observed_networks, NetworkObserved)

    @cached_property
    def interfaces(self) -> dict[str, InterfaceSpec]:
        return self._records(self.keys.interfaces, InterfaceSpec)

    @cached_property
    def nodes(self) -> dict[str, NodeInfo]:
        return self._records(self.keys.nodes, NodeInfo)

    @cached_property
    def keypairs(self) -> dict[str, Keypair]:
        return self._records(self.keys.keypairs, Keypair)

    @cached_property
    def blobs(self) -> dict[str, Blob]:
        return self._records(self.keys.blobs, Blob)

    @cached_property
    def reservations(self) -> dict[str, dict[str, AddressReservation]]:
        """pool (a network's uuid, or FLOATING_POOL) -> address -> reservation."""
        found: dict[str, dict[str, AddressReservation]] = defaultdict(dict)
        for rest, kv in self.under(self.keys.ipam):
            pool, _, address = rest.partition("/")
            try:
                found[pool][address] = AddressReservation.from_json(kv.value)
            except (ValueError, TypeError, KeyError) as exc:
                self.undecodable.append(Drift("records", kv.key, f"does not decode: {exc}"))
        return found

    def index(self, prefix: str) -> dict[str, str]:
        """An index family (names, MACs, VXLAN ids): rest of key -> value."""
        return {rest: kv.value.decode(errors="replace") for rest, kv in self.under(prefix)}

    # --- what the records mean together ------------------------------------------------------

    def torn_down(self, uuid: str) -> bool:
        """The instance's node reported it deleted (its guest is gone)."""
        observed = self.observed_instances.get(uuid)
        return observed is not None and observed.state == "deleted"

    def holds_resources(self, spec: InstanceSpec) -> bool:
        """Counts against its node: active, or deleted but not yet torn down."""
        return spec.desired != "deleted" or not self.torn_down(spec.uuid)

    def network_released(self, uuid: str) -> bool:
        """The network node reported the network gone (its reservations released)."""
        observed = self.observed_networks.get(uuid)
        spec = self.networks.get(uuid)
        return (spec is not None and spec.desired == "deleted" and observed is not None
                and observed.state == "deleted")

    def overdue(self, since: float | None) -> bool:
        return since is not None and self.now - since > self.settle


Check = Callable[[EtcdState], Iterable[Drift]]
_CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    """Register an etcd check under ``name`` (also its drift's label)."""

    def register(fn: Check) -> Check:
        if name in _CHECKS:
            raise ValueError(f"an etcd check named {name!r} is already registered")
        _CHECKS[name] = fn
        return fn

    return register


def check_names() -> list[str]:
    return sorted(_CHECKS)


def audit(state: EtcdState, only: Iterable[str] | None = None) -> list[Drift]:
    """Every drift the registered checks find, sorted."""
    wanted = set(only) if only is not None else set(_CHECKS)
    unknown = wanted - set(_CHECKS)
    if unknown:
        raise ValueError(f"no such checks: {', '.join(sorted(unknown))}")
    found: list[Drift] = []
    for name in sorted(wanted):
        found.extend(_CHECKS[name](state))
    # Decoding happens lazily inside the checks; its failures are drift too.
    found.extend(state.undecodable)
    return sorted(set(found))


# --- the checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameIndex:
    """A family of names: names/<family>/<namespace>/<name> -> uuid."""

    family: str
    records: Callable[[EtcdState], dict[str, Any]]
    # Whether a record still holds its name (an instance being deleted has
    # given it back at once).
    holds_name: Callable[[Any], bool]
    # Whether every live record must hold its name (names unique in their
    # namespace). Instances' names need not be unique, as in Shaken Fist:
    # only those made while they were keep a name key, which must still be
    # right while it lasts.
    unique: bool = True


NAME_INDEXES: list[NameIndex] = [
    NameIndex("instances", lambda s: s.instances, lambda r: r.desired != "deleted",
              unique=False),
    NameIndex("networks", lambda s: s.networks, lambda r: r.desired != "deleted"),
    NameIndex("keypairs", lambda s: s.keypairs, lambda r: True),
]


@check("names")
def check_names_index(state: EtcdState) -> Iterator[Drift]:
    """Each name points at the one live object of that name in its namespace,
    and each live object holds its name."""
    for family in NAME_INDEXES:
        records = family.records(state)
        index = state.index(state.keys.names(family.family))
        for rest, uuid in index.items():
            namespace, _, name = rest.partition("/")
            record = records.get(uuid)
            subject = f"names/{family.family}/{rest}"
            if record is None:
                yield Drift("names", subject, f"points at {uuid}, which does not exist")
            elif not family.holds_name(record):
                yield Drift("names", subject, f"points at {uuid}, which was deleted")
            elif (record.namespace, record.name) != (namespace, name):
                yield Drift("names", subject, f"points at {uuid}, named "
                                              f"{record.namespace}/{record.name}")
        for uuid, record in records.items():
            if family.unique and family.holds_name(record) and \
                    index.get(f"{record.namespace}/{record.name}") != uuid:
                yield Drift("names", f"{family.family[:-1]} {uuid}",
                            f"its name {record.namespace}/{record.name} does not point at it")


@check("observed")
def check_observed(state: EtcdState) -> Iterator[Drift]:
    """An agent's report belongs to an object that exists, on its node."""
    for uuid, observed in state.observed_instances.items():
        spec = state.instances.get(uuid)
        if spec is None:
            yield Drift("observed", f"instance {uuid}", "observed record without a desired one")
        elif observed.node != spec.node and observed.state != "deleted":
            yield Drift("observed", f"instance {uuid}",
                        f"reported by {observed.node} but placed on {spec.node}")
    for uuid in state.observed_networks:
        if uuid not in state.networks:
            yield Drift("observed", f"network {uuid}", "observed record without a desired one")


@check("copies")
def check_copies(state: EtcdState) -> Iterator[Drift]:
    """Each instance's records have their node's copies (nodeagent.scope),
    equal to them, and no copy outlives its record."""
    keys = state.keys
    wanted: dict[str, KeyValue] = {}
    for uuid, spec in state.instances.items():
        wanted[keys.node_instance(spec.node, uuid)] = state.kvs[keys.instance(uuid)]
    for uuid, observed in state.observed_instances.items():
        wanted[keys.node_observed_instance(observed.node, uuid)] = \
            state.kvs[keys.observed_instance(uuid)]
    for key, record in wanted.items():
        copy = state.kvs.get(key)
        if copy is None:
            yield Drift("copies", record.key, f"its node's copy {key} is missing")
        elif copy.value != record.value:
            yield Drift("copies", record.key, f"its node's copy {key} differs from it")
    for _, kv in state.under(keys.all_copies):
        if kv.key not in wanted:
            yield Drift("copies", kv.key, "a copy of no record")


@check("stuck")
def check_stuck(state: EtcdState) -> Iterator[Drift]:
    """No object stays in a transitional state longer than ``settle``."""
    for uuid, spec in state.instances.items():
        observed = state.observed_instances.get(uuid)
        if spec.desired == "deleted":
            if not state.torn_down(uuid) and state.overdue(spec.deleted_at):
                yield Drift("stuck", f"instance {uuid}",
                            f"deleting for {state.now - (spec.deleted_at or 0):.0f} s")
        elif observed is None:
            if state.overdue(spec.created_at):
                yield Drift("stuck", f"instance {uuid}",
                            f"initial for {state.now - spec.created_at:.0f} s: no node took it")
        elif observed.state == "creating" and state.overdue(spec.created_at):
            yield Drift("stuck", f"instance {uuid}",
                        f"creating for {state.now - spec.created_at:.0f} s")
        elif (observed.state == "created"
              and observed.applied_power_generation < spec.power.generation
              and state.overdue(observed.updated_at)):
            yield Drift("stuck", f"instance {uuid}",
                        f"power action {spec.power.action} (generation "
                        f"{spec.power.generation}) not applied")
    for uuid, net in state.networks.items():
        if net.desired == "deleted" and not state.network_released(uuid) \
                and state.overdue(net.deleted_at):
            users = [i.instance_uuid for i in state.interfaces.values()
                     if i.network_uuid == uuid]
            why = f" (used by instances {', '.join(sorted(set(users)))})" if users else ""
            yield Drift("stuck", f"network {uuid}",
                        f"deleting for {state.now - (net.deleted_at or 0):.0f} s{why}")


@check("interfaces")
def check_interfaces(state: EtcdState) -> Iterator[Drift]:
    """Each NIC belongs to a live instance that lists it, on a network that
    exists, and holds its address and MAC; a torn-down instance's NICs are
    released with its deleted report."""
    keys = state.keys
    macs = state.index(keys.macs)
    for uuid, iface in state.interfaces.items():
        subject = f"interface {uuid}"
        instance = state.instances.get(iface.instance_uuid)
        if instance is None:
            yield Drift("interfaces", subject, f"its instance {iface.instance_uuid} is gone")
        elif uuid not in instance.interfaces:
            yield Drift("interfaces", subject,
                        f"instance {iface.instance_uuid} does not list it")
        elif state.torn_down(instance.uuid):
            yield Drift("interfaces", subject,
                        f"not released with its torn-down instance {instance.uuid}")
        if iface.network_uuid not in state.networks:
            yield Drift("interfaces", subject, f"its network {iface.network_uuid} is gone")
        if macs.get(iface.macaddr.lower()) != uuid:
            yield Drift("interfaces", subject, f"its MAC {iface.macaddr} is not reserved for it")
        if iface.ipv4 is not None:
            held = state.reservations.get(iface.network_uuid, {}).get(iface.ipv4)
            if held is None or held.user[-1:] != [uuid]:
                yield Drift("interfaces", subject,
                            f"its address {iface.ipv4} is not reserved for it")
        if iface.floating is not None:
            held = state.reservations.get(FLOATING_POOL, {}).get(iface.floating)
            if held is None or held.user[-1:] != [uuid]:
                yield Drift("interfaces", subject,
                            f"its floating address {iface.floating} is not reserved for it")
    for uuid, instance in state.instances.items():
        if state.torn_down(uuid):
            continue
        for nic in instance.interfaces:
            if nic not in state.interfaces:
                yield Drift("interfaces", f"instance {uuid}", f"its interface {nic} is missing")


@check("addresses")
def check_addresses(state: EtcdState) -> Iterator[Drift]:
    """Every reserved address is used by what it names, inside its pool."""
    for pool, reserved in state.reservations.items():
        if pool == FLOATING_POOL:
            yield from _floating_reservations(state, reserved)
            continue
        network = state.networks.get(pool)
        for address, reservation in reserved.items():
            subject = f"ipam/{pool}/{address}"
            if network is None:
                yield Drift("addresses", subject, "reserved on a network that does not exist")
                continue
            if state.network_released(pool):
                yield Drift("addresses", subject, "its network was released, the address not")
            try:
                inside = ipaddress.IPv4Address(address) in network.network
            except ValueError:
                inside = False
            if not inside:
                yield Drift("addresses", subject, f"not an address of {network.netblock}")
            if reservation.user[:1] == ["interface"]:
                iface = state.interfaces.get(reservation.user[-1])
                if iface is None or iface.ipv4 != address or iface.network_uuid != pool:
                    yield Drift("addresses", subject,
                                f"reserved for interface {reservation.user[-1]}, "
                                "which does not use it")


def _floating_reservations(state: EtcdState,
                           reserved: dict[str, AddressReservation]) -> Iterator[Drift]:
    for address, reservation in reserved.items():
        subject = f"ipam/{FLOATING_POOL}/{address}"
        if reservation.type == "gateway":
            network = state.networks.get(reservation.network_uuid)
            if network is None or network.floating_gateway != address:
                yield Drift("addresses", subject,
                            f"gateway of network {reservation.network_uuid}, which does not "
                            "use it")
            continue
        iface = state.interfaces.get(reservation.user[-1])
        if iface is None or iface.floating != address:
            yield Drift("addresses", subject,
                        f"floats interface {reservation.user[-1]}, which does not use it")


@check("macs")
def check_macs(state: EtcdState) -> Iterator[Drift]:
    for mac, uuid in state.index(state.keys.macs).items():
        iface = state.interfaces.get(uuid)
        if iface is None or iface.macaddr.lower() != mac:
            yield Drift("macs", f"macs/{mac}", f"reserved for interface {uuid}, "
                                                 "which does not use it")


@check("vxlan")
def check_vxlan(state: EtcdState) -> Iterator[Drift]:
    """Each VXLAN id names one network until that network is released."""
    index = state.index(state.keys.vxlans)
    for vxid, uuid in index.items():
        network = state.networks.get(uuid)
        if network is None or str(network.vxid) != vxid:
            yield Drift("vxlan", f"vxlan/{vxid}", f"held for network {uuid}, which does not "
                                                  "use it")
        elif state.network_released(uuid):
            yield Drift("vxlan", f"vxlan/{vxid}", f"network {uuid} was released, its id not")
    for uuid, network in state.networks.items():
        if not state.network_released(uuid) and index.get(str(network.vxid)) != uuid:
            yield Drift("vxlan", f"network {uuid}", f"its VXLAN id {network.vxid} is not "
                                                   "reserved for it")


@check("fences")
def check_fences(state: EtcdState) -> Iterator[Drift]:
    """A fence lives as long as what it fences."""
    for uuid, _ in state.under(state.keys.fences("networks")):
        if uuid not in state.networks or state.network_released(uuid):
            yield Drift("fences", f"fences/networks/{uuid}", "its network is gone")
    for uuid, _ in state.under(state.keys.fences("blobs")):
        if uuid not in state.blobs:
            yield Drift("fences", f"fences/blobs/{uuid}", "its blob is gone")


@check("capacity")
def check_capacity(state: EtcdState) -> Iterator[Drift]:
    """No node carries more than the scheduler may place on it."""
    memory: dict[str, int] = defaultdict(int)
    cpus: dict[str, int] = defaultdict(int)
    for spec in state.instances.values():
        if state.holds_resources(spec):
            memory[spec.node] += spec.memory
            cpus[spec.node] += spec.cpus
    for name, node in state.nodes.items():
        if memory[name] > state.limits.memory_mib(node):
            yield Drift("capacity", f"node {name}",
                        f"{memory[name]} MiB placed, {state.limits.memory_mib(node)} allowed")
        if cpus[name] > state.limits.cpus(node):
            yield Drift("capacity", f"node {name}",
                        f"{cpus[name]} vCPUs placed, {state.limits.cpus(node)} allowed")
    for spec in state.instances.values():
        if spec.desired != "deleted" and spec.node not in state.nodes:
            yield Drift("capacity", f"instance {spec.uuid}",
                        f"placed on {spec.node}, which is not a registered node")
