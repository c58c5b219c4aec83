"""Make this node's share of every virtual network match etcd.

Level-triggered and idempotent: each pass of one network compares what etcd
asks for with what the kernel has and changes only the difference, so the
agent can die at any point and converge when restarted. Work arrives from
the mirror (a changed network, interface, instance, node or role), from a
network's dnsmasq exiting, from a failed pass retried later, and from the
agent's sweep, which also runs garbage collection.

This module only coordinates; each job is a module of its own:

- ``mesh``: every node's bridge, VXLAN interface, flood list and taps;
- ``router``: the network node's namespace, dnsmasq and, through
  ``egress``, NAT and floating addresses; with ``report`` and ``releases``,
  what it tells etcd and gives back;
- ``secgroups``: the filtering of this node's guests (security groups,
  anti-spoofing) on every network's bridge, node-wide in one pass;
- ``ports``: what the instance reconciler asks for one instance;
- ``gc``: whatever carries this cloud's tag and nothing wants.

One pass of one network composes them as ``reconcile`` shows: the mesh
first, since everything else hangs off its bridge, then the network node's
router on it; a network gone comes down router first. Each such pass ends
with the security groups' (``secgroups``), which render every port of the
node at once and so run after the networks they filter (but before a
network the network node is about to report gone comes down); a change of
a group or an address set asks for that part alone (the key ``FILTER``).
Kernel changes happen one at a time, under one lock, whichever part or
caller makes them.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable

from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.mirror import Change, MirrorView
from cloudstate.model import InstanceSpec, InterfaceSpec, NetworkSpec
from cloudstate.vocabulary import ObjectKind
from nodeagent import records
from nodeagent.events import EventLog
from nodeagent.net import dnsmasq, nftables, snapshot
from nodeagent.net.context import NetworkContext
from nodeagent.net.gc import Collector
from nodeagent.net.kernel import KernelError
from nodeagent.net.mesh import Mesh
from nodeagent.net.ping import PingRoute
from nodeagent.net.ports import Ports
from nodeagent.net.role import NetworkNodeRole
from nodeagent.net.router import Router
from nodeagent.net.secgroups import SecurityGroups
from nodeagent.net.snapshot import Snapshot
from nodeagent.workqueue import WorkQueue

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 15.0
# The work queue's key for a pass of the security groups (not a network uuid).
FILTER = "security-groups"
_FAILURES = (KernelError, dnsmasq.DnsmasqError, nftables.NftError, OSError,
             subprocess.SubprocessError)


class NetworkReconciler:
    def __init__(
        self,
        *,
        context: NetworkContext,
        keys: Keys,
        etcd: Etcd,
        mirror: MirrorView,
        poke_instance: Callable[[str], None],
        events: EventLog | None = None,
    ):
        self._ctx = context
        self._keys = keys
        self._mirror = mirror
        self._poke_instance = poke_instance
        self.queue = WorkQueue(self.reconcile, workers=1)
        self._lock = asyncio.Lock()
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self.role = NetworkNodeRole(context=context, keys=keys, etcd=etcd, mirror=mirror)
        self._mesh = Mesh(context, self.role)
        self._router = Router(context=context, role=self.role, keys=keys, etcd=etcd,
                              mirror=mirror, requeue=self.queue.add, events=events)
        self.filtering = SecurityGroups(
            context=context, keys=keys, etcd=etcd, mirror=mirror, role=self.role,
            poke_instance=poke_instance, retry_later=lambda: self._retry_later(FILTER),
            events=events)
        self._collector = Collector(context, self.role, self.filtering)
        self.ports = Ports(context=context, keys=keys, mirror=mirror, mesh=self._mesh,
                           filtering=self.filtering, wanted=self.wanted_networks,
                           lock=self._lock, retry_later=self._retry_later)
        self.ping = PingRoute(context=context, keys=keys, mirror=mirror, role=self.role)

    @property
    def is_network_node(self) -> bool:
        return self.role.held

    async def claim_role(self) -> bool:
        return await self.role.claim()

    # --- one network -----------------------------------------------------------------------

    def wanted_networks(self, snap: Snapshot) -> set[str]:
        """The networks whose bridge this node has (or is about to)."""
        return {uuid for uuid, (spec, _) in snap.networks.items()
                if self._mesh.wanted(snap, spec)}

    async def reconcile(self, uuid: str) -> None:
        if self._ctx.simulated:
            return  # no kernel networking on a simulated node (nodeagent.simulated)
        async with self._lock:
            # Read inside the lock: a pass that waited must not act on what
            # was true before the pass it waited for.
            snap = snapshot.read(self._keys, self._mirror)
            if uuid != FILTER:
                await self._reconcile_network(snap, uuid)
            await self.filtering.ensure(snap, self.wanted_networks(snap))

    async def _reconcile_network(self, snap: Snapshot, uuid: str) -> None:
        found = snap.networks.get(uuid)
        if found is None:
            refused = self._mirror.refused(self._keys.network(uuid))
            if refused is not None and records.is_uuid(uuid):
                log.warning("network %s: record refused: %s", uuid, refused.reason)
                await self._router.report_refused(snap, uuid, refused.reason)
            return
        spec, _ = found
        try:
            if self.role.held and not snap.alive(spec):
                # Its filtering goes first, so a network reported deleted
                # has nothing left on this node.
                await self.filtering.ensure(snap, self.wanted_networks(snap))
                await self._router.tear_down(snap, spec)
            elif self._mesh.wanted(snap, spec):
                await self._mesh.ensure(snap, spec)
                if self._router.wanted(snap, spec):
                    await self._router.ensure(snap, spec)
            elif not vxid_reused_here(snap, spec, self._mesh.wanted):
                await self._mesh.remove(spec.vxid)
        except _FAILURES as exc:
            log.warning("network %s (%s): %s", spec.name, uuid, exc)
            await self._router.report_failure(snap, spec, exc)
            self._retry_later(uuid)

    def _retry_later(self, uuid: str) -> None:
        if uuid in self._retries:
            return
        loop = asyncio.get_running_loop()

        def retry() -> None:
            self._retries.pop(uuid, None)
            self.queue.add(uuid)

        self._retries[uuid] = loop.call_later(RETRY_AFTER_FAILURE, retry)

    # --- what to look at -------------------------------------------------------------------

    def on_changes(self, changes: list[Change]) -> None:
        keys = self._keys
        for change in changes:
            if change.key == keys.network_node_role:
                self.sweep()
                continue
            found = keys.classify(change.key)
            if found is None:
                continue
            if found.kind == ObjectKind.NETWORK and found.observed:
                # The network node applied something: instances waiting for
                # their DHCP entries may start.
                self._poke_waiting_instances(found.uuid)
            elif found.kind == ObjectKind.NETWORK:
                self.queue.add(found.uuid)
            elif found.kind == ObjectKind.INTERFACE and not found.observed:
                for kv in (change.old, change.new):
                    if kv is not None:
                        self.queue.add(InterfaceSpec.from_json(kv.value).network_uuid)
            elif found.kind == ObjectKind.INSTANCE and not found.observed:
                # Placement and deletion decide which nodes are on a network.
                for kv in (change.old, change.new):
                    if kv is not None:
                        self._queue_networks_of(InstanceSpec.from_json(kv.value))
            elif found.kind in (ObjectKind.SECURITY_GROUP, ObjectKind.ADDRESS_SET):
                self.queue.add(FILTER)
            elif found.kind == ObjectKind.NODE and not found.observed:
                self.sweep()

    def _queue_networks_of(self, instance: InstanceSpec) -> None:
        for iface_uuid in instance.interfaces:
            iface_kv = self._mirror.get(self._keys.interface(iface_uuid))
            if iface_kv is not None:
                self.queue.add(InterfaceSpec.from_json(iface_kv.value).network_uuid)

    def _poke_waiting_instances(self, network_uuid: str) -> None:
        for kv in self._mirror.items(self._keys.interfaces):
            iface = InterfaceSpec.from_json(kv.value)
            if iface.network_uuid != network_uuid:
                continue
            instance = self._mirror.get(self._keys.instance(iface.instance_uuid))
            if instance and InstanceSpec.from_json(instance.value).node == self._ctx.node:
                self._poke_instance(iface.instance_uuid)

    def sweep(self) -> None:
        for kv in self._mirror.items(self._keys.networks):
            if uuid := self._keys.uuid_of(kv.key, self._keys.networks):
                self.queue.add(uuid)
        self.queue.add(FILTER)

    # --- garbage ---------------------------------------------------------------------------

    async def collect_garbage(self) -> None:
        """Remove every kernel object and dnsmasq of this cloud that no
        network wants on this node (left by a crash, or by a network whose
        record is gone)."""
        if self._ctx.simulated:
            return
        refused = [r.kv.key for family in (self._keys.networks, self._keys.interfaces,
                                           self._keys.instances, self._keys.nodes)
                   for r in self._mirror.refused_items(family)]
        if refused:
            # What a refused record wants can't be known, so nothing of ours
            # counts as unwanted until it is fixed or gone.
            log.warning("not collecting network garbage while records are refused: %s",
                        ", ".join(refused))
            return
        async with self._lock:
            snap = snapshot.read(self._keys, self._mirror)
            wanted = {spec.vxid for spec, _ in snap.networks.values()
                      if self._mesh.wanted(snap, spec)}
            removed = await asyncio.to_thread(self._collector.remove_unwanted, wanted,
                                              self._router.uplink_wanted(snap))
        for what in removed:
            log.info("removed stale %s", what)

    def close(self) -> None:
        self._router.close()
        for handle in self._retries.values():
            handle.cancel()


def vxid_reused_here(snap: snapshot.Snapshot, spec: NetworkSpec,
                     wanted: Callable[[snapshot.Snapshot, NetworkSpec], bool]) -> bool:
    """Whether a network this node wants reuses ``spec``'s VXLAN id. A deleted
    network's record outlives the release of its id, which a new network may
    then be given: the links are named by the id, so they must stay."""
    return any(other.uuid != spec.uuid and other.vxid == spec.vxid and wanted(snap, other)
               for other, _ in snap.networks.values())
