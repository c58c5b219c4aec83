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
    images/       blobs (and uploads becoming blobs) and the qcow2 images made
                  from them, kept in step with etcd
    consoles/     the console relays, on the agent's server (server)
    usage/        usage history for graphs, Shaken Fist's resources events and
                  /metrics, sampled at a fixed interval
    events        events to the portal, spooled on disk until acknowledged

Each part that runs for the agent's life is a task started in ``run``: a
module of its own with a ``run()`` coroutine, started there beside the others.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from importlib import metadata
from typing import Protocol

from cloudstate import metrics, netvalidation, privacy, signing, tls
from cloudstate.etcd import Compare, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.mirror import Change
from cloudstate.model import Artifact, Blob, InstanceSpec, NodeInfo, Upload
from cloudstate.scopedmirror import ScopedMirror
from cloudstate.settings import REPO_ROOT
from cloudstate.signing import load_secret
from cloudstate.urlguard import FetchPolicy
from cloudstate.vocabulary import ObjectKind
from nodeagent import firmware, hostfacts, periodic, records, scope, simulated
from nodeagent.consoles.routes import ConsoleRoutes
from nodeagent.domainxml import DomainOwner
from nodeagent.events import EventLog, EventSender, EventSpool, events_url
from nodeagent.hypervisor import Hypervisor
from nodeagent.images.blobs import BlobStore
from nodeagent.images.cache import ImageCache
from nodeagent.images.routes import StorageRoutes
from nodeagent.images.sync import BlobSync
from nodeagent.images.uploads import UploadStore
from nodeagent.instances import InstanceContext, InstanceReconciler
from nodeagent.net.context import NetworkContext
from nodeagent.net.names import NetNames
from nodeagent.net.reconciler import NetworkReconciler
from nodeagent.server import AgentServer
from nodeagent.settings import AgentSettings
from nodeagent.usage.history import HistoryStore
from nodeagent.usage.placed import PlacedInstances
from nodeagent.usage.resources import NodeFacts, ResourcesReporter
from nodeagent.usage.routes import UsageRoutes
from nodeagent.usage.sampler import UsageSampler
from nodeagent.workqueue import WorkQueue

log = logging.getLogger(__name__)

NODE_INFO_REFRESH = 60.0
# An upload file no upload record claims is removed once idle this long (its
# record is written before its first byte arrives; this only covers the
# moment the agent's mirror takes to see it).
UPLOAD_IDLE_GRACE = 120.0


class Running(Protocol):
    """A part that works for the agent's whole life, until cancelled."""

    async def run(self) -> None: ...


