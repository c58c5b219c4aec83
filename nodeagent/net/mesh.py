"""Every node's share of a network: its bridge and VXLAN interface, the flood
list that joins it to the other nodes, and the local guests' taps.

Each node with an instance on a network has the network's bridge and VXLAN
interface, with one flood entry per other node on the network (the network
node included): head-end replication, no multicast. Entries follow instances
as they come and go. The network node has the mesh of every network that is
alive, whether or not a guest of it runs there, since the network's
namespace hangs off the bridge.

The calls here block on netlink; callers run them in a worker thread while
holding the kernel lock.
"""

from __future__ import annotations

import asyncio
import logging

from cloudstate.model import InterfaceSpec, NetworkSpec
from nodeagent.net import kernel
from nodeagent.net.context import NetworkContext
from nodeagent.net.role import NetworkNodeRole
from nodeagent.net.snapshot import Snapshot

log = logging.getLogger(__name__)


class Mesh:
    def __init__(self, context: NetworkContext, role: NetworkNodeRole):
        self._ctx = context
        self._role = role

    def wanted(self, snap: Snapshot, spec: NetworkSpec) -> bool:
        """Whether this node should have the network's bridge."""
        return (spec.uuid in snap.local_networks(self._ctx.node)
                or (self._role.held and snap.alive(spec)))

    async def ensure(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """The bridge, the VXLAN interface towards the network's other nodes,
        and the local taps in the bridge (a bridge made again loses its ports)."""
        await asyncio.to_thread(self.build, spec, snap.peers(spec.uuid, self._ctx.node))
        await asyncio.to_thread(self._attach_local_taps, snap, spec)

    async def remove(self, vxid: int) -> None:
        await asyncio.to_thread(self._remove, vxid)

    def build(self, spec: NetworkSpec, peers: set[str]) -> None:
        names = self._ctx.names
        kernel.ensure_bridge(names.bridge(spec.vxid), spec.mtu)
        kernel.ensure_vxlan(
            names.vxlan(spec.vxid), vxid=spec.vxid, local=self._ctx.node_ip,
            port=self._ctx.vxlan_port, mtu=spec.mtu, bridge=names.bridge(spec.vxid),
        )
        if kernel.set_flood_peers(names.vxlan(spec.vxid), peers):
            log.info("network %s: VXLAN %d floods to %s", spec.name, spec.vxid,
                     ", ".join(sorted(peers)) or "no other node")

    def attach_tap(self, iface: InterfaceSpec, spec: NetworkSpec) -> bool:
        """Put a guest's tap in its network's bridge; False if the tap is not there."""
        tap = self._ctx.names.tap(iface.uuid)
        if self._ctx.libvirt_netns:
            kernel.adopt_tap(tap, self._ctx.libvirt_netns)
        return kernel.enslave(tap, self._ctx.names.bridge(spec.vxid), spec.mtu)

    def _attach_local_taps(self, snap: Snapshot, spec: NetworkSpec) -> None:
        for iface in snap.on(spec.uuid):
            if snap.node_of(iface) == self._ctx.node:
                self.attach_tap(iface, spec)

    def _remove(self, vxid: int) -> None:
        kernel.delete_link(self._ctx.names.vxlan(vxid))
        kernel.delete_link(self._ctx.names.bridge(vxid))
