"""Instances: create, find, list and delete, shared by the API and the pages.

The portal only ever writes desired state; what an instance *is* comes from
the agent's observed record. Lookups take the set of namespaces the caller
may see, and anything outside it is simply not found (404, never 403), so
guessing a UUID tells an outsider nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cloudstate import sshkeys, states, validation
from cloudstate.etcd import Compare, Delete, Put
from cloudstate.model import Disk, InstanceObserved, InstanceSpec, PowerIntent
from portal.cloud import images, interfaces, keypairs, ownership, refs, scheduler, store
from portal.cloud.errors import BadRequest, Conflict, NotFound
from portal.cloud.refs import Namespaces, visible
from portal.events import log as eventlog

MAX_USER_DATA_BYTES = 64 * 1024
MAX_SSH_KEY_BYTES = 16 * 1024
_PLACEMENT_ATTEMPTS = 8


@dataclass(frozen=True)
class DiskRequest:
    size_gb: int
    base: str | None = None
    bus: str = "virtio"
    type: str = "disk"


@dataclass(frozen=True)
class InstanceRequest:
    name: str
    cpus: int
    memory: int
    disks: list[DiskRequest]
    namespace: str
    ssh_key: str | None = None
    user_data: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=lambda: {"model": "cirrus", "memory": 16384})
    configdrive: str = "openstack-disk"
    placed_on: str | None = None
    keypair: str | None = None  # a keypair of the namespace, by name
    actor: str | None = None  # who asked, for the event log
    networks: list[interfaces.NicRequest] = field(default_factory=list)


@dataclass(frozen=True)
class InstanceRecord:
    spec: InstanceSpec
    observed: InstanceObserved | None
    revision: int = 0

    @property
    def uuid(self) -> str:
        return self.spec.uuid

    @property
    def state(self) -> str:
        return states.instance_state(self.spec, self.observed)

    @property
    def power_state(self) -> str:
        return states.power_state(self.observed)

    @property
    def error(self) -> str | None:
        return self.observed.error if self.observed else None


# --- validation --------------------------------------------------------------------


def _disk_device(index: int) -> str:
    # Shaken Fist's layout: the root disk is vda, the config drive vdb, the
    # rest follow from vdc.
    return "vda" if index == 0 else "vd" + chr(ord("a") + index + 1)


def validate_user_data(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise validation.ValidationError("user_data", "must be base64 text")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise validation.ValidationError("user_data", f"is not valid base64 ({exc})") from exc
    if len(decoded) > MAX_USER_DATA_BYTES:
        raise validation.ValidationError(
            "user_data", f"is {len(decoded)} bytes; the limit is {MAX_USER_DATA_BYTES}"
        )
    return value


def validate_ssh_key(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > MAX_SSH_KEY_BYTES:
        raise validation.ValidationError("ssh_key", "must be an ssh public key")
    try:
        return sshkeys.parse(value).line
    except sshkeys.BadKey as exc:
        raise validation.ValidationError("ssh_key", str(exc)) from exc


def parse_disks(raw: Any) -> list[DiskRequest]:
    if not isinstance(raw, list) or not raw:
        raise validation.ValidationError("disk", "at least one disk is required")
    if len(raw) > validation.MAX_DISKS:
        raise validation.ValidationError("disk", f"at most {validation.MAX_DISKS} disks")
    disks = []
    for index, item in enumerate(raw):
        field_name = f"disk[{index}]"
        if not isinstance(item, dict):
            raise validation.ValidationError(field_name, "must be an object")
        kind = item.get("type") or "disk"
        if kind not in ("disk", "cdrom"):
            raise validation.ValidationError(f"{field_name}.type", "must be disk or cdrom")
        bus = item.get("bus") or "virtio"
        if kind == "disk" and bus != "virtio":
            raise validation.ValidationError(f"{field_name}.bus", "only virtio disks are offered")
        base = item.get("base")
        if base is not None and not isinstance(base, str):
            raise validation.ValidationError(f"{field_name}.base", "must be a string")
        if kind == "cdrom" and not base:
            raise validation.ValidationError(f"{field_name}.base", "a cdrom needs an image")
        size = item.get("size")
        size_gb = 1 if size is None and kind == "cdrom" else validation.disk_gb(
            size, f"{field_name}.size"
        )
        disks.append(DiskRequest(size_gb=size_gb, base=base or None, bus=bus, type=kind))
    return disks


def parse_request(body: dict[str, Any], namespace: str) -> InstanceRequest:
    """A create request as Shaken Fist's client sends it (unknown keys ignored)."""
    configdrive = body.get("configdrive") or "openstack-disk"
    if configdrive not in ("openstack-disk", "none"):
        raise validation.ValidationError("configdrive", "must be openstack-disk or none")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise validation.ValidationError("metadata", "must be an object")
    video = body.get("video") or {"model": "cirrus", "memory": 16384}
    if not isinstance(video, dict):
        raise validation.ValidationError("video", "must be an object")
    placed_on = body.get("placed_on")
    if placed_on is not None and not isinstance(placed_on, str):
        raise validation.ValidationError("placed_on", "must be a node name")
    keypair = body.get("keypair") or None
    if keypair is not None and not isinstance(keypair, str):
        raise validation.ValidationError("keypair", "must be the name of a keypair")
    return InstanceRequest(
        name=validation.hostname(body.get("name")),
        cpus=validation.cpus(body.get("cpus")),
        memory=validation.memory_mib(body.get("memory")),
        disks=parse_disks(body.get("disk")),
        namespace=namespace,
        ssh_key=validate_ssh_key(body.get("ssh_key")),
        user_data=validate_user_data(body.get("user_data")),
        metadata=metadata,
        video=video,
        configdrive=configdrive,
        placed_on=placed_on,
        keypair=keypair,
        networks=interfaces.parse_nics(body.get("network")),
    )


