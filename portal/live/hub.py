"""Live state: etcd watch -> Channels group -> the browsers that may see it.

Each portal process runs one hub: a mirror of the cloud's state in etcd and
a listener that, for every changed instance, tells the Channels group of
that instance's namespace. Consumers then render what changed from the
hub's mirror, with no further etcd read. Group names carry the hub's id so
that with a shared (Redis) channel layer each process only wakes its own
browsers, not every process's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import weakref
from collections import Counter
from typing import NamedTuple

from channels.layers import get_channel_layer
from django.conf import settings

from cloudstate.etcd import KeyValue
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.mirror import Change, Mirror
from cloudstate.model import (
    Artifact,
    BlobObserved,
    InstanceObserved,
    InstanceSpec,
    InterfaceSpec,
    NodeInfo,
    readable_node,
)
from cloudstate.vocabulary import ObjectKind
from portal.accounts.notify import ACCESS_CHANGED, user_group
from portal.cloud import blobs, store
from portal.cloud.instances import InstanceRecord, Namespaces, sorted_records, visible
from portal.cloud.scheduler import holds_resources, instance_tags
from portal.live.storehealth import StoreHealth

log = logging.getLogger(__name__)

INSTANCE_CHANGED = "instance.changed"
IMAGE_CHANGED = "image.changed"
NETWORK_CHANGED = "network.changed"
CLOUD_CHANGED = "cloud.changed"
STORE_CHANGED = "store.changed"
QUOTA_CHANGED = "quota.changed"
SECGROUP_CHANGED = "secgroup.changed"
READY_TIMEOUT = 10.0
# After an instance is torn down, look for blobs it was the last to use
# this much later (several going at once are looked at together).
BLOB_SWEEP_DELAY = 2.0


class Hub:
    def __init__(self) -> None:
        self.id = secrets.token_hex(4)
        self.keys = Keys(settings.CLOUD.etcd_prefix)
        self._etcd = store.new_etcd()
        self.mirror = Mirror(self._etcd, self.keys.root,
                             resync_interval=settings.CLOUD.resync_interval)
        self.store = StoreHealth(self._etcd, self.mirror, self._on_store_change)
        self._task: asyncio.Task[None] | None = None
        self._store_task: asyncio.Task[None] | None = None
        self._blob_sweep: asyncio.Task[None] | None = None
        self._blob_sweep_again = False
        # Records parsed from the mirror, each kept while its keys' revisions
        # hold: a list of 10,000 instances parses only what changed.
        self._instances: dict[str, tuple[tuple[int, int], InstanceRecord]] = {}
        self._interfaces: dict[str, tuple[int, InterfaceSpec]] = {}
        self._nodes: dict[str, tuple[int, NodeInfo | None]] = {}  # parsed once per change
        # Every instance record as of a mirror revision: pages asking again
        # before anything changed (50 browsers after one change) share it.
        self._all: tuple[int, list[InstanceRecord]] = (-1, [])
        # The uuids of the instances in the mirror, kept by _on_changes (None
        # until first needed: then read from the mirror once).
        self._uuids: set[str] | None = None
        # What each node's instances take (the scheduler's accounting), kept
        # by _on_changes from the first placement on: a placement then costs
        # a pass over the nodes, not over every instance.
        self._placed: PlacedInstances | None = None

    # --- groups ----------------------------------------------------------------------

    def namespace_group(self, namespace: str) -> str:
        return f"live.{self.id}.ns.{namespace}"

    @property
    def everything_group(self) -> str:
        return f"live.{self.id}.all"

    @property
    def images_group(self) -> str:
        """Every change to an artifact, or to a blob of one (a node's copy,
        say), named by the artifact (pages filter)."""
        return f"live.{self.id}.images"

    @property
    def cloud_group(self) -> str:
        """A node came, went or changed, or a floating address was taken or
        given back: what the dashboard shows beyond instances."""
        return f"live.{self.id}.cloud"

    def quota_group(self, namespace: str) -> str:
        """What a namespace holds of a kind of quota, or its limits, may have
        changed (pages showing its quotas count again from the mirror)."""
        return f"live.{self.id}.quota.{namespace}"

    @property
    def networks_group(self) -> str:
        """Every change to a network, its interfaces or the instances using
        them (pages filter by namespace and re-read)."""
        return f"live.{self.id}.networks"

    @property
    def store_group(self) -> str:
        """Every live page: etcd became unreachable, or reachable again."""
        return f"live.{self.id}.store"

    @property
    def secgroups_group(self) -> str:
        """Every change to a security group, an address set or an interface's
        filtering (pages filter by namespace and re-read)."""
        return f"live.{self.id}.secgroups"

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self.mirror.subscribe(self._on_changes)
            self._task = asyncio.create_task(self.mirror.run(), name="live-hub")
            self._store_task = asyncio.create_task(self.store.run(), name="live-hub-store")
        if not self.mirror.ready.is_set():
            # wait_for runs the wait as a task of its own: even when ready,
            # every caller would give the loop away (a placement then waited
            # its turn behind every other request).
            await asyncio.wait_for(self.mirror.ready.wait(), READY_TIMEOUT)

    async def stop(self) -> None:
        for task in (self._task, self._store_task, self._blob_sweep):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._store_task = self._blob_sweep = None
        await self._etcd.close()

    # --- reading ---------------------------------------------------------------------

    def offline_nodes(self) -> set[str]:
        """Registered nodes whose heartbeat lease has ended."""
        alive = {kv.key.rsplit("/", 1)[-1] for kv in self.mirror.items(self.keys.alive)}
        return {name for kv in self.mirror.items(self.keys.nodes)
                if (name := kv.key.rsplit("/", 1)[-1]) not in alive}

    def instance(self, uuid: str) -> InstanceRecord | None:
        spec_kv = self.mirror.get(self.keys.instance(uuid))
        if spec_kv is None:
            self._instances.pop(uuid, None)
            return None
        return self._record(uuid, spec_kv, self.offline_nodes())

    def _record(self, uuid: str, spec_kv: KeyValue, offline: set[str]) -> InstanceRecord:
        observed_kv = self.mirror.get(self.keys.observed_instance(uuid))
        stamp = (spec_kv.mod_revision, observed_kv.mod_revision if observed_kv else 0)
        cached = self._instances.get(uuid)
        if cached is not None and cached[0] == stamp:
            record = cached[1]
            if record.node_online == (record.spec.node not in offline):
                return record
        # New, changed, or its node came or went (its power shows unreachable).
        record = InstanceRecord.from_kvs(spec_kv, observed_kv, offline=offline)
        self._instances[uuid] = (stamp, record)
        return record

    def all_instances(self) -> list[InstanceRecord]:
        """Every instance record in the mirror, deleted ones included (a
        list shared by callers: don't change it)."""
        if self._all[0] == self.mirror.revision:
            return self._all[1]
        revision = self.mirror.revision
        if self._uuids is None:
            family = self.keys.instances
            self._uuids = {uuid for kv in self.mirror.items(family)
                           if (uuid := self.keys.uuid_of(kv.key, family))}
        records = []
        offline = self.offline_nodes()
        for uuid in list(self._uuids):
            spec_kv = self.mirror.get(self.keys.instance(uuid))
            if spec_kv is None:
                self._uuids.discard(uuid)
                self._instances.pop(uuid, None)
            else:
                records.append(self._record(uuid, spec_kv, offline))
        self._all = (revision, records)
        return records

    def placed(self) -> PlacedInstances:
        """What the instances holding resources take on each node."""
        if self._placed is None:
            self._placed = PlacedInstances()
            for record in self.all_instances():
                self._placed.update(record.uuid, record)
        return self._placed

    def nodes(self) -> list[NodeInfo]:
        """Every node's record, parsed once per change (a placement reads them all)."""
        found, kept = [], {}
        for kv in self.mirror.items(self.keys.nodes):
            cached = self._nodes.get(kv.key)
            # A record that can't be read (model.readable_node) is left out, not fatal.
            info = cached[1] if cached is not None and cached[0] == kv.mod_revision \
                else readable_node(kv.key, kv.value)
            kept[kv.key] = (kv.mod_revision, info)
            if info is not None:
                found.append(info)
        self._nodes = kept
        return found

    def interface(self, uuid: str) -> InterfaceSpec | None:
        kv = self.mirror.get(self.keys.interface(uuid))
        if kv is None:
            self._interfaces.pop(uuid, None)
            return None
        cached = self._interfaces.get(uuid)
        if cached is not None and cached[0] == kv.mod_revision:
            return cached[1]
        spec = InterfaceSpec.from_json(kv.value)
        self._interfaces[uuid] = (kv.mod_revision, spec)
        return spec

    def instances(self, namespaces: Namespaces, *, ordered: bool = True) -> list[InstanceRecord]:
        """The instances these namespaces hold (not deleted ones), oldest
        first unless ``ordered`` is False (a list that sorts them itself)."""
        found = (record for record in self.all_instances()
                 if record.spec.desired != "deleted"
                 and visible(record.spec.namespace, namespaces))
        return sorted_records(found) if ordered else list(found)

    # --- fan-out ---------------------------------------------------------------------

    async def _on_store_change(self, reachable: bool) -> None:
        await get_channel_layer().group_send(self.store_group, {"type": STORE_CHANGED})

    async def _on_changes(self, changes: list[Change]) -> None:
        layer = get_channel_layer()
        touched: dict[str, str] = {}
        images: set[str] = set()
        networks: set[str] = set()
        secgroups: set[str] = set()
        people: set[int] = set()
        cloud_changed = False
        floating = self.keys.addresses(FLOATING_POOL)
        quota_namespaces: set[str] = set()
        for change in changes:
            if (user_id := self.keys.user_of_access_change(change.key)) is not None:
                people.add(user_id)
                continue
            quota_namespaces.update(self._quota_namespaces(change))
            found = self.keys.classify(change.key)
            if found is None:
                cloud_changed |= change.key.startswith((floating, self.keys.maintenance_all))
                continue
            kind, uuid = found.kind, found.uuid
            if kind == ObjectKind.NODE:
                cloud_changed = True
                if found.observed:
                    # Its lease began or ended: its instances' power shows
                    # as reachable again, or not.
                    touched.update(self._instances_on(uuid))
            elif kind == ObjectKind.IMAGE:
                images.add(uuid)
            elif kind == ObjectKind.BLOB:
                holders = self.artifacts_holding(uuid)
                images.update(holders)
                # Its size counts against the quotas of the namespaces keeping it.
                quota_namespaces.update(artifact.namespace for holder in holders
                                        if (artifact := self.artifact(holder)) is not None)
                if found.observed and _reports_failure(change):
                    # A version that failed (or was no new version) beside
                    # one shown is dropped: its blob is used by nothing.
                    self._sweep_unused_blobs()
            elif kind == ObjectKind.NETWORK:
                networks.add(uuid)
            elif kind == ObjectKind.INTERFACE:
                # Its spec or what its hypervisor applied: its network's page,
                # its instance's row and page, and the pages of its groups show it.
                for nic in self._interfaces_of(change, uuid):
                    networks.add(nic.network_uuid)
                    secgroups.update(nic.security_groups)
                    touched[nic.instance_uuid] = nic.namespace
            elif kind in (ObjectKind.SECURITY_GROUP, ObjectKind.ADDRESS_SET):
                secgroups.add(uuid)
                # Whether its users' rules are applied changes with it.
                for kv in self.mirror.items(self.keys.interfaces):
                    nic = InterfaceSpec.from_json(kv.value)
                    if uuid in nic.security_groups:
                        touched[nic.instance_uuid] = nic.namespace
            elif kind == ObjectKind.INSTANCE:
                if self._uuids is not None and not found.observed:
                    if change.new is None:
                        self._uuids.discard(uuid)
                    else:
                        self._uuids.add(uuid)
                if self._placed is not None:
                    self._placed.update(uuid, self.instance(uuid))
                if _torn_down(change, self.keys.observed_instance(uuid)):
                    self._sweep_unused_blobs()
                # A removed spec is gone from the mirror; its old value still
                # says whose it was.
                spec_kv = self.mirror.get(self.keys.instance(uuid))
                if spec_kv is None and change.key == self.keys.instance(uuid):
                    spec_kv = change.old
                if spec_kv is not None:
                    spec = InstanceSpec.from_json(spec_kv.value)
                    touched[uuid] = spec.namespace
                    # Its interfaces' state, shown on their networks' pages, follows it.
                    networks.update(self._networks_of_instance(spec))
        # What someone may see changed, maybe in another portal process: this
        # process's live pages of theirs close and reconnect (their consoles
        # re-check through LocalSessions).
        for user_id in sorted(people):
            await layer.group_send(user_group(user_id), {"type": ACCESS_CHANGED})
        for uuid, namespace in touched.items():
            # The revision lets the pages that get it share one rendering
            # (portal.instances.consumers).
            message = {"type": INSTANCE_CHANGED, "uuid": uuid, "revision": self.mirror.revision}
            await layer.group_send(self.namespace_group(namespace), message)
            await layer.group_send(self.everything_group, message)
        if cloud_changed:
            await layer.group_send(self.cloud_group, {"type": CLOUD_CHANGED})
        for namespace in sorted(quota_namespaces | set(touched.values())):
            await layer.group_send(self.quota_group(namespace), {"type": QUOTA_CHANGED})
        for image_uuid in sorted(images):
            await layer.group_send(self.images_group, {"type": IMAGE_CHANGED, "uuid": image_uuid})
        for network_uuid in sorted(networks):
            await layer.group_send(self.networks_group,
                                   {"type": NETWORK_CHANGED, "uuid": network_uuid})
        for group_uuid in sorted(secgroups):
            await layer.group_send(self.secgroups_group,
                                   {"type": SECGROUP_CHANGED, "uuid": group_uuid})

    def _interfaces_of(self, change: Change, uuid: str) -> list[InterfaceSpec]:
        """The interface a changed key is about, as it is and as it was."""
        found = [InterfaceSpec.from_json(kv.value) for kv in (change.old, change.new)
                 if kv is not None and change.key == self.keys.interface(uuid)]
        current = self.mirror.get(self.keys.interface(uuid))
        if not found and current is not None:
            found.append(InterfaceSpec.from_json(current.value))
        return found

    def _quota_namespaces(self, change: Change) -> set[str]:
        """The namespaces whose quotas a change to their limits, a network or
        an artifact concerns (instances and interfaces are in ``touched``,
        blobs are looked at with their artifacts)."""
        keys = self.keys
        if (namespace := keys.uuid_of(change.key, keys.quotas)) is not None:
            return {namespace}
        if keys.uuid_of(change.key, keys.networks) or keys.uuid_of(change.key, keys.artifacts):
            return {json.loads(kv.value).get("namespace", "")
                    for kv in (change.old, change.new) if kv is not None} - {""}
        return set()

    def _sweep_unused_blobs(self) -> None:
        """An instance is gone, or a blob failed, and with it maybe the last
        use of a blob (Shaken Fist deletes a blob when its reference count
        falls to 0)."""
        if self._blob_sweep is not None and not self._blob_sweep.done():
            self._blob_sweep_again = True
            return
        self._blob_sweep = asyncio.get_running_loop().create_task(self._collect_blobs())

    async def _collect_blobs(self) -> None:
        self._blob_sweep_again = True
        while self._blob_sweep_again:
            self._blob_sweep_again = False
            await asyncio.sleep(BLOB_SWEEP_DELAY)
            try:
                await blobs.collect_garbage()
            except Exception:  # noqa: BLE001 - the janitor's sweep comes back to it
                log.exception("deleting unused blobs failed")

    def artifact(self, uuid: str) -> Artifact | None:
        kv = self.mirror.get(self.keys.artifact(uuid))
        return None if kv is None else Artifact.from_json(kv.value)

    def artifacts_holding(self, blob_uuid: str) -> set[str]:
        """The artifacts one of whose versions is this blob."""
        return {artifact.uuid for kv in self.mirror.items(self.keys.artifacts)
                if blob_uuid in (artifact := Artifact.from_json(kv.value)).versions.values()}

    def _instances_on(self, node: str) -> dict[str, str]:
        """uuid -> namespace of the active instances placed on ``node``."""
        found = {}
        for kv in self.mirror.items(self.keys.instances):
            spec = InstanceSpec.from_json(kv.value)
            if spec.node == node and spec.desired != "deleted":
                found[spec.uuid] = spec.namespace
        return found

    def _networks_of_instance(self, spec: InstanceSpec) -> set[str]:
        found = set()
        for uuid in spec.interfaces:
            kv = self.mirror.get(self.keys.interface(uuid))
            if kv is not None:
                found.add(InterfaceSpec.from_json(kv.value).network_uuid)
        return found


class PlacedInstances:
    """Each node's sums of what its instances take (those that hold
    resources: scheduler.holds_resources), kept one instance at a time."""

    def __init__(self) -> None:
        self._takes: dict[str, Takes] = {}
        self.nodes: dict[str, NodeUsage] = {}

    def update(self, uuid: str, record: InstanceRecord | None) -> None:
        """The instance as it is now (None: gone)."""
        if (before := self._takes.pop(uuid, None)) is not None:
            usage = self.nodes[before.node]
            usage.add(uuid, before, -1)
            if not usage.instances:
                del self.nodes[before.node]
        if record is None or not holds_resources(record.spec, record.observed):
            return
        spec = record.spec
        takes = Takes(spec.node, spec.cpus, spec.memory, spec.disk_total_gb,
                      frozenset(instance_tags(spec)))
        self._takes[uuid] = takes
        self.nodes.setdefault(spec.node, NodeUsage()).add(uuid, takes, 1)


class Takes(NamedTuple):
    """What one instance takes of its node, as the scheduler counts it."""

    node: str
    cpus: int
    memory_mib: int
    disk_gb: int
    tags: frozenset[str]  # for affinity (scheduler.affinity_score)


class NodeUsage:
    def __init__(self) -> None:
        self.cpus = self.memory_mib = self.disk_gb = 0
        self.instances: set[str] = set()
        self.tags: Counter[str] = Counter()  # instances on it per tag

    def add(self, uuid: str, takes: Takes, sign: int) -> None:
        self.cpus += sign * takes.cpus
        self.memory_mib += sign * takes.memory_mib
        self.disk_gb += sign * takes.disk_gb
        for tag in takes.tags:
            self.tags[tag] += sign
            if not self.tags[tag]:
                del self.tags[tag]
        if sign > 0:
            self.instances.add(uuid)
        else:
            self.instances.discard(uuid)


def _reports_failure(change: Change) -> bool:
    """Whether this change (to a node's copy of a blob) reports a failure."""
    return change.new is not None and BlobObserved.from_json(change.new.value).state == "error"


def _torn_down(change: Change, observed_key: str) -> bool:
    """Whether this change is an instance's node reporting it deleted."""
    if change.key != observed_key or change.new is None:
        return False
    now = InstanceObserved.from_json(change.new.value).state
    before = InstanceObserved.from_json(change.old.value).state if change.old else None
    return now == "deleted" and before != "deleted"


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


async def hub() -> Hub:
    """This process's hub (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None:
        current = _hubs[loop] = Hub()
    await current.start()
    return current


async def current_hub() -> Hub:
    """This process's hub once its mirror holds every change committed
    before the call, so a request that follows its own write (a create,
    then a list) sees it."""
    live = await hub()
    await live.mirror.wait_for_revision(await store.etcd().revision())
    return live


async def stop_hub() -> None:
    """Stop this loop's hub, if one was started (a test's loop ends with its test)."""
    current = _hubs.pop(asyncio.get_running_loop(), None)
    if current is not None:
        await current.stop()
