"""Networks: create, find, list, delete, metadata; shared by the API and the pages.

The portal reserves what must be unique (the VXLAN id, the name, the NAT
address from the floating pool) in the same etcd transaction that writes the
network, so a failed create leaves nothing behind. The network node builds
it and reports; a deleted network's VXLAN id and addresses are released by
the network node once it has torn everything down. Changes take the Actor
asking for them (portal.cloud.changes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings

from cloudstate import ipam, netvalidation, states, validation
from cloudstate.etcd import Compare, Delete, KeyValue, Put
from cloudstate.keys import FLOATING_POOL
from cloudstate.model import (
    AddressReservation,
    InstanceSpec,
    InterfaceSpec,
    NetworkObserved,
    NetworkSpec,
)
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import changes, ownership, quotas, refs, store
from portal.cloud.changes import Later, given
from portal.cloud.errors import BadRequest, Conflict, InsufficientResources, NotFound
from portal.cloud.refs import Namespaces, visible

FLOATING_REF = "floating"
_CREATE_ATTEMPTS = 16
KIND = ObjectKind.NETWORK


@dataclass(frozen=True)
class NetworkRequest:
    """What a create asks for, as given: the service checks the name and
    the netblock, whichever door it came through."""

    name: object
    netblock: object
    provide_dhcp: bool = True
    provide_nat: bool = True
    provide_dns: bool = False


@dataclass(frozen=True)
class NetworkRecord:
    kind: ClassVar[ObjectKind] = KIND
    spec: NetworkSpec
    observed: NetworkObserved | None
    interfaces: list[InterfaceSpec] = field(default_factory=list)
    revision: int = 0

    @classmethod
    def from_kvs(cls, spec_kv: KeyValue, observed_kv: KeyValue | None,
                 interfaces: Iterable[InterfaceSpec] = ()) -> NetworkRecord:
        """The record from its desired and observed keys, as etcd or a mirror
        holds them (the revision is the desired record's)."""
        return cls(
            spec=NetworkSpec.from_json(spec_kv.value),
            observed=NetworkObserved.from_json(observed_kv.value) if observed_kv else None,
            interfaces=sorted(interfaces, key=lambda i: (i.created_at, i.instance_uuid, i.order)),
            revision=spec_kv.mod_revision,
        )

    @property
    def uuid(self) -> str:
        return self.spec.uuid

    @property
    def state(self) -> str:
        return states.network_state(self.spec, self.observed, bool(self.interfaces))

    @property
    def error(self) -> str | None:
        return self.observed.error if self.observed else None


# --- the floating pool --------------------------------------------------------------------


def floating_pool() -> ipam.Pool | None:
    network = netvalidation.floating_network(settings.CLOUD.floating_network)
    if network is None:
        return None
    return ipam.Pool.floating(
        network, netvalidation.floating_router(network, settings.CLOUD.floating_router)
    )


def require_floating_pool() -> ipam.Pool:
    pool = floating_pool()
    if pool is None:
        raise InsufficientResources(
            "there are no floating addresses: this cloud has no floating network "
            "(SFCLOUD_FLOATING_NETWORK is not set)"
        )
    return pool


# --- writes -------------------------------------------------------------------------------


def _checked(request: NetworkRequest) -> NetworkRequest:
    """The request with its name and netblock checked (and the netblock in
    its canonical form)."""
    name = netvalidation.network_name(request.name)
    network = netvalidation.netblock(request.netblock)
    pool = floating_pool()
    if pool is not None and network.overlaps(pool.network):
        raise validation.ValidationError(
            "netblock", f"{network} overlaps the cloud's floating network {pool.network}"
        )
    return dataclasses.replace(request, name=name, netblock=str(network))


async def create(actor: Actor, namespace: str,
                 request: NetworkRequest | Later[NetworkRequest]) -> NetworkRecord:
    """Make a network in ``namespace``, for an Actor who may operate there."""
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                object_name=str(request.name or "")[:255],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        wanted = given(request)
        record = await _build(_checked(wanted), namespace)
        entry.object_id = record.uuid
    spec = record.spec
    await changes.event(actor, KIND, spec.uuid, "created", operation=AuditAction.CREATE,
                        netblock=spec.netblock,
                        vxlan_id=spec.vxid, floating_gateway=spec.floating_gateway)
    return record


async def _build(request: NetworkRequest, namespace: str) -> NetworkRecord:
    etcd, keys = store.etcd(), store.keys()
    name_key = keys.network_name(namespace, request.name)
    pool = floating_pool() if request.provide_nat else None
    network_uuid = str(uuidlib.uuid4())
    for _ in range(_CREATE_ATTEMPTS):
        if await etcd.get(name_key) is not None:
            raise Conflict(
                f"a network named {request.name} already exists in namespace "
                f"{namespace}"
            )
        quota = await quotas.guard(namespace, {"networks": 1})
        vxid = ipam.random_vxid()
        compares, ops = [Compare.absent(name_key), *quota.compares], [*quota.ops]
        compare, put = ipam.claim_vxid(keys, vxid, network_uuid)
        compares.append(compare)
        ops.append(put)
        gateway = None
        if pool is not None:
            taken = await ipam.taken(etcd, keys, FLOATING_POOL)
            try:
                gateway = pool.choose(taken)[0]
            except ipam.PoolExhausted as exc:
                raise InsufficientResources(
                    f"no floating address is left for the network's NAT: {exc}"
                ) from exc
            compare, put = ipam.claim_address(keys, FLOATING_POOL, AddressReservation(
                address=gateway, type="gateway", user=["network", network_uuid],
                network_uuid=network_uuid, comment=f"NAT for network {request.name}",
            ))
            compares.append(compare)
            ops.append(put)
        spec = NetworkSpec(
            uuid=network_uuid,
            name=request.name,
            namespace=namespace,
            netblock=request.netblock,
            vxid=vxid,
            provide_dhcp=request.provide_dhcp,
            provide_nat=request.provide_nat,
            provide_dns=request.provide_dns,
            floating_gateway=gateway,
            mtu=settings.CLOUD.network_mtu,
        )
        result = await etcd.txn(
            compares, [Put(keys.network(spec.uuid), spec.to_json()), Put(name_key, spec.uuid), *ops]
        )
        if result.succeeded:
            return NetworkRecord(spec=spec, observed=None, revision=result.revision)
    raise Conflict("too many networks are being created at once; try again")


async def delete(actor: Actor, record: NetworkRecord) -> NetworkRecord:
    """Ask for the network to go, once nothing active uses it.

    Interfaces of instances that are themselves being deleted don't block:
    the network waits for them ("delete-wait") and goes when they are gone.
    Interfaces of live instances do: the caller gets the list.
    """
    async with changes.changing(actor, AuditAction.DELETE, KIND,
                                namespace=record.spec.namespace, object_id=record.uuid,
                                object_name=record.spec.name):
        deleted, asked = await _mark_deleted(record)
    if asked:
        waiting = " (it waits for its instances being deleted)" if deleted.interfaces else ""
        await changes.event(actor, KIND, record.uuid, "deletion asked for" + waiting,
                            operation=AuditAction.DELETE)
    return deleted


async def delete_all(actor: Actor, scope: Namespaces, *, confirm: bool) -> list[str]:
    """Delete every network of ``scope`` (named namespaces) that nothing
    active uses; networks still used by instances being deleted wait for them
    (delete-wait). Refused before anything is deleted if the Actor may not
    delete one of them; the ones still in use are named in a 409 at the end."""
    changes.may_delete_all(actor, KIND, scope, confirm=confirm)
    records = [r for r in await list_networks(scope) if r.spec.desired != "deleted"]
    for record in records:
        actor.require_operate(record.spec.namespace, f"network {record.uuid}")
    deleted, unable = [], []
    for record in records:
        try:
            await delete(actor, record)
        except Conflict as exc:
            unable.append(exc.message)
        else:
            deleted.append(record.uuid)
    if unable:
        done = f"deleted {len(deleted)} network{'s' if len(deleted) != 1 else ''}; " \
            if deleted else ""
        raise Conflict(done + "; ".join(unable))
    return deleted


async def _mark_deleted(record: NetworkRecord) -> tuple[NetworkRecord, bool]:
    """(the record as it is now, whether this call asked for the delete)."""
    etcd, keys = store.etcd(), store.keys()
    current = record
    for _ in range(_CREATE_ATTEMPTS):
        if current.spec.desired == "deleted":
            return current, False
        fence = await etcd.get(keys.network_fence(current.uuid))
        interfaces = await interfaces_on(current.uuid)
        users = await _active_users(interfaces)
        if users:
            names = ", ".join(f"{spec.name} ({spec.uuid})" for spec in users)
            raise Conflict(
                f"network {current.spec.name} is in use by instance"
                f"{'s' if len(users) > 1 else ''} {names}: delete "
                f"{'them' if len(users) > 1 else 'it'} first"
            )
        spec = current.spec.replace(desired="deleted", deleted_at=time.time())
        name_key = keys.network_name(spec.namespace, spec.name)
        name_kv = await etcd.get(name_key)
        result = await etcd.txn(
            [Compare.unchanged_since(keys.network(spec.uuid), current.revision),
             Compare.unchanged_since(keys.network_fence(spec.uuid),
                                     fence.mod_revision if fence else 0)],
            [Put(keys.network(spec.uuid), spec.to_json()),
             # Free the name at once, so it can be used again.
             *([Delete(name_key)] if name_kv and name_kv.value.decode() == spec.uuid else [])],
        )
        if result.succeeded:
            return NetworkRecord(spec=spec, observed=current.observed, interfaces=interfaces,
                                 revision=result.revision), True
        found = await _load(record.uuid)
        if found is None:
            raise NotFound(f"network {record.uuid} not found")
        current = found
    raise Conflict("the network kept changing while it was being deleted; try again")


async def update(record: NetworkRecord,
                 change: Callable[[NetworkRecord], NetworkSpec]) -> NetworkRecord:
    """Rewrite the desired record with ``change`` (see store.rewrite). The
    caller is a service that has checked the Actor's role."""
    return await store.rewrite(record, change, key=store.keys().network, load=_load, kind=KIND)


async def purge(record: NetworkRecord) -> bool:
    """Forget a deleted network for good, once its nodes have taken it down."""
    if record.state != states.DELETED:
        return False
    keys = store.keys()
    return await store.forget(keys.network(record.uuid), keys.observed_network(record.uuid),
                              record.revision)


async def _active_users(interfaces: list[InterfaceSpec]) -> list[InstanceSpec]:
    etcd, keys = store.etcd(), store.keys()
    users: dict[str, InstanceSpec] = {}
    for iface in interfaces:
        kv = await etcd.get(keys.instance(iface.instance_uuid))
        if kv is None:
            continue
        spec = InstanceSpec.from_json(kv.value)
        if states.is_active(spec):
            users[spec.uuid] = spec
    return sorted(users.values(), key=lambda spec: spec.name)


async def _owned_networks(namespace: str) -> list[str]:
    return [record.spec.name for record in await list_networks(frozenset({namespace}))]


# A namespace can't be deleted while it still has networks (being deleted or not).
ownership.register("networks", _owned_networks)


# --- reads --------------------------------------------------------------------------------


async def interfaces_on(network_uuid: str) -> list[InterfaceSpec]:
    return sorted((iface for iface in await all_interfaces()
                   if iface.network_uuid == network_uuid),
                  key=lambda i: (i.created_at, i.instance_uuid, i.order))


async def all_interfaces() -> list[InterfaceSpec]:
    kvs, _ = await store.etcd().get_prefix(store.keys().interfaces)
    return [InterfaceSpec.from_json(kv.value) for kv in kvs]


async def _load(uuid: str) -> NetworkRecord | None:
    etcd, keys = store.etcd(), store.keys()
    spec_kv, observed_kv, interfaces = await asyncio.gather(
        etcd.get(keys.network(uuid)), etcd.get(keys.observed_network(uuid)), interfaces_on(uuid)
    )
    return None if spec_kv is None else NetworkRecord.from_kvs(spec_kv, observed_kv, interfaces)


async def get(ref: str, namespaces: Namespaces) -> NetworkRecord:
    """Find by UUID (deleted networks included) or by name (active only)."""
    return await refs.find(ref, namespaces, kind="network", load=_load, active=list_networks)


async def get_for(ref: Any, namespace: str) -> NetworkRecord:
    """The network an instance in ``namespace`` may attach to: one of the
    same namespace (a network is its namespace's own, whoever asks)."""
    if not isinstance(ref, str) or not ref:
        raise validation.ValidationError("network_uuid", "must name a network (UUID or name)")
    if ref == FLOATING_REF:
        raise BadRequest("network_uuid: instances can't be attached to the floating network")
    record = await get(ref, frozenset({namespace}))
    if record.spec.desired == "deleted":
        raise Conflict(f"network {record.spec.name} is being deleted")
    return record


async def list_networks(
    namespaces: Namespaces, *, include_deleted: bool = False
) -> list[NetworkRecord]:
    etcd, keys = store.etcd(), store.keys()
    (spec_kvs, _), (observed_kvs, _), interfaces = await asyncio.gather(
        etcd.get_prefix(keys.networks), etcd.get_prefix(keys.observed_networks), all_interfaces()
    )
    observed = {kv.key.rsplit("/", 1)[-1]: kv for kv in observed_kvs}
    by_network: dict[str, list[InterfaceSpec]] = {}
    for iface in interfaces:
        by_network.setdefault(iface.network_uuid, []).append(iface)
    records = []
    for kv in spec_kvs:
        uuid = kv.key.rsplit("/", 1)[-1]
        record = NetworkRecord.from_kvs(kv, observed.get(uuid), by_network.get(uuid, []))
        if visible(record.spec.namespace, namespaces):
            records.append(record)
    if not include_deleted:
        records = [r for r in records if r.state != states.DELETED]
    return sorted(records, key=lambda r: (r.spec.created_at, r.spec.uuid))


async def addresses(record: NetworkRecord) -> list[dict[str, Any]]:
    """Every address of the network that is not free, as Shaken Fist lists
    them: ``user`` is what holds it, ``["network", <uuid>]`` for the
    network's own addresses and ``["instance", <uuid>]`` for a guest's."""
    pool = ipam.Pool.for_network(record.uuid, record.spec.netblock)
    found = [
        {"address": address, "type": kind, "user": ["network", record.uuid],
         "when": record.spec.created_at, "comment": ""}
        for address, kind in pool.by_rule.items()
    ]
    owners = {iface.uuid: iface.instance_uuid for iface in record.interfaces}
    for reservation in await ipam.reservations(store.etcd(), store.keys(), record.uuid):
        kind, holder = [*reservation.user, "", ""][:2]
        user = ["instance", owners[holder]] if kind == "interface" and holder in owners \
            else list(reservation.user)
        found.append({"address": reservation.address, "type": reservation.type, "user": user,
                      "when": reservation.created_at, "comment": reservation.comment})
    return sorted(found, key=lambda a: tuple(int(p) for p in a["address"].split(".")))
