"""Instances: create, find, list and delete, shared by the API and the pages.

The portal only ever writes desired state; what an instance *is* comes from
the agent's observed record. Lookups take the set of namespaces the caller
may see, and anything outside it is simply not found (404, never 403), so
guessing a UUID tells an outsider nothing. Changes take the Actor asking
for them (portal.cloud.changes).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cloudstate import disklayout, states, validation
from cloudstate import metadata as metadata_rules
from cloudstate.etcd import Compare, Delete, KeyValue, Put
from cloudstate.model import Disk, DiskSource, InstanceObserved, InstanceSpec
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import SYSTEM_NAMESPACE, AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import (
    bases,
    catalogue,
    changes,
    interfaces,
    keypairs,
    nodes,
    ownership,
    quotas,
    refs,
    scheduler,
    store,
)
from portal.cloud.changes import Later, given
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound
from portal.cloud.refs import Namespaces, visible
from portal.metrics import PLACEMENT_SECONDS

MAX_USER_DATA_BYTES = 64 * 1024
MAX_SSH_KEY_BYTES = 16 * 1024
_PLACEMENT_ATTEMPTS = 32
_PLACEMENT_BACKOFF = 0.01  # s: the longest random wait after the first lost race
KIND = ObjectKind.INSTANCE
# Secure boot needs SMM, which QEMU emulates on q35 only (as Shaken Fist does).
SECURE_BOOT_MACHINE = "q35"


@dataclass(frozen=True)
class DiskRequest:
    size_gb: int
    base: str | None = None
    bus: str = "virtio"  # as asked for: a cdrom on virtio ends up on usb
    type: str = "disk"


@dataclass(frozen=True)
class InstanceRequest:
    name: str
    cpus: int
    memory: int
    disks: list[DiskRequest]
    ssh_key: str | None = None
    user_data: str | None = None
    # As given: checked by create() (cloudstate.metadata, validation.video).
    metadata: Any = None
    video: Any = None
    configdrive: str = "openstack-disk"
    placed_on: str | None = None
    keypair: str | None = None  # a keypair of the namespace, by name
    networks: list[interfaces.NicRequest] = field(default_factory=list)
    uefi: bool = False
    secure_boot: bool = False  # needs uefi
    nvram_template: str | None = None  # an image reference, used with uefi


@dataclass(frozen=True)
class InstanceRecord:
    kind: ClassVar[ObjectKind] = KIND
    spec: InstanceSpec
    observed: InstanceObserved | None
    revision: int = 0
    node_online: bool = True  # its node's lease is alive (as far as the reader knows)

    @classmethod
    def from_kvs(cls, spec_kv: KeyValue, observed_kv: KeyValue | None, *,
                 offline: set[str] | frozenset[str] = frozenset()) -> InstanceRecord:
        """The record from its desired and observed keys, as etcd or a mirror
        holds them (the revision is the desired record's); ``offline``: the
        nodes known to be offline."""
        spec = InstanceSpec.from_json(spec_kv.value)
        return cls(
            spec=spec,
            observed=InstanceObserved.from_json(observed_kv.value) if observed_kv else None,
            revision=spec_kv.mod_revision,
            node_online=spec.node not in offline,
        )

    @property
    def uuid(self) -> str:
        return self.spec.uuid

    @property
    def state(self) -> str:
        return states.instance_state(self.spec, self.observed)

    @property
    def power_state(self) -> str:
        return states.power_state(self.observed, node_online=self.node_online)

    @property
    def error(self) -> str | None:
        return self.observed.error if self.observed else None


# --- writes ----------------------------------------------------------------------------


async def create(actor: Actor, namespace: str,
                 request: InstanceRequest | Later[InstanceRequest]) -> InstanceRecord:
    """Place a new instance in ``namespace``, for an Actor who may operate there."""
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                object_name=request.name[:255],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        wanted = given(request)
        if wanted.placed_on is not None and not actor.can_operate(SYSTEM_NAMESPACE):
            # Choosing a node (and learning which exist) is the operators' call.
            raise Forbidden("placed_on: only the system namespace may choose the node")
        record = await _place(wanted, namespace)
        entry.object_id = record.uuid
    await changes.event(actor, KIND, record.uuid, "created", operation=AuditAction.CREATE,
                        node=record.spec.node)
    await interfaces.record_on_networks(actor, record.spec, "added")
    return record


@dataclass(frozen=True)
class _Sources:
    """What the instance starts from, each resolved to a blob
    (portal.cloud.bases): its disks' bases, then its NVRAM template."""

    disks: list[bases.Resolved]
    nvram_template: bases.Resolved | None = None

    @property
    def every(self) -> list[bases.Resolved]:
        return [*self.disks, *([self.nvram_template] if self.nvram_template else [])]


async def _resolve_sources(request: InstanceRequest, namespace: str) -> _Sources:
    if all(bases.is_blank(disk.base) for disk in request.disks) and \
            not (request.uefi and request.nvram_template):
        # Blank disks need no catalogue, which reads every instance (slow
        # with thousands).
        return _Sources(disks=[bases.Resolved(source=None) for _ in request.disks])
    found = await catalogue.load()
    resolved: list[bases.Resolved] = []
    for disk in request.disks:
        resolved.append(await bases.resolve(disk.base, namespace, found, resolved))
    template = None
    if request.uefi and request.nvram_template:
        try:
            template = await bases.resolve(request.nvram_template, namespace, found, resolved)
        except (BadRequest, NotFound):
            raise NotFound(f"nvram_template: there is no image {request.nvram_template!r} "
                           "to start the UEFI variables from") from None
    return _Sources(disks=resolved, nvram_template=template)


def _disks(request: InstanceRequest, places: list[disklayout.Placed],
           sources: _Sources) -> list[Disk]:
    return [
        Disk(device=place.device, size_gb=disk.size_gb, base=disk.base,
             source=resolved.source, bus=place.bus, type=place.type)
        for disk, place, resolved in zip(request.disks, places, sources.disks, strict=True)
    ]


async def _place(request: InstanceRequest, namespace: str) -> InstanceRecord:
    etcd, keys = store.etcd(), store.keys()
    # The same rules as PUT .../metadata/<key>, for the whole object at once.
    metadata = metadata_rules.validate_all(request.metadata, "instance")
    video = validation.video(request.video)
    # Shaken Fist's layout (cloudstate.disklayout): vda, the config drive, then the rest.
    places = disklayout.lay_out([(disk.bus, disk.type) for disk in request.disks],
                                config_drive=request.configdrive != "none")
    sources = await _resolve_sources(request, namespace)
    disks = _disks(request, places, sources)
    firmware = _firmware(request, sources)
    ssh_key, keypair_name = request.ssh_key, None
    if request.keypair:
        if ssh_key:
            raise BadRequest("ssh_key: give either ssh_key or keypair, not both")
        keypair = await keypairs.find(request.keypair, namespace)
        ssh_key, keypair_name = keypair.public_key, keypair.name
    # A blob lives on the node that made it. Its instances go there when it
    # has room, which saves a copy; elsewhere that node's agent copies it.
    holders = bases.holders(sources.every)
    demand = scheduler.Demand(
        cpus=request.cpus, memory_mib=request.memory,
        disk_gb=sum(d.size_gb for d in disks if d.type == "disk"),
        firmware=firmware.needs,
    )
    nic_networks = await interfaces.resolve(request.networks, namespace)
    interfaces.check_unique_addresses(request.networks, nic_networks)
    asked = quota_asked(request)
    # Names need not be unique, as in Shaken Fist: instances are told apart
    # by UUID, and a name that matches several is refused as a reference.
    lost: set[str] = set()
    lost_at = 0
    for attempt in range(_PLACEMENT_ATTEMPTS):
        # Counted again at every attempt: a create that lost a race to the
        # last unit is refused here on its next round.
        quota = await quotas.guard(namespace, asked)
        if attempt:
            # Another create may just have made the artifact of a URL this
            # one was about to fetch: start from what is there now.
            sources = await _resolve_sources(request, namespace)
            disks = _disks(request, places, sources)
            firmware = _firmware(request, sources)
        if lost_at:
            await scheduler.caught_up(lost_at)
        # The decision alone: what it waited for above is a lost race's cost.
        with PLACEMENT_SECONDS.time():
            loads = await scheduler.snapshot(keys)
            node = scheduler.choose(demand, loads, required=request.placed_on,
                                    preferred=holders, avoid=lost,
                                    affinity=scheduler.affinity_of(metadata))
        # Other creates of this process pass over the node until this one commits.
        with scheduler.placing(node.info.name):
            instance_uuid = str(uuidlib.uuid4())
            # Addresses, MACs and floating addresses, reserved in this same
            # transaction: a create that fails leaves none of them behind.
            nics = await interfaces.plan(request.networks, nic_networks,
                                         instance_uuid=instance_uuid, namespace=namespace,
                                         node=node.info.name)
            spec = InstanceSpec(
                uuid=instance_uuid,
                name=request.name,
                namespace=namespace,
                cpus=request.cpus,
                memory=request.memory,
                disks=disks,
                node=node.info.name,
                ssh_key=ssh_key,
                keypair=keypair_name,
                user_data=request.user_data,
                metadata=metadata,
                video=video,
                configdrive=request.configdrive,
                requested_placement=request.placed_on,
                interfaces=[nic.uuid for nic in nics.interfaces],
                uefi=request.uefi,
                secure_boot=request.secure_boot,
                nvram_template=firmware.nvram_template,
                # Secure boot's q35, else the machine the node gives its guests.
                machine_type=firmware.machine_type or node.info.machine,
            )
            placement_key = keys.placement(node.info.name)
            # The blobs it starts from, fenced; a new URL's fetch, asked of its node.
            storage = bases.change(sources.every, namespace, node.info.name)
            result = await etcd.txn(
                [Compare.unchanged_since(placement_key, node.placement_revision),
                 *nics.compares, *storage.compares, *quota.compares],
                [*put_desired(spec),
                 Put(placement_key, spec.uuid),
                 *nics.puts, *storage.ops, *quota.ops],
            )
        if result.succeeded:
            return InstanceRecord(spec=spec, observed=None, revision=result.revision)
        # Most likely another create took the same node first: try another
        # while one fits, and let concurrent losers spread out in time too.
        lost.add(node.info.name)
        lost_at = result.revision
        await asyncio.sleep(random.uniform(0, _PLACEMENT_BACKOFF * (attempt + 1)))
    raise Conflict("too many instances are being created at once; try again")


def quota_asked(request: InstanceRequest) -> dict[str, int]:
    """What an instance takes of its namespace's quotas (cloudstate.quotas
    counts the same from its record)."""
    asked = {"instances": 1, "vcpus": request.cpus, "memory_mib": request.memory,
             "disk_gb": sum(disk.size_gb for disk in request.disks)}
    floating = sum(1 for nic in request.networks if nic.float)
    return {**asked, "floating_addresses": floating} if floating else asked


@dataclass(frozen=True)
class _Firmware:
    needs: tuple[str, ...] = ()  # what the node must offer (NodeInfo.firmware)
    nvram_template: DiskSource | None = None
    machine_type: str | None = None


def _firmware(request: InstanceRequest, sources: _Sources) -> _Firmware:
    """What booting as asked needs: UEFI firmware (and secure boot's, which
    takes machine q35) on the node, and the NVRAM template's blob."""
    if not request.uefi:
        return _Firmware()
    template = sources.nvram_template.source if sources.nvram_template else None
    if request.secure_boot:
        return _Firmware(("uefi", "secure-boot"), template, SECURE_BOOT_MACHINE)
    return _Firmware(("uefi",), template)


async def delete(actor: Actor, record: InstanceRecord) -> InstanceRecord:
    """Ask for the instance to go. Deleting a deleted instance is not an error."""
    async with changes.changing(actor, AuditAction.DELETE, KIND,
                                namespace=record.spec.namespace, object_id=record.uuid,
                                object_name=record.spec.name):
        deleted, asked = await _mark_deleted(record)
    if asked:
        await changes.event(actor, KIND, record.uuid, "deletion requested",
                            operation=AuditAction.DELETE)
        await interfaces.record_on_networks(actor, record.spec, "goes (its instance is being "
                                                                "deleted)")
    return deleted


async def delete_all(actor: Actor, scope: Namespaces, *, confirm: bool) -> list[str]:
    """Delete every active instance of ``scope`` (named namespaces, never
    None); all or nothing as far as roles go: refused
    before anything is deleted if one of them may not be. Returns their UUIDs."""
    changes.may_delete_all(actor, KIND, scope, confirm=confirm)
    records = await list_instances(scope)
    for record in records:
        actor.require_operate(record.spec.namespace, f"instance {record.uuid}")
    for record in records:
        await delete(actor, record)
    return [record.uuid for record in records]


async def _mark_deleted(record: InstanceRecord) -> tuple[InstanceRecord, bool]:
    """(the record as it is now, whether this call asked for the delete)."""
    etcd, keys = store.etcd(), store.keys()
    current = record
    while current.spec.desired != "deleted":
        spec = current.spec.replace(desired="deleted", deleted_at=time.time())
        name_key = keys.instance_name(spec.namespace, spec.name)
        result = await etcd.txn(
            [Compare.unchanged_since(keys.instance(spec.uuid), current.revision)],
            [*put_desired(spec),
             # Instances made when names were unique each kept a name key.
             *([Delete(name_key)] if await _name_points_at(name_key, spec.uuid) else [])],
        )
        if result.succeeded:
            return InstanceRecord(spec=spec, observed=current.observed,
                                  revision=result.revision), True
        found = await _load(spec.uuid)
        if found is None:
            raise NotFound(f"instance {record.uuid} not found")
        current = found
    return current, False


async def update(record: InstanceRecord,
                 change: Callable[[InstanceRecord], InstanceSpec]) -> InstanceRecord:
    """Rewrite the desired record with ``change`` (see store.rewrite). The
    caller is a service that has checked the Actor's role."""
    return await store.rewrite(record, change, key=store.keys().instance, load=_load,
                               kind=KIND, copies=_copy_keys)


def _copy_keys(spec: InstanceSpec) -> list[str]:
    """Where its node's agent reads the desired record: a copy under the
    node's own prefix (nodeagent.scope), always written with it."""
    return [store.keys().node_instance(spec.node, spec.uuid)]


def put_desired(spec: InstanceSpec) -> list[Put]:
    """The writes of a desired record: every writer's transaction holds these."""
    value = spec.to_json()
    return [Put(store.keys().instance(spec.uuid), value),
            *(Put(key, value) for key in _copy_keys(spec))]


async def _name_points_at(name_key: str, uuid: str) -> bool:
    kv = await store.etcd().get(name_key)
    return kv is not None and kv.value.decode() == uuid


# --- reads -------------------------------------------------------------------------------


async def _load(uuid: str) -> InstanceRecord | None:
    etcd, keys = store.etcd(), store.keys()
    spec_kv, observed_kv, offline = await asyncio.gather(
        etcd.get(keys.instance(uuid)), etcd.get(keys.observed_instance(uuid)),
        nodes.offline_nodes(),
    )
    return None if spec_kv is None else InstanceRecord.from_kvs(spec_kv, observed_kv,
                                                                 offline=offline)



async def get(ref: str, namespaces: Namespaces) -> InstanceRecord:
    """Find by UUID (deleted instances included) or by name (active only)."""
    return await refs.find(ref, namespaces, kind="instance", load=_load, active=list_instances)


async def list_instances(
    namespaces: Namespaces, *, include_deleted: bool = False
) -> list[InstanceRecord]:
    # From the live hub's mirror, whose records stay parsed between calls
    # (10,000 instances read and parsed from etcd took seconds). The hub
    # builds on this module, hence the import here.
    from portal.live.hub import current_hub  # noqa: PLC0415

    live = await current_hub()
    return sorted_records(
        record for record in live.all_instances()
        if visible(record.spec.namespace, namespaces)
        and (include_deleted or record.spec.desired != "deleted")
    )


def sorted_records(records: Iterable[InstanceRecord]) -> list[InstanceRecord]:
    return sorted(records, key=lambda r: (r.spec.created_at, r.spec.uuid))


async def purge(record: InstanceRecord) -> bool:
    """Forget a deleted instance for good, once its node has torn it down."""
    if record.state != states.DELETED:
        return False
    keys = store.keys()
    return await store.forget(keys.instance(record.uuid), keys.observed_instance(record.uuid),
                              record.revision, *_copy_keys(record.spec),
                              keys.node_observed_instance(record.spec.node, record.uuid),
                              *(keys.deleted_interface(uuid) for uuid in record.spec.interfaces))


async def _owned_instances(namespace: str) -> list[str]:
    """Instances that still exist (or are still being torn down) in a namespace."""
    return [r.spec.name for r in await list_instances(frozenset({namespace}),
                                                        include_deleted=True)
            if r.state != states.DELETED]


ownership.register("instances", _owned_instances)
