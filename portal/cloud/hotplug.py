"""NICs added to or removed from an existing instance (Shaken Fist's
``instance add-interface``; removal is sfcloud's own).

Adding reserves the address, MAC (and floating address) in the same etcd
transaction that records the interface and appends it to the instance's
desired record, as a create does: a hot plug that fails leaves nothing
behind. The instance's node then plugs the NIC in (live and in the domain's
definition) once the network node has its DHCP entry, so the guest's DHCP
request is answered.

Removing drops the interface from the instance's desired record; its node
unplugs it and only then gives its address and MAC back, as when an
instance is deleted, so no other guest gets an address still in use.
"""

from __future__ import annotations

from cloudstate import netvalidation, states
from cloudstate.etcd import Compare
from cloudstate.model import InterfaceSpec
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, instances, interfaces, quotas, store
from portal.cloud.changes import Later, given
from portal.cloud.errors import BadRequest, Conflict, NotFound, NotReady
from portal.cloud.instances import InstanceRecord

_ATTEMPTS = 8
KIND = ObjectKind.INSTANCE


def _pluggable(record: InstanceRecord) -> None:
    """Shaken Fist's rule: not a deleted instance, nor one in error (406)."""
    if record.state in (states.DELETING, states.DELETED, states.ERROR):
        raise NotReady(f"instance {record.spec.name} is {record.state}: invalid state for "
                       "hot plug")


async def attach(actor: Actor, record: InstanceRecord,
                 request: interfaces.NicRequest | Later[interfaces.NicRequest]) -> InterfaceSpec:
    """Give the instance one more NIC, as its create would have."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.ATTACH, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name) as entry:
        _pluggable(record)
        nic = given(request)
        added = await _attach(record, nic)
        entry.detail = f"interface {added.uuid} on network {added.network_uuid}"
    await changes.event(actor, KIND, record.uuid,
                        f"eth{added.order} added on network {added.network_uuid}"
                        + (f" with address {added.ipv4}" if added.ipv4 else ""),
                        operation=AuditAction.ATTACH, interface=added.uuid)
    await interfaces.record_on_network(actor, spec, added, "added",
                                       operation=AuditAction.ATTACH)
    return added


async def _attach(record: InstanceRecord, nic: interfaces.NicRequest) -> InterfaceSpec:
    etcd, keys = store.etcd(), store.keys()
    current = record
    for _ in range(_ATTEMPTS):
        spec = current.spec
        if len(spec.interfaces) >= netvalidation.MAX_INTERFACES:
            raise BadRequest(f"network: instance {spec.name} has {len(spec.interfaces)} "
                             f"interfaces, the most an instance may have")
        networks = await interfaces.resolve([nic], spec.namespace)
        existing = await interfaces.of_instance(spec)
        plan = await interfaces.plan(
            [nic], networks, instance_uuid=spec.uuid, namespace=spec.namespace, node=spec.node,
            first_order=netvalidation.next_interface_order(i.order for i in existing))
        added = plan.interfaces[0]
        grown = spec.replace(interfaces=[*spec.interfaces, added.uuid])
        # A floating address plugged later counts as one given at create.
        quota = await quotas.guard(spec.namespace,
                                   {"floating_addresses": 1} if nic.float else {})
        result = await etcd.txn(
            [Compare.unchanged_since(keys.instance(spec.uuid), current.revision),
             *plan.compares, *quota.compares],
            [*instances.put_desired(grown), *plan.puts, *quota.ops],
        )
        if result.succeeded:
            return added
        fresh = await instances.get(spec.uuid, None)
        _pluggable(fresh)
        current = fresh
    raise Conflict("the instance or its network kept changing; try again")


async def detach(actor: Actor, record: InstanceRecord, interface_uuid: str) -> InterfaceSpec:
    """Take a NIC out of the instance (sfcloud's own: Shaken Fist has no such call)."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.DETACH, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name,
                                detail=f"interface {interface_uuid}"):
        _pluggable(record)
        found = await interfaces.get(interface_uuid, frozenset({spec.namespace}))
        if found.spec.instance_uuid != record.uuid or found.uuid not in spec.interfaces:
            raise NotFound(f"instance {spec.name} has no interface {interface_uuid}")

        def change(current: InstanceRecord):  # type: ignore[no-untyped-def]
            _pluggable(current)
            if found.uuid not in current.spec.interfaces:
                raise NotFound(f"instance {spec.name} has no interface {interface_uuid}")
            return current.spec.replace(
                interfaces=[uuid for uuid in current.spec.interfaces if uuid != found.uuid])

        await instances.update(record, change)
    await changes.event(actor, KIND, record.uuid, f"eth{found.spec.order} removal requested",
                        operation=AuditAction.DETACH, interface=found.uuid)
    await interfaces.record_on_network(actor, spec, found.spec, "goes (removal requested)",
                                       operation=AuditAction.DETACH)
    return found.spec
