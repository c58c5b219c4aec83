"""The network node's share of a network: its router and what hangs off it.

Per network, a namespace with the router address on a veth from the
network's bridge, a dnsmasq that hands out exactly the reserved addresses,
and, where wanted, NAT and floating addresses (``egress``). Each pass
reports the network's state (``report``) and gives back the floating
addresses whose NAT is gone; a deleted network nothing uses any more is
torn down, and its VXLAN id and addresses released in the transaction that
reports it deleted (``releases``).

Only the node holding the role (``role``) runs this; the bridge it builds
on is the mesh's (``mesh``), made first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cloudstate.etcd import Compare, Delete, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import NetworkSpec
from nodeagent import failpoints
from nodeagent.events import EventLog
from nodeagent.net import dnsmasq, kernel, releases
from nodeagent.net.context import NetworkContext
from nodeagent.net.egress import Egress
from nodeagent.net.kernel import Address
from nodeagent.net.names import INSIDE
from nodeagent.net.report import NetworkReporter
from nodeagent.net.role import NetworkNodeRole
from nodeagent.net.snapshot import Snapshot

log = logging.getLogger(__name__)


class Router:
    def __init__(self, *, context: NetworkContext, role: NetworkNodeRole, keys: Keys,
                 etcd: Etcd, mirror: MirrorView, requeue: Callable[[str], None],
                 events: EventLog | None = None):
        """``requeue(network_uuid)`` asks for another pass: a network's
        dnsmasq exiting calls it."""
        self._ctx = context
        self._role = role
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self._egress = Egress(context)
        self._reporter = NetworkReporter(node=context.node, keys=keys, etcd=etcd,
                                         mirror=mirror, events=events)
        self._dnsmasq = dnsmasq.Watcher(on_exit=requeue)

    def wanted(self, snap: Snapshot, spec: NetworkSpec) -> bool:
        return self._role.held and snap.alive(spec)

    def uplink_wanted(self, snap: Snapshot) -> bool:
        return self._role.held and self._egress.wanted_by_any(snap)

    # --- a network that is alive ---------------------------------------------------------

    async def ensure(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """Namespace, dnsmasq and egress as the network wants them (its
        bridge already made), then report it."""
        ifaces = snap.on(spec.uuid)
        namespace = self._ctx.names.netns(spec.vxid)
        directory = self._ctx.network_dir(spec.vxid)
        events: list[str] = []
        await asyncio.to_thread(self._build_namespace, spec)
        failpoints.hit("after-netns")
        if spec.provide_dhcp:
            self._dnsmasq.forget(spec.uuid)
            outcome = await asyncio.to_thread(
                dnsmasq.ensure, namespace, directory, self._dhcp(snap, spec)
            )
            self._dnsmasq.watch(spec.uuid, outcome.pid)
            if outcome.action in ("started", "restarted"):
                events.append(f"dnsmasq {outcome.action} (pid {outcome.pid})")
        else:
            self._dnsmasq.forget(spec.uuid)
            await asyncio.to_thread(dnsmasq.remove, directory)
        failpoints.hit("after-dnsmasq")
        egress = self._egress.wanted(spec, ifaces)
        if egress:
            if await asyncio.to_thread(self._egress.build, spec, ifaces):
                events.append("NAT and floating addresses applied")
        else:
            await asyncio.to_thread(self._egress.remove, spec)
        failpoints.hit("after-egress")
        await self._reporter.report(snap, spec, state="created", error=None,
                                    applied=[i.uuid for i in ifaces], egress=egress,
                                    events=events)
        await self._release_floating(snap, spec)
        await self._remove_unused_uplink(snap)

    def _build_namespace(self, spec: NetworkSpec) -> None:
        names = self._ctx.names
        namespace = names.netns(spec.vxid)
        kernel.ensure_netns(namespace)
        kernel.ensure_veth_into(names.veth(spec.vxid), namespace, INSIDE,
                                bridge=names.bridge(spec.vxid), mtu=spec.mtu)
        kernel.configure_inside(namespace, INSIDE, mtu=spec.mtu,
                                addresses=[Address(spec.router, spec.prefixlen)])

    def _dhcp(self, snap: Snapshot, spec: NetworkSpec) -> dnsmasq.DnsmasqConfig:
        hosts = []
        for iface in snap.on(spec.uuid):
            if iface.ipv4 is None:
                continue
            instance = snap.instances.get(iface.instance_uuid)
            hostname = instance.name if instance else f"instance-{iface.instance_uuid[:8]}"
            hosts.append(dnsmasq.DhcpHost(iface.macaddr, iface.ipv4, hostname))
        return dnsmasq.DnsmasqConfig(
            network=spec.netblock, netmask=spec.netmask, router=spec.router, mtu=spec.mtu,
            dns=spec.provide_dns, upstream=self._ctx.dns_servers,
            domain=f"{spec.namespace.replace('_', '-')}.{dnsmasq.DOMAIN_SUFFIX}",
            hosts=tuple(sorted(hosts, key=lambda h: (h.address, h.mac))),
            names=tuple(sorted(spec.dns_entries.items())),
        )

    async def _release_floating(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """Free the floating addresses of this network whose NAT is gone."""
        unused = releases.unused_floating(snap, spec)
        if unused:
            result = await self._etcd.txn(
                [Compare.unchanged_since(key, revision) for key, revision in unused],
                [Delete(key) for key, _ in unused],
            )
            log.info("released %d floating address(es) of network %s", len(unused), spec.name)
            for key, _ in unused:
                self._reporter.emit(spec.uuid, f"floating address {key.rsplit('/', 1)[-1]} "
                                    "released", type="mutate")
            await self._mirror.wait_for_revision(result.revision,
                                                 keys=[key for key, _ in unused])

    async def _remove_unused_uplink(self, snap: Snapshot) -> None:
        if not self.uplink_wanted(snap):
            await asyncio.to_thread(self._egress.remove_uplink_bridge)

    # --- a network that is gone ----------------------------------------------------------

    async def tear_down(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """A deleted network nothing uses any more: remove all of it, then
        release its VXLAN id and addresses in the transaction that reports it
        deleted."""
        await self._tear_down(snap, spec)
        await self._remove_unused_uplink(snap)

    async def _tear_down(self, snap: Snapshot, spec: NetworkSpec) -> None:
        observed = snap.observed.get(spec.uuid)
        given_back = releases.of_network(self._keys, self._mirror, snap, spec)
        if observed is not None and observed.state == "deleted" and not given_back:
            return
        self._dnsmasq.forget(spec.uuid)
        await asyncio.to_thread(self._remove_everything, spec.vxid)
        failpoints.hit("after-network-teardown")
        record = self._reporter.record(snap, spec, state="deleted", error=None, applied=[],
                                       egress=False)
        revision = (await self._etcd.txn(
            [], [*given_back, Put(self._keys.observed_network(spec.uuid), record.to_json())]
        )).revision
        self._reporter.emit_changes(spec.uuid, observed, record)
        self._reporter.emit(spec.uuid, "namespace, dnsmasq and links removed; VXLAN id and "
                                       "addresses released", type="mutate")
        await self._mirror.wait_for_revision(
            revision, keys=[self._keys.observed_network(spec.uuid),
                            *(op.key for op in given_back)])

    def _remove_everything(self, vxid: int) -> None:
        names = self._ctx.names
        dnsmasq.remove(self._ctx.network_dir(vxid))
        kernel.remove_netns(names.netns(vxid))
        for link in (names.egress(vxid), names.veth(vxid), names.vxlan(vxid),
                     names.bridge(vxid)):
            kernel.delete_link(link)

    # --- a pass that failed --------------------------------------------------------------

    async def report_failure(self, snap: Snapshot, spec: NetworkSpec, error: Exception) -> None:
        """Show why a pass of any part failed, as the network's state."""
        if self._role.held and spec.desired != "deleted":
            await self._reporter.report(snap, spec, state="error", error=str(error))

    async def report_refused(self, snap: Snapshot, uuid: str, reason: str) -> None:
        """The network node says why it does not act on a network's record."""
        if self._role.held:
            await self._reporter.refused(snap, uuid, reason)

    def close(self) -> None:
        self._dnsmasq.close()
