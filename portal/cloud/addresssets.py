"""Address sets: named lists of CIDRs a security group rule may name as its
remote end (an office's ranges, a partner's hosts), as Neutron's address
groups and AWS's prefix lists are. Changing one changes every rule that
names it, on every node, as one set's elements.

How many a namespace may have is its address_sets quota; each holds at
most ``MAX_ADDRESS_SET_CIDRS`` CIDRs; names are unique within the namespace.
Creates share the namespace's security fence with security groups (see
portal.cloud.secgroups), so a delete can't miss a rule naming the set.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from cloudstate import secgroups as rules_of
from cloudstate.etcd import Compare, Delete
from cloudstate.model import AddressSet, SecurityGroup
from cloudstate.secgroups import MAX_ADDRESS_SET_CIDRS
from cloudstate.validation import shown
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import changes, ownership, quotas, refs, store
from portal.cloud.changes import Later, given
from portal.cloud.errors import Conflict, NotFound
from portal.cloud.refs import Namespaces, visible

KIND = ObjectKind.ADDRESS_SET
_ATTEMPTS = 16


@dataclass(frozen=True)
class AddressSetRequest:
    name: object
    cidrs: object = None
    description: object = ""


@dataclass(frozen=True)
class AddressSetRecord(refs.SpecRecord[AddressSet]):
    kind = KIND
    parse = AddressSet.from_json


def check_cidrs(value: Any) -> list[str]:
    return list(rules_of.cidrs(value if value is not None else [], "cidrs",
                               MAX_ADDRESS_SET_CIDRS))


# --- reads -------------------------------------------------------------------------------------


async def _load(uuid: str) -> AddressSetRecord | None:
    kv = await store.etcd().get(store.keys().address_set(uuid))
    return None if kv is None else AddressSetRecord.from_kv(kv)


async def list_sets(namespaces: Namespaces) -> list[AddressSetRecord]:
    kvs, _ = await store.etcd().get_prefix(store.keys().address_sets)
    found = [AddressSetRecord.from_kv(kv) for kv in kvs]
    return sorted((r for r in found if visible(r.spec.namespace, namespaces)),
                  key=lambda r: (r.spec.namespace, r.spec.name))


async def get(ref: str, namespaces: Namespaces) -> AddressSetRecord:
    return await refs.find(ref, namespaces, kind="address set", load=_load, active=list_sets)


async def find_in(ref: str, namespace: str, field: str) -> str:
    """The UUID of the namespace's address set ``ref`` (a name or UUID),
    for a rule; a 404 naming the field if there is none."""
    try:
        return (await get(ref, frozenset({namespace}))).uuid
    except NotFound:
        raise NotFound(f"{field}: no address set {shown(ref)} in namespace {namespace}") \
            from None


async def _naming_groups(record: AddressSetRecord) -> list[str]:
    kvs, _ = await store.etcd().get_prefix(store.keys().security_groups)
    groups = [SecurityGroup.from_json(kv.value) for kv in kvs]
    return sorted(g.name for g in groups
                  if any(r.remote_address_set == record.uuid for r in g.rules))


# --- writes ------------------------------------------------------------------------------------


async def create(actor: Actor, namespace: str,
                 request: AddressSetRequest | Later[AddressSetRequest]) -> AddressSetRecord:
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                object_name=str(request.name or "")[:255],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        wanted = given(request)
        spec = AddressSet(uuid=str(uuidlib.uuid4()),
                          name=rules_of.name(wanted.name, "address set"),
                          namespace=namespace, cidrs=check_cidrs(wanted.cidrs),
                          description=rules_of.description(wanted.description))
        await _insert(spec)
        entry.object_id = spec.uuid
    await changes.event(actor, KIND, spec.uuid, "created", cidrs=spec.cidrs)
    return (await _load(spec.uuid)) or AddressSetRecord(spec=spec)


async def _insert(spec: AddressSet) -> None:
    """Write a new set, its name and the namespace's fence, within the
    namespace's address_sets quota."""
    keys = store.keys()

    async def guard() -> store.Guarded:
        return await quotas.guard(spec.namespace, {"address_sets": 1})

    await store.insert_named(
        key=keys.address_set(spec.uuid), value=spec.to_json(),
        name_key=keys.address_set_name(spec.namespace, spec.name), uuid=spec.uuid,
        fence_key=keys.security_fence(spec.namespace),
        taken=f"an address set named {shown(spec.name)} already exists in namespace "
              f"{shown(spec.namespace)}",
        guard=guard)


async def set_cidrs(actor: Actor, record: AddressSetRecord,
                    cidrs: object | Later[object]) -> AddressSetRecord:
    """Replace the set's CIDRs: every rule naming it follows at once."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.UPDATE, KIND, namespace=spec.namespace,
                                object_id=spec.uuid, object_name=spec.name) as entry:
        wanted = check_cidrs(given(cidrs))
        updated = await store.rewrite(
            record, lambda current: current.spec.replace(
                cidrs=wanted, generation=current.spec.generation + 1),
            key=store.keys().address_set, load=_load, kind="address set")
        entry.detail = ", ".join(wanted)[:2000]
    await changes.event(actor, KIND, spec.uuid, f"now {len(wanted)} CIDR"
                        f"{'s' if len(wanted) != 1 else ''}", cidrs=wanted)
    return updated


async def delete(actor: Actor, record: AddressSetRecord) -> None:
    spec = record.spec
    async with changes.changing(actor, AuditAction.DELETE, KIND, namespace=spec.namespace,
                                object_id=spec.uuid, object_name=spec.name):
        etcd, keys = store.etcd(), store.keys()
        fence_key = keys.security_fence(spec.namespace)
        for _ in range(_ATTEMPTS):
            fence = await etcd.get(fence_key)
            naming = await _naming_groups(record)
            if naming:
                raise Conflict(f"address set {spec.name} is named by rules of group"
                               f"{'s' if len(naming) > 1 else ''} {', '.join(naming)}: "
                               "remove those rules first")
            result = await etcd.txn(
                [Compare.unchanged_since(fence_key, fence.mod_revision if fence else 0)],
                [Delete(keys.address_set(spec.uuid)),
                 Delete(keys.address_set_name(spec.namespace, spec.name))])
            if result.succeeded:
                break
        else:
            raise Conflict("the namespace's security groups kept changing; try again")
    await changes.event(actor, KIND, spec.uuid, "deleted")


async def _owned_sets(namespace: str) -> list[str]:
    return [r.spec.name for r in await list_sets(frozenset({namespace}))]


ownership.register("address sets", _owned_sets)