# --- writes ----------------------------------------------------------------------------


async def create(request: InstanceRequest) -> InstanceRecord:
    etcd, keys = store.etcd(), store.keys()
    disks = [
        Disk(
            device=_disk_device(index) if disk.type == "disk" else f"hd{chr(ord('c') + index)}",
            size_gb=disk.size_gb,
            base=disk.base,
            source=await images.resolve(disk.base, request.namespace),
            bus=disk.bus if disk.type == "disk" else "ide",
            type=disk.type,
        )
        for index, disk in enumerate(request.disks)
    ]
    ssh_key, keypair_name = request.ssh_key, None
    if request.keypair:
        if ssh_key:
            raise BadRequest("ssh_key: give either ssh_key or keypair, not both")
        keypair = await keypairs.find(request.keypair, request.namespace)
        ssh_key, keypair_name = keypair.public_key, keypair.name
    # A snapshot lives on the node that took it. Its instances go there when
    # it has room, which saves a copy; elsewhere that node's agent copies it.
    holders = await images.nodes_holding(disks)
    demand = scheduler.Demand(
        cpus=request.cpus, memory_mib=request.memory,
        disk_gb=sum(d.size_gb for d in disks if d.type == "disk"),
    )
    name_key = keys.instance_name(request.namespace, request.name)
    nic_networks = await interfaces.resolve(request.networks, request.namespace)
    interfaces.check_unique_addresses(request.networks, nic_networks)
    for _ in range(_PLACEMENT_ATTEMPTS):
        if await etcd.get(name_key) is not None:
            raise Conflict(
                f"an instance named {request.name!r} already exists in namespace "
                f"{request.namespace!r}"
            )
        loads = await scheduler.snapshot(etcd, keys)
        node = scheduler.choose(demand, loads, required=request.placed_on, preferred=holders)
        instance_uuid = str(uuidlib.uuid4())
        # Addresses, MACs and floating addresses, reserved in this same
        # transaction: a create that fails leaves none of them behind.
        nics = await interfaces.plan(request.networks, nic_networks,
                                     instance_uuid=instance_uuid, namespace=request.namespace)
        spec = InstanceSpec(
            uuid=instance_uuid,
            name=request.name,
            namespace=request.namespace,
            cpus=request.cpus,
            memory=request.memory,
            disks=disks,
            node=node.info.name,
            ssh_key=ssh_key,
            keypair=keypair_name,
            user_data=request.user_data,
            metadata=request.metadata,
            video=request.video,
            configdrive=request.configdrive,
            requested_placement=request.placed_on,
            interfaces=[nic.uuid for nic in nics.interfaces],
        )
        placement_key = keys.placement(node.info.name)
        result = await etcd.txn(
            [Compare.absent(name_key),
             Compare.unchanged_since(placement_key, node.placement_revision),
             *nics.compares],
            [Put(keys.instance(spec.uuid), spec.to_json()),
             Put(name_key, spec.uuid),
             Put(placement_key, spec.uuid),
             *nics.puts],
        )
        if result.succeeded:
            await eventlog.record("instance", spec.uuid, _by("created", request.actor),
                                  extra={"node": spec.node, "actor": request.actor})
            return InstanceRecord(spec=spec, observed=None, revision=result.revision)
    raise Conflict("too many instances are being created at once; try again")


def _by(what: str, actor: str | None) -> str:
    return f"{what} by {actor}" if actor else what


