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
import logging
import secrets
import weakref

from channels.layers import get_channel_layer
from django.conf import settings

from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.mirror import Change, Mirror
from cloudstate.model import InstanceObserved, InstanceSpec, InterfaceSpec
from portal.cloud.instances import InstanceRecord, Namespaces, sorted_records, visible

log = logging.getLogger(__name__)

INSTANCE_CHANGED = "instance.changed"
NODES_CHANGED = "nodes.changed"
IMAGE_CHANGED = "image.changed"
NETWORK_CHANGED = "network.changed"
READY_TIMEOUT = 10.0


class Hub:
    def __init__(self) -> None:
        self.id = secrets.token_hex(4)
        self.keys = Keys(settings.CLOUD.etcd_prefix)
        self._etcd = Etcd(settings.CLOUD.etcd_endpoints)
        self.mirror = Mirror(self._etcd, self.keys.root,
                             resync_interval=settings.CLOUD.resync_interval)
        self._task: asyncio.Task[None] | None = None
        self._janitor: asyncio.Task[None] | None = None

    # --- groups ----------------------------------------------------------------------

    def namespace_group(self, namespace: str) -> str:
        return f"live.{self.id}.ns.{namespace}"

    @property
    def everything_group(self) -> str:
        return f"live.{self.id}.all"

    @property
    def nodes_group(self) -> str:
        return f"live.{self.id}.nodes"

    @property
    def images_group(self) -> str:
        """Every change to an image or a node's copy of one (pages filter)."""
        return f"live.{self.id}.images"

    @property
    def networks_group(self) -> str:
        """Every change to a network, its interfaces or the instances using
        them (pages filter by namespace and re-read)."""
        return f"live.{self.id}.networks"

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            from portal.live import janitor  # it uses the hub's mirror

            self.mirror.subscribe(self._on_changes)
            self._task = asyncio.create_task(self.mirror.run(), name="live-hub")
            self._janitor = asyncio.create_task(janitor.run(self), name="janitor")
        await asyncio.wait_for(self.mirror.ready.wait(), READY_TIMEOUT)

    async def stop(self) -> None:
        for task in (self._task, self._janitor):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._janitor = None
        await self._etcd.close()

    # --- reading ---------------------------------------------------------------------

    def instance(self, uuid: str) -> InstanceRecord | None:
        spec_kv = self.mirror.get(self.keys.instance(uuid))
        if spec_kv is None:
            return None
        observed_kv = self.mirror.get(self.keys.observed_instance(uuid))
        return InstanceRecord(
            spec=InstanceSpec.from_json(spec_kv.value),
            observed=InstanceObserved.from_json(observed_kv.value) if observed_kv else None,
            revision=spec_kv.mod_revision,
        )

    def instances(self, namespaces: Namespaces) -> list[InstanceRecord]:
        records = []
        for kv in self.mirror.items(self.keys.instances):
            uuid = self.keys.uuid_of(kv.key, self.keys.instances)
            record = self.instance(uuid) if uuid else None
            if record and record.spec.desired != "deleted" \
                    and visible(record.spec.namespace, namespaces):
                records.append(record)
        return sorted_records(records)

    # --- fan-out ---------------------------------------------------------------------

    async def _on_changes(self, changes: list[Change]) -> None:
        layer = get_channel_layer()
        touched: dict[str, str] = {}
        images: set[str] = set()
        networks: set[str] = set()
        nodes_changed = False
        for change in changes:
            if image_uuid := self._image_of(change.key):
                images.add(image_uuid)
                continue
            if network_uuids := self._networks_of(change):
                networks.update(network_uuids)
                continue
            uuid = self.keys.uuid_of(change.key, self.keys.instances) or \
                self.keys.uuid_of(change.key, self.keys.observed_instances)
            if uuid:
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
            elif change.key.startswith((self.keys.nodes, self.keys.alive)):
                nodes_changed = True
        for uuid, namespace in touched.items():
            message = {"type": INSTANCE_CHANGED, "uuid": uuid}
            await layer.group_send(self.namespace_group(namespace), message)
            await layer.group_send(self.everything_group, message)
        if nodes_changed:
            await layer.group_send(self.nodes_group, {"type": NODES_CHANGED})
        for image_uuid in sorted(images):
            await layer.group_send(self.images_group, {"type": IMAGE_CHANGED, "uuid": image_uuid})
        for network_uuid in sorted(networks):
            await layer.group_send(self.networks_group,
                                   {"type": NETWORK_CHANGED, "uuid": network_uuid})

    def _networks_of(self, change: Change) -> set[str]:
        """The networks a change to a network or an interface concerns."""
        keys = self.keys
        if uuid := keys.uuid_of(change.key, keys.networks) or \
                keys.uuid_of(change.key, keys.observed_networks):
            return {uuid}
        if keys.uuid_of(change.key, keys.interfaces):
            return {InterfaceSpec.from_json(kv.value).network_uuid
                    for kv in (change.old, change.new) if kv is not None}
        return set()

    def _networks_of_instance(self, spec: InstanceSpec) -> set[str]:
        found = set()
        for uuid in spec.interfaces:
            kv = self.mirror.get(self.keys.interface(uuid))
            if kv is not None:
                found.add(InterfaceSpec.from_json(kv.value).network_uuid)
        return found

    def _image_of(self, key: str) -> str | None:
        if uuid := self.keys.uuid_of(key, self.keys.images):
            return uuid
        if key.startswith(self.keys.observed_images):
            node_and_uuid = key[len(self.keys.observed_images):]
            return node_and_uuid.rsplit("/", 1)[-1] if "/" in node_and_uuid else None
        return None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


async def hub() -> Hub:
    """This process's hub (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None:
        current = _hubs[loop] = Hub()
    await current.start()
    return current