def release() -> str:
    """sfcloud's version, and the deploy's release id when it installed this
    code (a RELEASE file beside it, deploy/release.py): "0.1.0+06b8fe401b7e"."""
    try:
        version = metadata.version("sfcloud")
    except metadata.PackageNotFoundError:
        try:
            version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())[
                "project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            version = "dev"
    try:
        deployed = (REPO_ROOT / "RELEASE").read_text().strip()
    except OSError:
        return version
    return f"{version}+{deployed}" if deployed else version


class Agent:
    def __init__(self, settings: AgentSettings):
        self.settings = settings
        # This node's certificate, for etcd, its server, and its own calls
        # to other agents and to the portal. Wrong or missing: no start.
        tls.require(settings.credentials, role=tls.ROLE_AGENT, name=settings.node_name,
                    ip=settings.node_ip)
        # Simulated (libvirt's test driver) only when asked twice, plainly.
        self.simulated = settings.common.simulated_hypervisor
        simulated.check_mode(simulated=self.simulated, libvirt_uri=settings.libvirt_uri)
        self.client_tls = tls.ClientTls(settings.credentials)
        self.keys = Keys(settings.common.etcd_prefix)
        self.etcd = Etcd(settings.common.etcd_endpoints, tls=settings.credentials)
        # Every record is checked before any part of the agent sees it
        # (nodeagent.records); refused ones are reported, not acted on.
        # Only what this node acts on (nodeagent.scope): its memory does not
        # grow with the rest of the cloud.
        self.mirror = ScopedMirror(
            self.etcd,
            scope.parts(self.keys, settings.node_name,
                        network_node=settings.network_node and not self.simulated),
            resync_interval=settings.common.resync_interval,
            gate=records.RecordGate(self.keys),
        )
        self.owner = DomainOwner(cluster=settings.common.cluster, node=settings.node_name)
        self.queue = WorkQueue(self._reconcile, workers=settings.workers)
        self.hypervisor = Hypervisor(
            settings.libvirt_uri,
            on_domain_event=self.queue.add,
            on_reconnect=lambda: asyncio.get_running_loop().create_task(self.sweep()),
        )
        self.blobs = BlobStore(settings.blobs_dir, FetchPolicy.from_env(),
                               sandbox_user=settings.image_check_user,
                               file_dirs=settings.file_image_dirs)
        self.images = ImageCache(settings.images_dir, sandbox_user=settings.image_check_user)
        self.uploads = UploadStore(settings.uploads_dir)
        self.events = EventLog(EventSpool(settings.event_spool_dir))
        secret = load_secret(settings.common.state_dir)
        self.blob_sync = BlobSync(
            node=settings.node_name, keys=self.keys, etcd=self.etcd, mirror=self.mirror,
            blobs=self.blobs, cache=self.images, events=self.events, in_use=self._blob_in_use,
            secret=secret, client_tls=self.client_tls)
        # Downloads take long; they get their own workers so they never hold
        # up power actions and the like.
        self.blob_queue = WorkQueue(self.blob_sync.reconcile, workers=2)
        self.networks = NetworkReconciler(
            context=_network_context(settings, simulated=self.simulated), keys=self.keys,
            etcd=self.etcd, mirror=self.mirror, poke_instance=self.queue.add, events=self.events,
        )
        self.reconciler: InstanceReconciler | None = None
        self.server = AgentServer(
            host=settings.node_ip, port=settings.agent_port, node=settings.node_name,
            secret=secret, server_tls=tls.ServerTls(settings.credentials),
            replay_file=settings.node_dir / "used-grants",
        )
        consoles = ConsoleRoutes(
            server=self.server, node=settings.node_name, keys=self.keys, mirror=self.mirror,
            hypervisor=self.hypervisor, instances_dir=settings.instances_dir,
        )
        consoles.register()
        StorageRoutes(server=self.server, blobs=self.blob_sync, uploads=self.uploads).register()
        self.networks.ping.register(self.server)
        self.sampler = UsageSampler(
            interval=settings.usage_interval, hypervisor=self.hypervisor,
            store=HistoryStore(settings.usage_dir),
            placed=PlacedInstances(mirror=self.mirror, keys=self.keys, node=settings.node_name))
        UsageRoutes(server=self.server, sampler=self.sampler, on_this_node=consoles.on_this_node,
                    queues={"instances": self.queue, "blobs": self.blob_queue,
                            "networks": self.networks.queue},
                    metrics_token=metrics.token()).register()
        self.resources = ResourcesReporter(node=settings.node_name, sampler=self.sampler,
                                           events=self.events, facts=self._node_facts)
        self.started = asyncio.Event()

    async def run(self) -> None:
        settings = self.settings
        # QEMU and dnsmasq open files below these by name; nobody lists them,
        # and what an older version left readable is made private.
        for path in (settings.common.state_dir, settings.node_dir.parent, settings.node_dir,
                     settings.instances_dir, settings.images_dir, settings.networks_dir):
            privacy.passage_dir(path)
        # Blobs, uploads and usage history are the agent's alone (an image
        # QEMU opens is a hard link under images/, reached by that path).
        for path in (settings.blobs_dir, settings.uploads_dir, settings.usage_dir):
            privacy.private_dir(path)
        privacy.tighten(settings.node_dir)
        virt = (simulated.VIRTUALIZATION if self.simulated else
                await hostfacts.probe_virtualization(settings.virt_type, settings.machine))
        log.info("node %s: %s (%s)", settings.node_name, virt.virt_type, virt.reason)
        await self.hypervisor.connect()
        self.images.cleanup_partials()
        self.blobs.cleanup_partials()
        self.reconciler = InstanceReconciler(
            context=InstanceContext(
                owner=self.owner,
                virt=virt,
                instances_dir=settings.instances_dir,
                domain_template=settings.domain_template,
                simulated=self.simulated,
            ),
            keys=self.keys, etcd=self.etcd, mirror=self.mirror,
            hypervisor=self.hypervisor, images=self.blob_sync, events=self.events,
            ports=self.networks.ports,
        )
        self.mirror.subscribe(self._on_changes)
        self.mirror.subscribe(self.networks.on_changes)
        sender = EventSender(
            self.events, url=events_url(settings.portal_url), node=settings.node_name,
            secret=signing.load_secret(settings.common.state_dir), client_tls=self.client_tls)
        try:
            async with asyncio.TaskGroup() as group:
                running: tuple[Running, ...] = (self.mirror, self.queue, self.blob_queue,
                                                sender, self.networks.queue)
                for part in running:
                    group.create_task(part.run())
                await self.mirror.ready.wait()
                await self._copy_observed()
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
                for part in (self.sampler, self.resources):
                    group.create_task(part.run())
                await self.sweep()
                self.started.set()
                group.create_task(self._periodic_sweep())
        finally:
            self.networks.close()
            await self.server.stop()
            await self.blobs.close()
            await self.images.close()
            await self.hypervisor.close()
            await self.etcd.close()

    # --- node registration ----------------------------------------------------------

    def _node_info(self, virt: hostfacts.Virtualization) -> NodeInfo:
        cap = (simulated.CAPACITY if self.simulated
               else hostfacts.capacity(self.settings.common.state_dir))
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
            simulated=self.simulated,
            # A simulated node boots nothing: it offers BIOS alone.
            firmware=[] if self.simulated else firmware.offered(),
        )

    async def _register(self, virt: hostfacts.Virtualization) -> None:
        info = self._node_info(virt)
        await self.etcd.put(self.keys.node(self.settings.node_name), info.to_json())

    async def _refresh_node_info(self, virt: hostfacts.Virtualization) -> None:
        """Free disk changes as images arrive; rewrite only when it does."""

        async def refresh() -> None:
            info = self._node_info(virt)
            kv = self.mirror.get(self.keys.node(self.settings.node_name))
            current = NodeInfo.from_json(kv.value) if kv else None
            if current is None or info.replace(started_at=current.started_at) != current:
                await self.etcd.put(self.keys.node(self.settings.node_name), info.to_json())

        await periodic.every(NODE_INFO_REFRESH, refresh, "refreshing the node's record")

    def _node_facts(self) -> NodeFacts:
        settings = self.settings
        return NodeFacts(
            is_network_node=self.networks.is_network_node,
            disks={"sfroot": str(settings.common.state_dir),
                   "instances": str(settings.instances_dir),
                   "image_cache": str(settings.images_dir)},
            queue_waiting=self.queue.waiting, queue_processing=self.queue.in_progress)

    async def _copy_observed(self) -> None:
        """Copy this node's observed instance records that have no copy yet
        under the node's prefix, where this agent reads them (nodeagent.scope):
        they were written by an agent older than the copies. Once, at start."""
        kvs, _ = await self.etcd.get_prefix(self.keys.observed_instances)
        for kv in kvs:
            uuid = self.keys.uuid_of(kv.key, self.keys.observed_instances)
            if (uuid is None or records.claimed_node(kv.value) != self.owner.node
                    or self.mirror.get(kv.key) is not None):
                continue
            await self.etcd.txn([Compare.unchanged_since(kv.key, kv.mod_revision)],
                                [Put(self.keys.node_observed_instance(self.owner.node, uuid),
                                     kv.value)])

    async def _mark_alive(self, lease_id: int) -> None:
        await self.etcd.put(self.keys.node_alive(self.settings.node_name), b"1", lease=lease_id)

    # --- what to look at ----------------------------------------------------------------

    def _on_changes(self, changes: list[Change]) -> None:
        for change in changes:
            found = self.keys.classify(change.key)
            if found is None:
                continue
            if found.kind == ObjectKind.BLOB and found.observed:
                # A copy became ready (or failed) somewhere: nodes waiting
                # for it copy it now, instances waiting for it start.
                self.blob_queue.add(found.uuid)
                self._poke_instances_using(found.uuid)
            elif found.observed:
                continue  # what agents report of other objects is not work for this one
            elif found.kind == ObjectKind.BLOB:
                self._blob_changed(found.uuid, change)
            elif found.kind == ObjectKind.IMAGE:
                for kv in (change.old, change.new):
                    if kv is not None:
                        for blob in Artifact.from_json(kv.value).versions.values():
                            self.blob_queue.add(blob)
            elif found.kind == ObjectKind.INSTANCE:
                self._instance_changed(found.uuid, change)

    def _instance_changed(self, uuid: str, change: Change) -> None:
        if change.refused is not None or (change.old is None and change.new is None):
            # A refused record, or a refused one gone: whose it is and
            # what to say is the reconciler's to work out.
            self.queue.add(uuid)
            return
        # Ours now, or ours before this change (moved away or removed).
        for kv in (change.new, change.old):
            if kv is not None and InstanceSpec.from_json(kv.value).node == self.owner.node:
                self.queue.add(uuid)
                return

    def _blob_changed(self, uuid: str, change: Change) -> None:
        self.blob_queue.add(uuid)
        if change.new is None:
            return
        blob = Blob.from_json(change.new.value)
        # A snapshot to take is work for the instance's own pass, which it
        # must not race (pausing, powering, deleting).
        if blob.origin == "snapshot" and blob.node == self.owner.node and blob.instance_uuid:
            self.queue.add(blob.instance_uuid)

    def _local_specs(self) -> list[InstanceSpec]:
        return [spec for kv in self.mirror.items(self.keys.instances)
                if (spec := InstanceSpec.from_json(kv.value)).node == self.owner.node]

    def _poke_instances_using(self, blob_uuid: str) -> None:
        for spec in self._local_specs():
            if spec.desired != "deleted" and blob_uuid in spec.blob_uuids:
                self.queue.add(spec.uuid)

    def _blob_in_use(self, blob_uuid: str) -> bool:
        """Whether an instance on this node (even one being deleted, whose
        disks may still be there) starts from this blob (a disk backed by
        it, or its NVRAM template)."""
        assert self.reconciler is not None
        local = self.reconciler.local_instances()
        for refused in self.mirror.refused_items(self.keys.instances):
            if (records.claimed_node(refused.kv.value) == self.owner.node
                    or self.keys.uuid_of(refused.kv.key, self.keys.instances) in local):
                return True  # a refused record of ours hides which blobs it uses: keep all
        return any((spec.desired != "deleted" or spec.uuid in local)
                   and blob_uuid in spec.blob_uuids
                   for spec in self._local_specs())

    async def sweep(self) -> None:
        """Queue everything this node should have or does have."""
        blobs = self.blob_sync.blob_uuids()
        held = set(self.blobs.uuids()) | set(self.images.uuids())
        for uuid in blobs | held:
            self.blob_queue.add(uuid)
        uploads = {kv.key.rsplit("/", 1)[-1] for kv in self.mirror.items(self.keys.uploads)
                   if Upload.from_json(kv.value).node == self.owner.node}
        for uuid in self.uploads.sweep(uploads, grace=UPLOAD_IDLE_GRACE):
            log.info("removed upload %s: nobody wants it any more", uuid)
        wanted = {
            uuid for kv in self.mirror.items(self.keys.instances)
            if (uuid := self.keys.uuid_of(kv.key, self.keys.instances))
            and InstanceSpec.from_json(kv.value).node == self.owner.node
        }
        assert self.reconciler is not None
        held_instances = self.reconciler.local_instances()
        held_instances |= set(await self.hypervisor.owned_domains(self.owner))
        for uuid in wanted | held_instances:
            self.queue.add(uuid)
        await self.networks.collect_garbage()
        self.networks.sweep()

    async def _periodic_sweep(self) -> None:
        await periodic.every(self.settings.common.resync_interval, self.sweep, "the full sweep")

    async def _reconcile(self, uuid: str) -> None:
        assert self.reconciler is not None
        await self.reconciler.reconcile(uuid)


def _network_context(settings: AgentSettings, *, simulated: bool) -> NetworkContext:
    floating = netvalidation.floating_network(settings.common.floating_network)
    return NetworkContext(
        node=settings.node_name,
        node_ip=settings.node_ip,
        names=NetNames.for_cluster(settings.common.cluster, settings.net_tag,
                                   node=settings.node_name),
        vxlan_port=settings.common.vxlan_port,
        networks_dir=settings.networks_dir,
        # A simulated node never holds the network node's role: it has no
        # kernel networking to hold it with.
        wants_network_node=settings.network_node and not simulated,
        uplink=settings.uplink,
        dns_servers=settings.dns_servers,
        libvirt_netns=settings.libvirt_netns,
        floating=floating,
        floating_router=(netvalidation.floating_router(floating, settings.common.floating_router)
                         if floating else None),
        simulated=simulated,
    )