async def delete(record: InstanceRecord, actor: str | None = None) -> InstanceRecord:
    """Ask for the instance to go. Deleting a deleted instance is not an error."""
    etcd, keys = store.etcd(), store.keys()
    current = record
    while current.spec.desired != "deleted":
        spec = current.spec.replace(desired="deleted", deleted_at=time.time())
        name_key = keys.instance_name(spec.namespace, spec.name)
        result = await etcd.txn(
            [Compare.unchanged_since(keys.instance(spec.uuid), current.revision)],
            [Put(keys.instance(spec.uuid), spec.to_json()),
             # Free the name at once, so it can be used again.
             *([Delete(name_key)] if await _name_points_at(name_key, spec.uuid) else [])],
        )
        if result.succeeded:
            await eventlog.record("instance", spec.uuid, _by("deletion requested", actor),
                                  extra={"actor": actor})
            return InstanceRecord(spec=spec, observed=current.observed, revision=result.revision)
        current = await _load(spec.uuid)
        if current is None:
            raise NotFound(f"instance {record.uuid} not found")
    return current


async def set_power(record: InstanceRecord, action: str) -> InstanceRecord:
    """Record a new power intent; the agent applies each generation once."""
    etcd, keys = store.etcd(), store.keys()
    spec = record.spec.replace(
        power=PowerIntent(generation=record.spec.power.generation + 1, action=action)
    )
    result = await etcd.txn(
        [Compare.unchanged_since(keys.instance(spec.uuid), record.revision)],
        [Put(keys.instance(spec.uuid), spec.to_json())],
    )
    if not result.succeeded:
        raise Conflict("the instance changed while the action was being recorded; try again")
    return InstanceRecord(spec=spec, observed=record.observed, revision=result.revision)


async def update(record: InstanceRecord,
                 change: Callable[[InstanceRecord], InstanceSpec]) -> InstanceRecord:
    """Rewrite the desired record with ``change``, which sees the latest
    record and may raise to refuse; retried when another writer got there
    first, so no change is lost."""
    etcd, keys = store.etcd(), store.keys()
    current = record
    for _ in range(_PLACEMENT_ATTEMPTS):
        spec = change(current)
        result = await etcd.txn(
            [Compare.unchanged_since(keys.instance(spec.uuid), current.revision)],
            [Put(keys.instance(spec.uuid), spec.to_json())],
        )
        if result.succeeded:
            return InstanceRecord(spec=spec, observed=current.observed, revision=result.revision)
        fresh = await _load(record.uuid)
        if fresh is None:
            raise NotFound(f"instance {record.uuid} not found")
        current = fresh
    raise Conflict("the instance is changing too often right now; try again")


async def _name_points_at(name_key: str, uuid: str) -> bool:
    kv = await store.etcd().get(name_key)
    return kv is not None and kv.value.decode() == uuid


# --- reads -------------------------------------------------------------------------------



async def _load(uuid: str) -> InstanceRecord | None:
    etcd, keys = store.etcd(), store.keys()
    spec_kv, observed_kv = await asyncio.gather(
        etcd.get(keys.instance(uuid)), etcd.get(keys.observed_instance(uuid))
    )
    if spec_kv is None:
        return None
    return InstanceRecord(
        spec=InstanceSpec.from_json(spec_kv.value),
        observed=InstanceObserved.from_json(observed_kv.value) if observed_kv else None,
        revision=spec_kv.mod_revision,
    )



async def get(ref: str, namespaces: Namespaces) -> InstanceRecord:
    """Find by UUID (deleted instances included) or by name (active only)."""
    return await refs.find(ref, namespaces, kind="instance", load=_load, active=list_instances)


async def list_instances(
    namespaces: Namespaces, *, include_deleted: bool = False
) -> list[InstanceRecord]:
    etcd, keys = store.etcd(), store.keys()
    (spec_kvs, _), (observed_kvs, _) = await asyncio.gather(
        etcd.get_prefix(keys.instances), etcd.get_prefix(keys.observed_instances)
    )
    observed = {
        kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value) for kv in observed_kvs
    }
    return sorted_records(
        InstanceRecord(spec=spec, observed=observed.get(spec.uuid), revision=kv.mod_revision)
        for kv in spec_kvs
        if visible((spec := InstanceSpec.from_json(kv.value)).namespace, namespaces)
        and (include_deleted or spec.desired != "deleted")
    )


def sorted_records(records: Iterable[InstanceRecord]) -> list[InstanceRecord]:
    return sorted(records, key=lambda r: (r.spec.created_at, r.spec.uuid))


async def purge(record: InstanceRecord) -> bool:
    """Forget a deleted instance for good, once its node has torn it down."""
    if record.state != states.DELETED:
        return False
    keys = store.keys()
    return await store.forget(keys.instance(record.uuid), keys.observed_instance(record.uuid),
                              record.revision)


async def _owned_instances(namespace: str) -> list[str]:
    """Instances that still exist (or are still being torn down) in a namespace."""
    return [r.spec.name for r in await list_instances(frozenset({namespace}),
                                                        include_deleted=True)
            if r.state != states.DELETED]


ownership.register("instances", _owned_instances)
