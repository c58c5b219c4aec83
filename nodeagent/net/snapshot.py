"""What etcd asks of the networks, read from the mirror in one go.

Each pass of the network code decides from one Snapshot, read while it holds
the kernel lock, so a pass that waited for another never acts on what was
true before that one ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import (
    AddressReservation,
    AddressSet,
    InstanceSpec,
    InterfaceObserved,
    InterfaceSpec,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
    SecurityGroup,
)


@dataclass
class Snapshot:
    networks: dict[str, tuple[NetworkSpec, int]] = field(default_factory=dict)
    observed: dict[str, NetworkObserved] = field(default_factory=dict)
    interfaces: dict[str, InterfaceSpec] = field(default_factory=dict)
    instances: dict[str, InstanceSpec] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    network_node: str | None = None
    # key -> (reservation, mod_revision)
    floating: dict[str, tuple[AddressReservation, int]] = field(default_factory=dict)
    groups: dict[str, SecurityGroup] = field(default_factory=dict)
    # group uuid -> why the agent refused its record (nodeagent.records)
    refused_groups: dict[str, str] = field(default_factory=dict)
    address_sets: dict[str, AddressSet] = field(default_factory=dict)
    # interface uuid -> mod_revision of its record; its observed filtering
    interface_revisions: dict[str, int] = field(default_factory=dict)
    filtering: dict[str, InterfaceObserved] = field(default_factory=dict)

    def on(self, network_uuid: str) -> list[InterfaceSpec]:
        return sorted((i for i in self.interfaces.values() if i.network_uuid == network_uuid),
                      key=lambda i: (i.instance_uuid, i.order))

    def node_of(self, iface: InterfaceSpec) -> str | None:
        if iface.node is not None:
            return iface.node
        # An older record: its instance says, if this agent follows it.
        instance = self.instances.get(iface.instance_uuid)
        return instance.node if instance else None

    def nodes_on(self, network_uuid: str) -> set[str]:
        return {node for i in self.on(network_uuid) if (node := self.node_of(i))}

    def alive(self, spec: NetworkSpec) -> bool:
        """Needs its infrastructure: wanted, or still used by interfaces."""
        return spec.desired != "deleted" or bool(self.on(spec.uuid))

    def local_networks(self, node: str) -> set[str]:
        """The networks with an interface of an instance placed on ``node``."""
        return {i.network_uuid for i in self.interfaces.values() if self.node_of(i) == node}

    def peers(self, network_uuid: str, node: str) -> set[str]:
        """The addresses of the nodes other than ``node`` on the network."""
        nodes = self.nodes_on(network_uuid)
        if self.network_node:
            nodes.add(self.network_node)
        nodes.discard(node)
        return {self.nodes[name].ip for name in nodes if name in self.nodes}


def read(keys: Keys, mirror: MirrorView) -> Snapshot:
    snap = Snapshot()
    for kv in mirror.items(keys.networks):
        spec = NetworkSpec.from_json(kv.value)
        snap.networks[spec.uuid] = (spec, kv.mod_revision)
    for kv in mirror.items(keys.observed_networks):
        snap.observed[kv.key.rsplit("/", 1)[-1]] = NetworkObserved.from_json(kv.value)
    for kv in mirror.items(keys.interfaces):
        iface = InterfaceSpec.from_json(kv.value)
        snap.interfaces[iface.uuid] = iface
        snap.interface_revisions[iface.uuid] = kv.mod_revision
    for kv in mirror.items(keys.observed_interfaces):
        snap.filtering[kv.key.rsplit("/", 1)[-1]] = InterfaceObserved.from_json(kv.value)
    for kv in mirror.items(keys.security_groups):
        group = SecurityGroup.from_json(kv.value)
        snap.groups[group.uuid] = group
    for refused in mirror.refused_items(keys.security_groups):
        if uuid := keys.uuid_of(refused.kv.key, keys.security_groups):
            snap.refused_groups[uuid] = refused.reason
    for kv in mirror.items(keys.address_sets):
        address_set = AddressSet.from_json(kv.value)
        snap.address_sets[address_set.uuid] = address_set
    wanted = {i.instance_uuid for i in snap.interfaces.values()}
    for uuid in wanted:
        kv = mirror.get(keys.instance(uuid))
        if kv is not None:
            snap.instances[uuid] = InstanceSpec.from_json(kv.value)
    for kv in mirror.items(keys.nodes):
        info = NodeInfo.from_json(kv.value)
        snap.nodes[info.name] = info
    role = mirror.get(keys.network_node_role)
    snap.network_node = role.value.decode() if role else None
    for kv in mirror.items(keys.addresses(FLOATING_POOL)):
        snap.floating[kv.key] = (AddressReservation.from_json(kv.value), kv.mod_revision)
    return snap
