"""Addresses of the floating network routed to a network as a whole
(Shaken Fist's ``network add-routed``): the outside reaches the address
through the network node, and a guest on the network that configures it
answers. Unlike a floating address there is no NAT: the guest owns it.

Routing reserves an address from the floating pool (type ``routed``) in the
same transaction that lists it on the network, as floating an interface
does. Unrouting drops it from the network's list; the network node removes
the route and only then gives the address back to the pool, as it does a
floating address, so it is never handed out while still routed.
"""

from __future__ import annotations

import ipaddress

from cloudstate import ipam, states
from cloudstate.etcd import Compare, Put
from cloudstate.keys import FLOATING_POOL
from cloudstate.model import AddressReservation, NetworkSpec
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, networks, store
from portal.cloud.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientResources,
    NotFound,
    NotReady,
)
from portal.cloud.networks import NetworkRecord

KIND = ObjectKind.NETWORK
ROUTED = "routed"


def _usable(record: NetworkRecord) -> None:
    if record.state != states.CREATED:
        raise NotReady(f"network {record.spec.name} is {record.state}, not created")


async def route(actor: Actor, record: NetworkRecord) -> str:
    """Route a free floating address to the network; returns it."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.ROUTE, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name) as entry:
        _usable(record)
        address = await _route(record)
        entry.detail = address
    await changes.event(actor, KIND, record.uuid, f"address {address} routed here",
                        operation=AuditAction.ROUTE, address=address)
    return address


async def _route(record: NetworkRecord) -> str:
    etcd, keys = store.etcd(), store.keys()
    pool = networks.require_floating_pool()

    async def build(address: str) -> tuple[list[Compare], list[Put]]:
        current = await networks.get(record.uuid, None)
        if current.spec.desired == "deleted":
            raise Conflict(f"network {current.spec.name} is being deleted")
        routed = current.spec.replace(routed=[*current.spec.routed, address])
        return ([Compare.unchanged_since(keys.network(record.uuid), current.revision)],
                [Put(keys.network(record.uuid), routed.to_json())])

    try:
        address, _ = await ipam.allocate(etcd, keys, pool, lambda address: AddressReservation(
            address=address, type=ROUTED, user=["network", record.uuid],
            network_uuid=record.uuid, comment=f"routed to network {record.spec.name}",
        ), build=build)
    except ipam.PoolExhausted as exc:
        raise InsufficientResources(str(exc)) from exc
    except ipam.TooMuchContention as exc:
        raise Conflict(str(exc)) from exc
    return address


async def unroute(actor: Actor, record: NetworkRecord, address: str) -> NetworkSpec:
    """Stop routing ``address`` to the network; the pool gets it back once
    the network node has removed the route."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.UNROUTE, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name,
                                detail=str(address)[:64]):
        address = await _routed_here(record, address)

        def change(current: NetworkRecord) -> NetworkSpec:
            if address not in current.spec.routed:
                raise NotFound(f"address {address} is not routed")
            return current.spec.replace(
                routed=[routed for routed in current.spec.routed if routed != address])

        updated = await networks.update(record, change)
    await changes.event(actor, KIND, record.uuid, f"address {address} no longer routed here",
                        operation=AuditAction.UNROUTE, address=address)
    return updated.spec


async def _routed_here(record: NetworkRecord, address: str) -> str:
    """The address, checked to be one routed to this network (Shaken Fist's
    404 for one not routed at all, 403 for another network's)."""
    try:
        address = str(ipaddress.IPv4Address(address))
    except ValueError:
        raise BadRequest(f"address: {address!r} is not an IPv4 address") from None
    kv = await store.etcd().get(store.keys().address(FLOATING_POOL, address))
    reservation = AddressReservation.from_json(kv.value) if kv else None
    if reservation is None or reservation.type != ROUTED:
        raise NotFound(f"address {address} is not routed")
    if reservation.network_uuid != record.uuid or address not in record.spec.routed:
        raise Forbidden(f"address {address} is not routed by this network")
    return address
