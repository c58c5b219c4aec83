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
from cloudstate.model import InstanceSpec, InterfaceSpec
from cloudstate.vocabulary import ObjectKind
from portal.cloud.instances import InstanceRecord, Namespaces, sorted_records, visible

log = logging.getLogger(__name__)

INSTANCE_CHANGED = "instance.changed"
IMAGE_CHANGED = "image.changed"
NETWORK_CHANGED = "network.changed"
SECGROUP_CHANGED = "secgroup.changed"
READY_TIMEOUT = 10.0


class Hub:
    def __init__(self) -> None:
        self.id = secrets.token_hex(4)
        self.keys = Keys(settings.CLOUD.etcd_prefix)
        self._etcd = Etcd(settings.CLOUD.etcd_endpoints)
        self.mirror = Mirror(self._etcd, self.keys.root,
                             resync_interval=settings.CLOUD.resync_interval)
        self._task: asyncio.Task[None] | None = None

    # --- groups ----------------------------------------------------------------------

    def namespace_group(self, namespace: str) -> str:
        return f"live.{self.id}.ns.{namespace}"

    @property
    def everything_group(self) -> str:
        return f"live.{self.id}.all"

    @property
    def images_group(self) -> str:
        """Every change to an image or a node's copy of one (pages filter)."""
        return f"live.{self.id}.images"

    @property
    def networks_group(self) -> str:
        """Every change to a network, its interfaces or the instances using
        them (pages filter by namespace and re-read)."""
        return f"live.{self.id}.networks"

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
        await asyncio.wait_for(self.mirror.ready.wait(), READY_TIMEOUT)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        await self._etcd.close()

    # --- reading ---------------------------------------------------------------------

    def instance(self, uuid: str) -> InstanceRecord | None:
        spec_kv = self.mirror.get(self.keys.instance(uuid))
        if spec_kv is None:
            return None
        return InstanceRecord.from_kvs(spec_kv,
                                       self.mirror.get(self.keys.observed_instance(uuid)))

    def all_instances(self) -> list[InstanceRecord]:
        """Every instance record in the mirror, deleted ones included."""
        records = []
        for kv in self.mirror.items(self.keys.instances):
            if found := self.keys.classify(kv.key):
                observed = self.mirror.get(self.keys.observed_instance(found.uuid))
                records.append(InstanceRecord.from_kvs(kv, observed))
        return records

    def instances(self, namespaces: Namespaces) -> list[InstanceRecord]:
        return sorted_records(
            record for record in self.all_instances()
            if record.spec.desired != "deleted" and visible(record.spec.namespace, namespaces))

    # --- fan-out ---------------------------------------------------------------------

    async def _on_changes(self, changes: list[Change]) -> None:
        layer = get_channel_layer()
        touched: dict[str, str] = {}
        images: set[str] = set()
        networks: set[str] = set()
        secgroups: set[str] = set()
        for change in changes:
            found = self.keys.classify(change.key)
            if found is None:
                continue
            kind, uuid = found
            if kind == ObjectKind.IMAGE:
                images.add(uuid)
            elif kind == ObjectKind.NETWORK:
                networks.add(uuid)
            elif kind == ObjectKind.INTERFACE:
                # Its spec or what its hypervisor applied: its network's page,
                # its instance's page and the pages of its groups show it.
                for iface in self._interfaces_of(change, uuid):
                    networks.add(iface.network_uuid)
                    secgroups.update(iface.security_groups)
                    self._touch_instance(iface.instance_uuid, touched)
            elif kind in (ObjectKind.SECURITY_GROUP, ObjectKind.ADDRESS_SET):
                secgroups.add(uuid)
                # Whether its users' rules are applied changes with it.
                for kv in self.mirror.items(self.keys.interfaces):
                    iface = InterfaceSpec.from_json(kv.value)
                    if uuid in iface.security_groups:
                        self._touch_instance(iface.instance_uuid, touched)
            elif kind == ObjectKind.INSTANCE:
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
        for uuid, namespace in touched.items():
            message = {"type": INSTANCE_CHANGED, "uuid": uuid}
            await layer.group_send(self.namespace_group(namespace), message)
            await layer.group_send(self.everything_group, message)
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

    def _touch_instance(self, uuid: str, touched: dict[str, str]) -> None:
        spec_kv = self.mirror.get(self.keys.instance(uuid))
        if spec_kv is not None:
            touched[uuid] = InstanceSpec.from_json(spec_kv.value).namespace

    def _networks_of_instance(self, spec: InstanceSpec) -> set[str]:
        found = set()
        for uuid in spec.interfaces:
            kv = self.mirror.get(self.keys.interface(uuid))
            if kv is not None:
                found.add(InterfaceSpec.from_json(kv.value).network_uuid)
        return found


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


async def hub() -> Hub:
    """This process's hub (one per event loop), started on first use."""
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None:
        current = _hubs[loop] = Hub()
    await current.start()
    return current
