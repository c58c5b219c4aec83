"""Keep a defined domain's NICs in step with its instance's interfaces:
plug in the ones added since it was defined, unplug the ones removed, and
give a removed one's address and MAC back once the guest has let go of it.

A NIC is plugged into a running guest only once its security groups are in
force on this node and the network node has its DHCP entry (the guest
sends, and asks for an address, as soon as it sees the NIC); the filter's
pass and the network node's report queue the instance again when they are. An unplugged
NIC leaves a running guest when the guest acknowledges the removal (ACPI
hot plug); libvirt's device-removed event queues the instance again then.
"""

from __future__ import annotations

import logging

from cloudstate.etcd import Etcd
from cloudstate.mirror import Mirror
from cloudstate.model import InstanceSpec
from nodeagent import domainxml
from nodeagent.events import EventLog
from nodeagent.hypervisor import Hypervisor
from nodeagent.net.ports import Ports

log = logging.getLogger(__name__)


class NicSync:
    def __init__(self, *, hypervisor: Hypervisor, ports: Ports, etcd: Etcd, mirror: Mirror,
                 events: EventLog | None = None):
        self._hv = hypervisor
        self._ports = ports
        self._etcd = etcd
        self._mirror = mirror
        self._events = events

    async def sync(self, spec: InstanceSpec, *, running: bool) -> None:
        present = await self._hv.interfaces(spec.uuid)
        # Bridges are only made (kernel work) when a NIC is missing.
        if any(iface.macaddr not in present for iface, _ in self._ports.nics(spec)):
            for iface, port in await self._ports.ensure_ports_of(spec):
                if port.mac in present:
                    continue
                if running and not self._ports.ready(iface):
                    # The network node's report, or the filter's pass, brings us back.
                    continue
                await self._hv.plug(spec.uuid, domainxml.interface_xml(port))
                self._emit(spec, f"eth{iface.order} plugged in (interface {iface.uuid})")
        detached = self._ports.detached(spec)
        if not detached:
            return
        for iface in detached:
            if iface.macaddr in present:
                await self._hv.unplug(spec.uuid, present[iface.macaddr])
                self._emit(spec, f"eth{iface.order} unplugged (interface {iface.uuid})")
        still = await self._hv.interfaces(spec.uuid)
        gone = [iface for iface in detached if iface.macaddr not in still]
        if gone:
            result = await self._etcd.txn([], self._ports.released(gone))
            self._emit(spec, "unplugged interfaces' addresses and MACs released: "
                       + ", ".join(iface.uuid for iface in gone))
            await self._mirror.wait_for_revision(result.revision)

    def _emit(self, spec: InstanceSpec, message: str) -> None:
        log.info("instance %s: %s", spec.uuid, message)
        if self._events is not None:
            self._events.emit("instance", spec.uuid, message, type="mutate")
