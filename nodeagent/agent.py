"""The node agent: follows etcd, reconciles this node, reports what it sees.

Work arrives three ways, all feeding one de-duplicating queue: a change in
etcd (through the mirror's watch), a libvirt lifecycle event (a guest paused
or powered itself off), and a periodic sweep that looks at everything this
node holds, so drift nobody announced is repaired too. Nothing polls in
between: idle, the agent sleeps on its watch, its events and one timer.

This module only composes the parts and runs them:

    instances     each instance on this node (with hypervisor, domainxml,
                  configdrive and snapshots)
    net/          this node's share of every network; the instance reconciler
                  reaches it through net.ports alone
    images/       the image cache, kept in step with etcd
    consoles/     the console relays, on the agent's server (server)
    events        events to the portal, spooled on disk until acknowledged

Each part that runs for the agent's life is a task started in ``run``; a
new one (sampling usage history, say) is a module of its own with a
``run()`` coroutine, started there beside the others.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import metadata
from typing import Protocol

from cloudstate import netvalidation, signing
from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.mirror import Change, Mirror
from cloudstate.model import Image, InstanceSpec, NodeInfo
from cloudstate.signing import load_secret
from cloudstate.urlguard import FetchPolicy
from nodeagent import firmware, hostfacts
from nodeagent.consoles.routes import ConsoleRoutes
from nodeagent.domainxml import DomainOwner
from nodeagent.events import EventLog, EventSender, EventSpool, events_url
from nodeagent.hypervisor import Hypervisor
from nodeagent.images.cache import ImageCache
from nodeagent.images.routes import ImageRoutes
from nodeagent.images.sync import ImageSync, specs_using
from nodeagent.instances import InstanceContext, InstanceReconciler
from nodeagent.net.context import NetworkContext
from nodeagent.net.names import NetNames
from nodeagent.net.reconciler import NetworkReconciler
from nodeagent.server import AgentServer
from nodeagent.settings import AgentSettings
from nodeagent.workqueue import WorkQueue

log = logging.getLogger(__name__)

NODE_INFO_REFRESH = 60.0


class Running(Protocol):
    """A part that works for the agent's whole life, until cancelled."""

    async def run(self) -> None: ...


def release() -> str:
    try:
        return metadata.version("sfcloud")
    except metadata.PackageNotFoundError:
        return "dev"


