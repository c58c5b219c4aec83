"""Security groups on this node: the part of the network code that filters
its guests' interfaces, one pass at a time.

A pass (``ensure``) reads the whole desired state of this node's ports from
one Snapshot, builds the Policy (``policy``), applies it as two nftables
tables in one transaction (``firewall``, ``filterrules``), ends the tracked
connections it no longer allows, and tells etcd, per interface, what is in
force: ``observed/interfaces/<uuid>`` (which groups at which generation, or
the error that kept a change out). It is node-wide and idempotent: the same
etcd renders the same tables, and an unchanged table is not applied again.

Ports exist in the tables before their taps do (they are keyed by the tap's
name, which the domain XML fixes), so a guest's first packet already meets
its rules; an instance is started only once its ports are in place
(``covers``). A refused apply keeps the tables as they were: the interfaces
whose change it carried report the error, the others stay as they are, and
the pass is tried again later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from cloudstate.etcd import Compare, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.mirror import Mirror
from cloudstate.model import InterfaceObserved
from nodeagent import failpoints
from nodeagent.events import EventLog
from nodeagent.net import conntrack, kernel, policy
from nodeagent.net.context import NetworkContext
from nodeagent.net.firewall import Firewall
from nodeagent.net.nftables import NftError
from nodeagent.net.policy import Policy, Port
from nodeagent.net.role import NetworkNodeRole
from nodeagent.net.snapshot import Snapshot

log = logging.getLogger(__name__)

MAX_ZONE = 65535
FAILURES = (NftError, conntrack.ConntrackError, kernel.KernelError, OSError)


class SecurityGroups:
    def __init__(self, *, context: NetworkContext, keys: Keys, etcd: Etcd, mirror: Mirror,
                 role: NetworkNodeRole, poke_instance: Callable[[str], None],
                 retry_later: Callable[[], None], events: EventLog | None = None):
        """``poke_instance(uuid)`` wakes an instance whose ports just came
        into force; ``retry_later()`` asks for another pass after a while."""
        self._ctx = context
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self._role = role
        self._poke_instance = poke_instance
        self._retry_later = retry_later
        self._events = events
        self.firewall = Firewall(context.names.filter_table, context.names.tag)
        self._zones: dict[int, int] | None = None  # vxid -> conntrack zone
        self._released_zones: set[int] = set()  # of networks gone: flushed once applied
        self.applied: Policy | None = None

    def covers(self, interface: str) -> bool:
        """Whether the interface's port is in the tables (its rules in force)."""
        return self.applied is not None and self.applied.port(interface) is not None

    # --- a pass ------------------------------------------------------------------------------

    async def ensure(self, snap: Snapshot, wanted: Iterable[str]) -> None:
        """Make the tables this node's policy, for the networks ``wanted``
        here (their uuids), and report it. The caller holds the kernel lock."""
        wanted = set(wanted)
        zones = await asyncio.to_thread(self._zone_map, snap, wanted)
        previous = self.applied
        built = policy.build(snap, node=self._ctx.node, names=self._ctx.names, zones=zones,
                             wanted_networks=wanted, network_node=self._role.held,
                             previous=previous)
        try:
            failpoints.hit("before-filter-apply")
            if built.segments or built.ports:
                await asyncio.to_thread(kernel.ensure_bridge_netfilter)
                changed = await asyncio.to_thread(self.firewall.apply, built)
            else:
                changed = await asyncio.to_thread(self.firewall.remove)
        except FAILURES as exc:
            log.warning("security groups not applied: %s", exc)
            await self._report(snap, built, previous, failure=str(exc))
            self._retry_later()
            return
        self.applied = built
        if changed:
            log.info("security groups applied: %d port(s) on %d network(s)",
                     len(built.ports), len(built.segments))
        if changed or previous is None:
            # The first pass since the agent started also catches what
            # changed while it was down.
            await self._end_disallowed(built)
        await self._report(snap, built, previous)
        # Instances with a port new in force (a guest to start, a NIC to plug in).
        before = {p.interface for p in (previous or Policy()).ports}
        for instance in sorted({p.instance for p in built.ports if p.interface not in before}):
            self._poke_instance(instance)

    def _zone_map(self, snap: Snapshot, wanted: set[str]) -> dict[int, int]:
        """A conntrack zone for each wanted network's VXLAN id, kept for as
        long as the network stays (a changed zone would make its flows new)."""
        if self._zones is None:
            self._zones = {}
            for bridge, zone in self.firewall.zones().items():
                parsed = self._ctx.names.parse_link(bridge)
                if parsed is not None and parsed[0] == "bridge":
                    self._zones[parsed[1]] = zone
        vxids = {snap.networks[uuid][0].vxid for uuid in wanted if uuid in snap.networks}
        taken = {zone for vxid, zone in self._zones.items() if vxid in vxids}
        for vxid in sorted(vxids - self._zones.keys()):
            zone = vxid % MAX_ZONE + 1
            while zone in taken:
                zone = zone % MAX_ZONE + 1
            self._zones[vxid] = zone
            taken.add(zone)
        self._released_zones |= {zone for vxid, zone in self._zones.items() if vxid not in vxids}
        self._zones = {vxid: zone for vxid, zone in self._zones.items() if vxid in vxids}
        self._released_zones -= set(self._zones.values())
        return dict(self._zones)

    async def _end_disallowed(self, built: Policy) -> None:
        """Tracked connections the new policy does not allow end now; a
        network that left this node takes its zone's connections along."""
        try:
            ended = await asyncio.to_thread(self.firewall.cut, built)
            for zone in sorted(self._released_zones):
                ended += await asyncio.to_thread(self.firewall.flush, zone)
                self._released_zones.discard(zone)
        except conntrack.ConntrackError as exc:
            log.warning("could not end connections the rules no longer allow: %s", exc)
            self._retry_later()
            return
        if ended:
            log.info("ended %d tracked connection(s) the security groups no longer allow",
                     ended)

    # --- what each interface has -------------------------------------------------------------

    async def _report(self, snap: Snapshot, built: Policy, previous: Policy | None,
                      failure: str | None = None) -> None:
        """Write each local interface's observed filtering if it changed.
        After a refused apply, the ports whose change it carried report the
        error; the rest keep what they had."""
        for port in built.ports:
            before = previous.port(port.interface) if previous else None
            if failure is not None and before == port:
                continue
            observed = self._observed(port if failure is None else before, port, failure)
            current = snap.filtering.get(port.interface)
            if current is not None and observed.replace(applied_at=0) == \
                    current.replace(applied_at=0):
                continue
            revision = snap.interface_revisions.get(port.interface, 0)
            result = await self._etcd.txn(
                [Compare.unchanged_since(self._keys.interface(port.interface), revision)],
                [Put(self._keys.observed_interface(port.interface), observed.to_json())])
            if result.succeeded:
                self._emit(snap, port, current, observed)

    def _observed(self, applied: Port | None, wanted: Port, failure: str | None
                  ) -> InterfaceObserved:
        error = f"{failure}" if failure else wanted.error
        source = applied or Port(tap=wanted.tap, interface=wanted.interface,
                                 instance=wanted.instance, network=wanted.network,
                                 zone=wanted.zone, mac=wanted.mac, address=wanted.address)
        return InterfaceObserved(
            node=self._ctx.node, state="error" if error else "created", error=error,
            groups=dict(source.groups) if applied else {},
            port_security=source.filtered, allowed_addresses=list(source.allowed),
            applied_at=time.time())

    def _emit(self, snap: Snapshot, port: Port, before: InterfaceObserved | None,
              after: InterfaceObserved) -> None:
        if self._events is None:
            return
        iface = snap.interfaces.get(port.interface)
        nic = f"eth{iface.order}" if iface else port.interface
        if after.state == "error":
            message = f"{nic}: security groups not applied: {after.error}"
        elif not after.port_security:
            message = f"{nic}: filtering off"
        else:
            groups = ", ".join(snap.groups[g].name if g in snap.groups else g
                               for g in after.groups) or "none"
            message = f"{nic}: security groups in force: {groups}"
        if before is None or before.state != after.state or before.error != after.error \
                or before.groups != after.groups or before.port_security != after.port_security:
            self._events.emit("instance", port.instance, message, type="status",
                              extra={"interface": port.interface})

    # --- leftovers ---------------------------------------------------------------------------

    def remove_unwanted(self, any_network_wanted: bool) -> list[str]:
        """(for gc) Both tables, when this node carries no network at all.
        Blocks."""
        if any_network_wanted or not self.firewall.remove():
            return []
        self.applied = None
        return [f"security group tables {self.firewall.table}"]
