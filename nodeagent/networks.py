"""Make this node's share of every virtual network match etcd, and report it.

Two roles, both level-triggered and idempotent (each pass compares what
etcd asks for with what the kernel has and changes only the difference, so
the agent can die at any point and converge when restarted):

- **Every node** with an instance on a network has the network's bridge and
  VXLAN interface, with one flood entry per other node on the network (the
  network node included): head-end replication, no multicast. Entries follow
  instances as they come and go.
- **The network node** also holds, per network, a namespace with the router
  address, a dnsmasq that hands out exactly the reserved addresses, and,
  through an explicitly configured uplink only, NAT egress and floating
  addresses (nftables). It reports each network's state, and releases what
  it tore down: a floating address once its NAT is gone, a deleted
  network's VXLAN id and addresses once its namespace is gone.

Work arrives from the mirror (a changed network, interface or instance), from
dnsmasq exiting (a pidfd event), and from the agent's sweep, which also
removes every kernel object carrying this cloud's tag that nothing wants.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudstate.etcd import Compare, Delete, Etcd, Put
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.mirror import Change, Mirror
from cloudstate.model import (
    AddressReservation,
    InstanceSpec,
    InterfaceSpec,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
)
from nodeagent import dnsmasq, failpoints, netkernel, networkdata, nftables
from nodeagent.domainxml import DomainInterface
from nodeagent.events import EventLog
from nodeagent.netkernel import Address, KernelError, Route
from nodeagent.netnames import EGRESS, INSIDE, NetNames
from nodeagent.workqueue import WorkQueue

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE = 15.0
UPLINK_MTU = 1500
_FAILURES = (KernelError, dnsmasq.DnsmasqError, nftables.NftError, OSError,
             subprocess.SubprocessError)


@dataclass(frozen=True)
class NetworkContext:
    """What the reconciler needs to know about this node."""

    node: str
    node_ip: str
    names: NetNames
    vxlan_port: int
    networks_dir: Path
    wants_network_node: bool
    uplink: str = ""
    libvirt_netns: str = ""
    floating: ipaddress.IPv4Network | None = None
    floating_router: str | None = None
    dns_servers: tuple[str, ...] = ()


@dataclass
class Snapshot:
    """Everything a pass looks at, read from the mirror at once."""

    networks: dict[str, tuple[NetworkSpec, int]] = field(default_factory=dict)
    observed: dict[str, NetworkObserved] = field(default_factory=dict)
    interfaces: dict[str, InterfaceSpec] = field(default_factory=dict)
    instances: dict[str, InstanceSpec] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    network_node: str | None = None
    # key -> (reservation, mod_revision)
    floating: dict[str, tuple[AddressReservation, int]] = field(default_factory=dict)

    def on(self, network_uuid: str) -> list[InterfaceSpec]:
        return sorted((i for i in self.interfaces.values() if i.network_uuid == network_uuid),
                      key=lambda i: (i.instance_uuid, i.order))

    def node_of(self, iface: InterfaceSpec) -> str | None:
        instance = self.instances.get(iface.instance_uuid)
        return instance.node if instance else None

    def nodes_on(self, network_uuid: str) -> set[str]:
        return {node for i in self.on(network_uuid) if (node := self.node_of(i))}

    def alive(self, spec: NetworkSpec) -> bool:
        """Needs its infrastructure: wanted, or still used by interfaces."""
        return spec.desired != "deleted" or bool(self.on(spec.uuid))


class NetworkReconciler:
    def __init__(
        self,
        *,
        context: NetworkContext,
        keys: Keys,
        etcd: Etcd,
        mirror: Mirror,
        poke_instance: Callable[[str], None],
        events: EventLog | None = None,
    ):
        self._ctx = context
        self._events = events
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self._poke_instance = poke_instance
        self.queue = WorkQueue(self.reconcile, workers=1)
        self.is_network_node = False
        # Kernel changes happen one at a time, whether they come from this
        # queue or from an instance being built.
        self._lock = asyncio.Lock()
        self._dnsmasq = dnsmasq.Watcher(on_exit=self.queue.add)
        self._retries: dict[str, asyncio.TimerHandle] = {}

    @property
    def names(self) -> NetNames:
        return self._ctx.names

    # --- the network node's role -------------------------------------------------------

    async def claim_role(self) -> bool:
        """Take the network node's role if this node wants it and no other
        node holds it. The role stays with its node across restarts."""
        if not self._ctx.wants_network_node:
            self.is_network_node = False
            return False
        key = self._keys.network_node_role
        result = await self._etcd.txn([Compare.absent(key)], [Put(key, self._ctx.node)])
        if result.succeeded:
            self.is_network_node = True
        else:
            holder = await self._etcd.get(key)
            self.is_network_node = holder is not None and holder.value.decode() == self._ctx.node
            if not self.is_network_node and holder is not None:
                log.error("node %s is configured as the network node, but %s already is; "
                          "running as a hypervisor only (delete %s to move the role)",
                          self._ctx.node, holder.value.decode(), key)
        await self._mirror.wait_for_revision(result.revision)
        return self.is_network_node

    # --- reading desired state ---------------------------------------------------------

    def snapshot(self) -> Snapshot:
        keys, mirror = self._keys, self._mirror
        snap = Snapshot()
        for kv in mirror.items(keys.networks):
            spec = NetworkSpec.from_json(kv.value)
            snap.networks[spec.uuid] = (spec, kv.mod_revision)
        for kv in mirror.items(keys.observed_networks):
            snap.observed[kv.key.rsplit("/", 1)[-1]] = NetworkObserved.from_json(kv.value)
        for kv in mirror.items(keys.interfaces):
            iface = InterfaceSpec.from_json(kv.value)
            snap.interfaces[iface.uuid] = iface
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

    def _local_networks(self, snap: Snapshot) -> set[str]:
        return {i.network_uuid for i in snap.interfaces.values()
                if snap.node_of(i) == self._ctx.node}

    def _peers(self, snap: Snapshot, network_uuid: str) -> set[str]:
        """The addresses of the other nodes on the network."""
        nodes = snap.nodes_on(network_uuid)
        if snap.network_node:
            nodes.add(snap.network_node)
        nodes.discard(self._ctx.node)
        return {snap.nodes[name].ip for name in nodes if name in snap.nodes}

    def _wanted_here(self, snap: Snapshot) -> set[int]:
        """VXLAN ids whose bridge this node should have."""
        local = self._local_networks(snap)
        return {
            spec.vxid for spec, _ in snap.networks.values()
            if spec.uuid in local or (self.is_network_node and snap.alive(spec))
        }

    # --- reacting to changes -----------------------------------------------------------

    def on_changes(self, changes: list[Change]) -> None:
        keys = self._keys
        for change in changes:
            if uuid := keys.uuid_of(change.key, keys.networks):
                self.queue.add(uuid)
            elif keys.uuid_of(change.key, keys.interfaces):
                for kv in (change.old, change.new):
                    if kv is not None:
                        self.queue.add(InterfaceSpec.from_json(kv.value).network_uuid)
            elif keys.uuid_of(change.key, keys.instances):
                # Placement and deletion decide which nodes are on a network.
                for kv in (change.old, change.new):
                    if kv is not None:
                        for iface_uuid in InstanceSpec.from_json(kv.value).interfaces:
                            iface_kv = self._mirror.get(keys.interface(iface_uuid))
                            if iface_kv is not None:
                                self.queue.add(InterfaceSpec.from_json(iface_kv.value)
                                               .network_uuid)
            elif uuid := keys.uuid_of(change.key, keys.observed_networks):
                # The network node applied something: instances waiting for
                # their DHCP entries may start.
                self._poke_waiting_instances(uuid)
            elif change.key == keys.network_node_role or keys.uuid_of(change.key, keys.nodes):
                for kv in self._mirror.items(keys.networks):
                    self.queue.add(kv.key.rsplit("/", 1)[-1])

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
            self.queue.add(kv.key.rsplit("/", 1)[-1])

    def _retry_later(self, uuid: str) -> None:
        if uuid in self._retries:
            return
        loop = asyncio.get_running_loop()

        def retry() -> None:
            self._retries.pop(uuid, None)
            self.queue.add(uuid)

        self._retries[uuid] = loop.call_later(RETRY_AFTER_FAILURE, retry)

    # --- one network ---------------------------------------------------------------------

    async def reconcile(self, uuid: str) -> None:
        async with self._lock:
            # Read inside the lock: a pass that waited must not act on what
            # was true before the pass it waited for.
            snap = self.snapshot()
            found = snap.networks.get(uuid)
            if found is None:
                return
            spec, _ = found
            try:
                if self.is_network_node:
                    await self._network_node_pass(snap, spec)
                    if not self._uplink_wanted(snap):
                        await asyncio.to_thread(netkernel.delete_link, self.names.uplink_bridge)
                elif uuid in self._local_networks(snap):
                    await asyncio.to_thread(self._build_mesh, spec, self._peers(snap, uuid))
                    await asyncio.to_thread(self._attach_local_taps, snap, spec)
                else:
                    await asyncio.to_thread(self._remove_mesh, spec.vxid)
            except _FAILURES as exc:
                log.warning("network %s (%s): %s", spec.name, uuid, exc)
                if self.is_network_node and spec.desired != "deleted":
                    await self._report(snap, spec, state="error", error=str(exc))
                self._retry_later(uuid)

    def _build_mesh(self, spec: NetworkSpec, peers: set[str]) -> None:
        names = self.names
        netkernel.ensure_bridge(names.bridge(spec.vxid), spec.mtu)
        netkernel.ensure_vxlan(
            names.vxlan(spec.vxid), vxid=spec.vxid, local=self._ctx.node_ip,
            port=self._ctx.vxlan_port, mtu=spec.mtu, bridge=names.bridge(spec.vxid),
        )
        if netkernel.set_flood_peers(names.vxlan(spec.vxid), peers):
            log.info("network %s: VXLAN %d floods to %s", spec.name, spec.vxid,
                     ", ".join(sorted(peers)) or "no other node")

    def _remove_mesh(self, vxid: int) -> None:
        netkernel.delete_link(self.names.vxlan(vxid))
        netkernel.delete_link(self.names.bridge(vxid))

    def _attach_local_taps(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """Keep the taps of this node's guests in the network's bridge (a
        bridge made again loses its ports)."""
        for iface in snap.on(spec.uuid):
            if snap.node_of(iface) == self._ctx.node:
                self._attach_tap(iface, spec)

    def _attach_tap(self, iface: InterfaceSpec, spec: NetworkSpec) -> bool:
        tap = self.names.tap(iface.uuid)
        if self._ctx.libvirt_netns:
            netkernel.adopt_tap(tap, self._ctx.libvirt_netns)
        return netkernel.enslave(tap, self.names.bridge(spec.vxid), spec.mtu)

    # --- the network node ----------------------------------------------------------------

    def _directory(self, vxid: int) -> Path:
        return self._ctx.networks_dir / f"{vxid:06x}"

    async def _network_node_pass(self, snap: Snapshot, spec: NetworkSpec) -> None:
        ifaces = snap.on(spec.uuid)
        if not snap.alive(spec):
            await self._tear_down(snap, spec)
            return
        names = self.names
        namespace = names.netns(spec.vxid)
        await asyncio.to_thread(self._build_mesh, spec, self._peers(snap, spec.uuid))
        await asyncio.to_thread(self._attach_local_taps, snap, spec)
        events: list[str] = []
        await asyncio.to_thread(self._build_namespace, spec)
        failpoints.hit("after-netns")
        if spec.provide_dhcp:
            self._dnsmasq.forget(spec.uuid)
            outcome = await asyncio.to_thread(
                dnsmasq.ensure, namespace, self._directory(spec.vxid), self._dhcp(snap, spec)
            )
            self._dnsmasq.watch(spec.uuid, outcome.pid)
            if outcome.action in ("started", "restarted"):
                events.append(f"dnsmasq {outcome.action} (pid {outcome.pid})")
        else:
            self._dnsmasq.forget(spec.uuid)
            await asyncio.to_thread(dnsmasq.remove, self._directory(spec.vxid))
        failpoints.hit("after-dnsmasq")
        egress = self._egress_wanted(spec, ifaces)
        if egress:
            if await asyncio.to_thread(self._build_egress, spec, ifaces):
                events.append("NAT and floating addresses applied")
        else:
            await asyncio.to_thread(self._remove_egress, spec)
        failpoints.hit("after-egress")
        await self._report(snap, spec, state="created", error=None,
                           applied=[i.uuid for i in ifaces], egress=egress, events=events)
        await self._release_floating(snap, spec)

    def _build_namespace(self, spec: NetworkSpec) -> None:
        names = self.names
        namespace = names.netns(spec.vxid)
        netkernel.ensure_netns(namespace)
        netkernel.ensure_veth_into(names.veth(spec.vxid), namespace, INSIDE,
                                   bridge=names.bridge(spec.vxid), mtu=spec.mtu)
        netkernel.configure_inside(namespace, INSIDE, mtu=spec.mtu,
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
        )

    def _egress_wanted(self, spec: NetworkSpec, ifaces: list[InterfaceSpec]) -> bool:
        if not self._ctx.uplink or self._ctx.floating is None:
            return False
        return bool(spec.floating_gateway) or any(i.floating and i.ipv4 for i in ifaces)

    def _build_egress(self, spec: NetworkSpec, ifaces: list[InterfaceSpec]) -> bool:
        """NAT and floating addresses in the namespace; True if the rules changed."""
        names, ctx = self.names, self._ctx
        assert ctx.floating is not None and ctx.floating_router is not None
        if netkernel.is_default_route_link(ctx.uplink):
            raise KernelError(
                f"the uplink {ctx.uplink} carries this node's own addresses or default route; "
                "NAT and floating addresses need an interface of their own (SFCLOUD_UPLINK)"
            )
        uplink_bridge = names.uplink_bridge
        netkernel.ensure_bridge(uplink_bridge, UPLINK_MTU)
        if not netkernel.enslave(ctx.uplink, uplink_bridge):
            raise KernelError(f"the uplink {ctx.uplink} does not exist on {ctx.node}")
        namespace = names.netns(spec.vxid)
        netkernel.ensure_veth_into(names.egress(spec.vxid), namespace, EGRESS,
                                   bridge=uplink_bridge, mtu=UPLINK_MTU)
        floats = [(i.floating, i.ipv4) for i in ifaces if i.floating and i.ipv4]
        addresses = [Address(address, 32) for address, _ in floats]
        if spec.floating_gateway:
            addresses.append(Address(spec.floating_gateway, 32))
        added = netkernel.configure_inside(
            namespace, EGRESS, mtu=UPLINK_MTU, addresses=addresses,
            routes=[Route(str(ctx.floating)), Route("default", ctx.floating_router)],
        )
        netkernel.announce(namespace, EGRESS, [a.address for a in added])
        netkernel.set_forwarding(namespace, True)
        return nftables.apply(namespace, nftables.EgressRules(
            table=names.nft_table,
            netblock=spec.netblock,
            gateway=spec.floating_gateway if spec.provide_nat else None,
            floating=tuple(nftables.Floating(floating, private)
                           for floating, private in sorted(floats)),
        ))

    def _remove_egress(self, spec: NetworkSpec) -> None:
        namespace = self.names.netns(spec.vxid)
        netkernel.delete_link(self.names.egress(spec.vxid))
        if namespace in netkernel.namespaces(self.names.netns_prefix):
            nftables.remove(namespace, self.names.nft_table)
            netkernel.set_forwarding(namespace, False)

    async def _tear_down(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """A deleted network nothing uses any more: remove all of it, then
        release its VXLAN id and addresses in the transaction that reports it
        deleted."""
        observed = snap.observed.get(spec.uuid)
        releases = self._teardown_releases(snap, spec)
        if observed is not None and observed.state == "deleted" and not releases:
            return
        self._dnsmasq.forget(spec.uuid)
        await asyncio.to_thread(self._remove_everything, spec.vxid)
        failpoints.hit("after-network-teardown")
        record = self._observed_record(snap, spec, state="deleted", error=None, applied=[],
                                       egress=False)
        revision = (await self._etcd.txn(
            [], [*releases, Put(self._keys.observed_network(spec.uuid), record.to_json())]
        )).revision
        self._emit_changes(spec.uuid, observed, record)
        self._emit(spec.uuid, "namespace, dnsmasq and links removed; VXLAN id and addresses "
                              "released", type="mutate")
        await self._mirror.wait_for_revision(revision)

    def _teardown_releases(self, snap: Snapshot, spec: NetworkSpec) -> list[Delete]:
        keys = self._keys
        releases: list[Delete] = []
        vxid_kv = self._mirror.get(keys.vxlan(spec.vxid))
        if vxid_kv is not None and vxid_kv.value.decode() == spec.uuid:
            releases.append(Delete(keys.vxlan(spec.vxid)))
        if any(True for _ in self._mirror.items(keys.addresses(spec.uuid))):
            releases.append(Delete(keys.addresses(spec.uuid), prefix=True))
        releases += [Delete(key) for key, (r, _) in snap.floating.items()
                     if r.network_uuid == spec.uuid]
        if self._mirror.get(keys.network_fence(spec.uuid)) is not None:
            releases.append(Delete(keys.network_fence(spec.uuid)))
        return releases

    def _remove_everything(self, vxid: int) -> None:
        names = self.names
        dnsmasq.remove(self._directory(vxid))
        netkernel.remove_netns(names.netns(vxid))
        for link in (names.egress(vxid), names.veth(vxid), names.vxlan(vxid),
                     names.bridge(vxid)):
            netkernel.delete_link(link)

    async def _release_floating(self, snap: Snapshot, spec: NetworkSpec) -> None:
        """Free the floating addresses of this network whose NAT is gone."""
        unused = []
        for key, (reservation, revision) in snap.floating.items():
            if reservation.network_uuid != spec.uuid:
                continue
            if reservation.type == "gateway":
                in_use = spec.floating_gateway == reservation.address
            else:
                iface = snap.interfaces.get(reservation.user[-1])
                in_use = iface is not None and iface.floating == reservation.address
            if not in_use:
                unused.append((key, revision))
        if unused:
            result = await self._etcd.txn(
                [Compare.unchanged_since(key, revision) for key, revision in unused],
                [Delete(key) for key, _ in unused],
            )
            log.info("released %d floating address(es) of network %s", len(unused), spec.name)
            for key, _ in unused:
                self._emit(spec.uuid, f"floating address {key.rsplit('/', 1)[-1]} released",
                           type="mutate")
            await self._mirror.wait_for_revision(result.revision)

    # --- reporting -----------------------------------------------------------------------

    def _observed_record(self, snap: Snapshot, spec: NetworkSpec, *, state: str,
                         error: str | None, applied: list[str] | None = None,
                         egress: bool | None = None) -> NetworkObserved:
        current = snap.observed.get(spec.uuid)
        return NetworkObserved(
            node=self._ctx.node, state=state, error=error,
            applied=sorted(applied if applied is not None else
                           (current.applied if current else [])),
            egress=egress if egress is not None else bool(current and current.egress),
            updated_at=time.time(),
        )

    async def _report(self, snap: Snapshot, spec: NetworkSpec, *,
                      events: tuple[str, ...] | list[str] = (), **fields: object) -> None:
        """Write the observed record if something in it changed, and tell
        the event log what happened."""
        record = self._observed_record(snap, spec, **fields)  # type: ignore[arg-type]
        current = snap.observed.get(spec.uuid)
        self._emit_changes(spec.uuid, current, record)
        for message in events:
            self._emit(spec.uuid, message, type="mutate")
        if current is not None and record.replace(updated_at=0) == current.replace(updated_at=0):
            return
        revision = await self._etcd.put(self._keys.observed_network(spec.uuid), record.to_json())
        await self._mirror.wait_for_revision(revision)

    def _emit_changes(self, uuid: str, before: NetworkObserved | None,
                      after: NetworkObserved) -> None:
        if before is None or before.state != after.state or before.error != after.error:
            message = f"state is now {after.state}"
            if after.error:
                message += f": {after.error}"
            self._emit(uuid, message, type="status", extra={"node": self._ctx.node})

    def _emit(self, uuid: str, message: str, **kwargs: object) -> None:
        if self._events is not None:
            self._events.emit("network", uuid, message, **kwargs)  # type: ignore[arg-type]

    # --- garbage -------------------------------------------------------------------------

    async def collect_garbage(self) -> None:
        """Remove every kernel object and dnsmasq of this cloud that no
        network wants on this node (left by a crash, or by a network whose
        record is gone)."""
        async with self._lock:
            snap = self.snapshot()
            removed = await asyncio.to_thread(self._remove_unwanted, self._wanted_here(snap),
                                              self._uplink_wanted(snap))
        for what in removed:
            log.info("removed stale %s", what)

    def _uplink_wanted(self, snap: Snapshot) -> bool:
        return self.is_network_node and any(
            self._egress_wanted(spec, snap.on(spec.uuid))
            for spec, _ in snap.networks.values() if snap.alive(spec)
        )

    def _remove_unwanted(self, wanted: set[int], uplink_wanted: bool) -> list[str]:
        names = self.names
        removed = []
        for conf, pid in dnsmasq.find_processes(self._ctx.networks_dir).items():
            vxid = _vxid_of_dir(conf.parent)
            if vxid is None or vxid not in wanted or not self.is_network_node:
                dnsmasq.stop(pid, conf)
                removed.append(f"dnsmasq {pid}")
        if self._ctx.networks_dir.exists():
            for directory in self._ctx.networks_dir.iterdir():
                vxid = _vxid_of_dir(directory)
                if vxid is not None and (vxid not in wanted or not self.is_network_node):
                    dnsmasq.remove(directory)
        for namespace in netkernel.namespaces(names.netns_prefix):
            vxid = names.parse_netns(namespace)
            if vxid is None or vxid not in wanted or not self.is_network_node:
                netkernel.remove_netns(namespace)
                removed.append(f"namespace {namespace}")
        for link in netkernel.links():
            parsed = names.parse_link(link)
            if parsed is None:
                continue
            kind, vxid = parsed
            stale = vxid not in wanted or (kind in ("veth", "egress")
                                           and not self.is_network_node)
            if stale and netkernel.delete_link(link):
                removed.append(f"{kind} {link}")
        if not uplink_wanted and netkernel.delete_link(names.uplink_bridge):
            removed.append(f"bridge {names.uplink_bridge}")
        return removed

    def close(self) -> None:
        self._dnsmasq.close()
        for handle in self._retries.values():
            handle.cancel()

    # --- what instances need -------------------------------------------------------------

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
        """Make the bridges the instance's NICs plug into; its NICs as the
        domain XML describes them."""
        nics = self.nics(spec)
        async with self._lock:
            snap = self.snapshot()
            for network in {net.uuid: net for _, net in nics}.values():
                await asyncio.to_thread(self._build_mesh, network,
                                        self._peers(snap, network.uuid))
        namespaced = bool(self._ctx.libvirt_netns)
        return [
            DomainInterface(
                bridge=None if namespaced else self.names.bridge(net.vxid),
                mac=iface.macaddr, model=iface.model, mtu=net.mtu,
                tap=self.names.tap(iface.uuid),
            )
            for iface, net in nics
        ]

    def not_ready(self, spec: InstanceSpec) -> str | None:
        """Why the instance should not boot yet (its DHCP entries are not in
        place), or None."""
        for iface, network in self.nics(spec):
            kv = self._mirror.get(self._keys.observed_network(network.uuid))
            observed = NetworkObserved.from_json(kv.value) if kv else None
            if observed is None or iface.uuid not in observed.applied:
                return f"waiting for the network node to set up network {network.name}"
        return None

    async def attach(self, spec: InstanceSpec) -> None:
        """Plug a running instance's taps into their bridges. A tap that is
        not there (yet) is left to the network's next pass."""
        nics = self.nics(spec)
        if not nics:
            return
        async with self._lock:
            for iface, network in nics:
                if not await asyncio.to_thread(self._attach_tap, iface, network):
                    log.warning("the tap of %s's eth%d is missing", spec.name, iface.order)
                    self._retry_later(network.uuid)

    def network_data(self, spec: InstanceSpec) -> dict:
        return networkdata.build(self.nics(spec), self._ctx.dns_servers)

    def releases(self, spec: InstanceSpec) -> list[Delete]:
        """What an instance's teardown gives back: its interfaces, their
        addresses and MACs. Floating addresses stay reserved until the
        network node has removed their NAT."""
        keys = self._keys
        found: list[Delete] = []
        for uuid in spec.interfaces:
            kv = self._mirror.get(keys.interface(uuid))
            if kv is None:
                continue
            iface = InterfaceSpec.from_json(kv.value)
            found.append(Delete(keys.interface(uuid)))
            address = self._mirror.get(keys.address(iface.network_uuid, iface.ipv4 or ""))
            if iface.ipv4 is not None and address is not None and \
                    AddressReservation.from_json(address.value).user[-1] == uuid:
                found.append(Delete(keys.address(iface.network_uuid, iface.ipv4)))
            mac = self._mirror.get(keys.mac(iface.macaddr))
            if mac is not None and mac.value.decode() == uuid:
                found.append(Delete(keys.mac(iface.macaddr)))
        return found


def _vxid_of_dir(directory: Path) -> int | None:
    try:
        return int(directory.name, 16) if len(directory.name) == 6 else None
    except ValueError:
        return None