class Agent:
    def __init__(self, settings: AgentSettings):
        self.settings = settings
        self.keys = Keys(settings.common.etcd_prefix)
        self.etcd = Etcd(settings.common.etcd_endpoints)
        self.mirror = Mirror(
            self.etcd, self.keys.root, resync_interval=settings.common.resync_interval
        )
        self.owner = DomainOwner(cluster=settings.common.cluster, node=settings.node_name)
        self.queue = WorkQueue(self._reconcile, workers=settings.workers)
        self.hypervisor = Hypervisor(
            settings.libvirt_uri,
            on_domain_event=self.queue.add,
            on_reconnect=lambda: asyncio.get_running_loop().create_task(self.sweep()),
        )
        self.images = ImageCache(settings.images_dir, FetchPolicy.from_env())
        self.events = EventLog(EventSpool(settings.event_spool_dir))
        secret = load_secret(settings.common.state_dir)
        self.image_sync = ImageSync(
            node=settings.node_name, keys=self.keys, etcd=self.etcd, mirror=self.mirror,
            cache=self.images, events=self.events, in_use=self._image_in_use, secret=secret)
        # Downloads take long; they get their own workers so they never hold
        # up power actions and the like.
        self.image_queue = WorkQueue(self.image_sync.reconcile, workers=2)
        self.networks = NetworkReconciler(
            context=_network_context(settings), keys=self.keys, etcd=self.etcd,
            mirror=self.mirror, poke_instance=self.queue.add, events=self.events,
        )
        self.reconciler: InstanceReconciler | None = None
        self.server = AgentServer(
            host=settings.node_ip, port=settings.agent_port, node=settings.node_name,
            secret=secret,
        )
        ConsoleRoutes(
            server=self.server, node=settings.node_name, keys=self.keys, mirror=self.mirror,
            hypervisor=self.hypervisor, instances_dir=settings.instances_dir,
        ).register()
        ImageRoutes(server=self.server, images=self.image_sync).register()
        self.networks.ping.register(self.server)
        self.started = asyncio.Event()

    async def run(self) -> None:
        settings = self.settings
        for path in (settings.node_dir, settings.instances_dir, settings.images_dir,
                     settings.networks_dir):
            path.mkdir(parents=True, exist_ok=True)
        virt = await hostfacts.probe_virtualization(settings.virt_type, settings.machine)
        log.info("node %s: %s (%s)", settings.node_name, virt.virt_type, virt.reason)
        await self.hypervisor.connect()
        self.images.cleanup_partials()
        self.reconciler = InstanceReconciler(
            context=InstanceContext(
                owner=self.owner,
                virt=virt,
                instances_dir=settings.instances_dir,
                domain_template=settings.domain_template,
            ),
            keys=self.keys, etcd=self.etcd, mirror=self.mirror,
            hypervisor=self.hypervisor, images=self.image_sync, events=self.events,
            ports=self.networks.ports,
        )
        self.mirror.subscribe(self._on_changes)
        self.mirror.subscribe(self.networks.on_changes)
        sender = EventSender(
            self.events, url=events_url(settings.portal_url), node=settings.node_name,
            secret=signing.load_secret(settings.common.state_dir))
        try:
            async with asyncio.TaskGroup() as group:
                running: tuple[Running, ...] = (self.mirror, self.queue, self.image_queue,
                                                sender, self.networks.queue)
                for part in running:
                    group.create_task(part.run())
                await self.mirror.ready.wait()
                await self.networks.claim_role()
                await self.server.start()
                await self._register(virt)
                self.events.emit("node", settings.node_name,
                                 f"node agent {release()} started ({virt.virt_type})",
                                 type="status", extra={"reason": virt.reason})
                group.create_task(self.etcd.hold_lease(
                    settings.common.node_lease_ttl, self._mark_alive
                ))
                group.create_task(self._refresh_node_info(virt))
                await self.sweep()
                self.started.set()
                group.create_task(self._periodic_sweep())
        finally:
            self.networks.close()
            await self.server.stop()
            await self.hypervisor.close()
            await self.etcd.close()

    # --- node registration ----------------------------------------------------------

    def _node_info(self, virt: hostfacts.Virtualization) -> NodeInfo:
        cap = hostfacts.capacity(self.settings.common.state_dir)
        return NodeInfo(
            name=self.settings.node_name,
            ip=self.settings.node_ip,
            vcpus=cap.vcpus,
            memory_mib=cap.memory_mib,
            disk_total_gb=cap.disk_total_gb,
            disk_free_gb=cap.disk_free_gb,
            virt_type=virt.virt_type,
            machine=virt.machine,
            virt_reason=virt.reason,
            release=release(),
            is_network_node=self.networks.is_network_node,
            agent_port=self.server.port,
            firmware=firmware.offered(),
        )

    async def _register(self, virt: hostfacts.Virtualization) -> None:
        info = self._node_info(virt)
        await self.etcd.put(self.keys.node(self.settings.node_name), info.to_json())

    async def _refresh_node_info(self, virt: hostfacts.Virtualization) -> None:
        """Free disk changes as images arrive; rewrite only when it does."""
        while True:
            await asyncio.sleep(NODE_INFO_REFRESH)
            info = self._node_info(virt)
            kv = self.mirror.get(self.keys.node(self.settings.node_name))
            current = NodeInfo.from_json(kv.value) if kv else None
            if current is None or info.replace(started_at=current.started_at) != current:
                await self.etcd.put(self.keys.node(self.settings.node_name), info.to_json())

    async def _mark_alive(self, lease_id: int) -> None:
        await self.etcd.put(self.keys.node_alive(self.settings.node_name), b"1", lease=lease_id)

    # --- what to look at ----------------------------------------------------------------

    def _on_changes(self, changes: list[Change]) -> None:
        for change in changes:
            image_uuid = self.keys.uuid_of(change.key, self.keys.images)
            if image_uuid is not None:
                self._image_changed(image_uuid, change)
                continue
            uuid = self.keys.uuid_of(change.key, self.keys.instances)
            if uuid is None:
                continue
            # Ours now, or ours before this change (moved away or removed).
            for kv in (change.new, change.old):
                if kv is not None and InstanceSpec.from_json(kv.value).node == self.owner.node:
                    self.queue.add(uuid)
                    break

    def _image_changed(self, uuid: str, change: Change) -> None:
        self.image_queue.add(uuid)
        if change.new is None:
            return
        image = Image.from_json(change.new.value)
        # A snapshot to take is work for the instance's own pass, which it
        # must not race (pausing, powering, deleting).
        if image.kind == "snapshot" and image.node == self.owner.node and image.instance_uuid:
            self.queue.add(image.instance_uuid)

    def _image_in_use(self, cache_key: str) -> bool:
        """Whether an instance on this node (even one being deleted, whose
        disks may still be there) has a disk backed by this cached image."""
        specs = [InstanceSpec.from_json(kv.value) for kv in self.mirror.items(self.keys.instances)]
        assert self.reconciler is not None
        local = self.reconciler.local_instances()
        return any(spec.node == self.owner.node and (spec.desired != "deleted"
                                                     or spec.uuid in local)
                   for spec in specs_using(specs, cache_key))

    async def sweep(self) -> None:
        """Queue everything this node should have or does have."""
        for kv in self.mirror.items(self.keys.images):
            if uuid := self.keys.uuid_of(kv.key, self.keys.images):
                self.image_queue.add(uuid)
        wanted = {
            uuid for kv in self.mirror.items(self.keys.instances)
            if (uuid := self.keys.uuid_of(kv.key, self.keys.instances))
            and InstanceSpec.from_json(kv.value).node == self.owner.node
        }
        assert self.reconciler is not None
        held = self.reconciler.local_instances()
        held |= set(await self.hypervisor.owned_domains(self.owner))
        for uuid in wanted | held:
            self.queue.add(uuid)
        await self.networks.collect_garbage()
        self.networks.sweep()

    async def _periodic_sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.common.resync_interval)
            await self.sweep()

    async def _reconcile(self, uuid: str) -> None:
        assert self.reconciler is not None
        await self.reconciler.reconcile(uuid)


def _network_context(settings: AgentSettings) -> NetworkContext:
    floating = netvalidation.floating_network(settings.common.floating_network)
    return NetworkContext(
        node=settings.node_name,
        node_ip=settings.node_ip,
        names=NetNames.for_cluster(settings.common.cluster, settings.net_tag,
                                   node=settings.node_name),
        vxlan_port=settings.common.vxlan_port,
        networks_dir=settings.networks_dir,
        wants_network_node=settings.network_node,
        uplink=settings.uplink,
        dns_servers=settings.dns_servers,
        libvirt_netns=settings.libvirt_netns,
        floating=floating,
        floating_router=(netvalidation.floating_router(floating, settings.common.floating_router)
                         if floating else None),
    )
