"""What the instance reconciler asks of the network code for one instance.

Its NICs as the domain XML describes them (with the bridges they plug into
made first), whether the network node has its DHCP entries in place yet,
its taps put in their bridges once it runs, its config drive's
network_data.json, and what its teardown gives back. This is the only door
from instances into ``nodeagent.net``: the instance reconciler never sees a
bridge or a namespace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cloudstate.etcd import Delete, Put
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import InstanceSpec, InterfaceSpec, NetworkObserved, NetworkSpec
from nodeagent.domainxml import DomainInterface
from nodeagent.net import kernel, networkdata, releases, snapshot
from nodeagent.net.context import NetworkContext
from nodeagent.net.mesh import Mesh
from nodeagent.net.secgroups import SecurityGroups
from nodeagent.net.snapshot import Snapshot

log = logging.getLogger(__name__)


class Ports:
    def __init__(self, *, context: NetworkContext, keys: Keys, mirror: MirrorView, mesh: Mesh,
                 filtering: SecurityGroups, wanted: Callable[[Snapshot], set[str]],
                 lock: asyncio.Lock, retry_later: Callable[[str], None]):
        """``lock`` is the network code's kernel lock; ``retry_later(network_uuid)``
        asks for another pass of a network after a while; ``wanted(snap)``
        names the networks this node carries."""
        self._ctx = context
        self._keys = keys
        self._mirror = mirror
        self._mesh = mesh
        self._filtering = filtering
        self._wanted = wanted
        self._lock = lock
        self._retry_later = retry_later

    def nics(self, spec: InstanceSpec) -> list[tuple[InterfaceSpec, NetworkSpec]]:
        found = []
        for uuid in spec.interfaces:
            kv = self._mirror.get(self._keys.interface(uuid))
            if kv is None:
                continue
            iface = InterfaceSpec.from_json(kv.value)
            net_kv = self._mirror.get(self._keys.network(iface.network_uuid))
            if net_kv is not None:
                found.append((iface, NetworkSpec.from_json(net_kv.value)))
        return sorted(found, key=lambda pair: pair[0].order)

    async def ensure_ports(self, spec: InstanceSpec) -> list[DomainInterface]:
        """Make the bridges the instance's NICs plug into, and their ports'
        filtering (keyed by the taps' names, so in force before the guest's
        first packet); its NICs as the domain XML describes them, in order."""
        return [port for _, port in await self.ensure_ports_of(spec)]

    async def ensure_ports_of(self, spec: InstanceSpec
                              ) -> list[tuple[InterfaceSpec, DomainInterface]]:
        """``ensure_ports``, each NIC with its interface."""
        nics = self.nics(spec)
        if not self._ctx.simulated:  # a simulated node builds no bridge and filters nothing
            async with self._lock:
                snap = snapshot.read(self._keys, self._mirror)
                for network in {net.uuid: net for _, net in nics}.values():
                    await asyncio.to_thread(self._mesh.build, network,
                                            snap.peers(network.uuid, self._ctx.node))
                await self._filtering.ensure(snap, self._wanted(snap))
        namespaced = bool(self._ctx.libvirt_netns) or self._ctx.simulated
        names = self._ctx.names
        return [
            (iface, DomainInterface(
                bridge=None if namespaced else names.bridge(net.vxid),
                mac=iface.macaddr, model=iface.model, mtu=net.mtu,
                tap=names.tap(iface.uuid),
            ))
            for iface, net in nics
        ]

    def not_ready(self, spec: InstanceSpec) -> str | None:
        """Why the instance should not boot yet (its ports' filtering or its
        DHCP entries are not in place), or None. A simulated node has neither
        filtering nor a network node to wait for."""
        if self._ctx.simulated:
            return None
        for iface, network in self.nics(spec):
            if not self._filtering.covers(iface.uuid):
                return f"waiting for the security groups of eth{iface.order}"
            if not self.applied(iface):
                return f"waiting for the network node to set up network {network.name}"
        return None

    def ready(self, iface: InterfaceSpec) -> bool:
        """Whether a NIC may be shown to its running guest (hot plug): its
        filtering in force and its DHCP entry in place."""
        if self._ctx.simulated:
            return True
        return self._filtering.covers(iface.uuid) and self.applied(iface)

    def applied(self, iface: InterfaceSpec) -> bool:
        """Whether the network node has the interface's DHCP entry in place."""
        kv = self._mirror.get(self._keys.observed_network(iface.network_uuid))
        observed = NetworkObserved.from_json(kv.value) if kv else None
        return observed is not None and iface.uuid in observed.applied

    def detached(self, spec: InstanceSpec) -> list[InterfaceSpec]:
        """The instance's interfaces it no longer lists: removed by a hot
        unplug, to give back once the guest has let go of them."""
        return releases.detached(self._keys, self._mirror, spec)

    def released(self, ifaces: list[InterfaceSpec]) -> list[Put | Delete]:
        """What unplugged interfaces give back: their records, addresses, MACs."""
        return [op for iface in ifaces
                for op in releases.of_interface(self._keys, self._mirror, iface, keep=False)]

    async def attach(self, spec: InstanceSpec) -> None:
        """Plug a running instance's taps into their bridges. A tap that is
        not there (yet) is left to the network's next pass."""
        nics = self.nics(spec)
        if not nics or self._ctx.simulated:
            return
        async with self._lock:
            for iface, network in nics:
                try:
                    attached = await asyncio.to_thread(self._mesh.attach_tap, iface, network)
                except kernel.MissingBridge:
                    # Right after the agent starts, an instance's pass may come
                    # before its network's, which builds the bridge and then
                    # puts every local tap in it: not an error of the instance.
                    log.info("network %s's bridge is not built yet; %s's eth%d joins it "
                             "when it is", network.name, spec.name, iface.order)
                    self._retry_later(network.uuid)
                    continue
                if not attached:
                    log.warning("the tap of %s's eth%d is missing", spec.name, iface.order)
                    self._retry_later(network.uuid)

    def network_data(self, spec: InstanceSpec) -> dict:
        return networkdata.build(self.nics(spec), self._ctx.dns_servers)

    def releases(self, spec: InstanceSpec) -> list[Put | Delete]:
        """What an instance's teardown gives back: its interfaces, their
        addresses and MACs."""
        return releases.of_instance(self._keys, self._mirror, spec)
