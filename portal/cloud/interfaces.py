"""An instance's NICs: what a create asks for, the reservations behind them,
floating addresses, and how they are shown.

An instance's interfaces, their addresses and MACs are written in the
instance's own create transaction (see ``plan``), so an instance never
exists with half its NICs. Floating an interface reserves an address from
the floating pool in the same transaction that records it on the interface.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from cloudstate import ipam, netvalidation, states, validation
from cloudstate.etcd import Compare, Put
from cloudstate.keys import FLOATING_POOL
from cloudstate.model import (
    AddressReservation,
    InstanceObserved,
    InstanceSpec,
    InterfaceObserved,
    InterfaceSpec,
    NetworkObserved,
    SecurityGroup,
)
from cloudstate.secgroups import DEFAULT_GROUP, MAX_GROUPS_PER_INTERFACE
from cloudstate.vocabulary import EventType, ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, networks, quotas, secgroups, store
from portal.cloud.errors import BadRequest, Conflict, InsufficientResources, NotFound

Namespaces = frozenset[str] | None
NO_ADDRESS = "none"


@dataclass(frozen=True)
class NicRequest:
    """One of Shaken Fist's netdescs, checked."""

    network: str  # UUID or name
    address: str | None = None  # None: any free one; NO_ADDRESS: none at all
    macaddress: str | None = None
    model: str = "virtio"
    float: bool = False
    # Security groups by name or UUID (None: the namespace's default), or
    # no filtering at all (port_security False, and no groups).
    security_groups: list[str] | None = None
    port_security: bool = True
    allowed_addresses: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What one attempt at creating an instance adds to its transaction."""

    interfaces: list[InterfaceSpec] = field(default_factory=list)
    compares: list[Compare] = field(default_factory=list)
    puts: list[Put] = field(default_factory=list)


# --- resolving what a create asks for ------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """What a NIC asks for, found: its network and its groups' UUIDs."""

    network: networks.NetworkRecord
    groups: list[str]


async def resolve(nics: list[NicRequest], namespace: str) -> list[Resolved]:
    """The network of each NIC (404 for one the namespace can't see), a
    check of the addresses asked for against each network's range (400), and
    its security groups (404 for one the namespace has not)."""
    found: dict[str, networks.NetworkRecord] = {}
    resolved = []
    for index, nic in enumerate(nics):
        try:
            record = found.get(nic.network) or await networks.get_for(nic.network, namespace)
        except NotFound:
            raise NotFound(f"network[{index}]: network {nic.network} not found") from None
        found[nic.network] = record
        if nic.address not in (None, NO_ADDRESS):
            netvalidation.address_in(nic.address, record.spec.network,
                                     f"network[{index}].address")
        if nic.float and nic.address == NO_ADDRESS:
            raise validation.ValidationError(
                f"network[{index}].float", "an interface without an address can't be floated"
            )
        resolved.append(Resolved(record, await group_uuids(
            nic.security_groups, namespace, port_security=nic.port_security,
            field=f"network[{index}].security_groups")))
    return resolved


async def group_uuids(refs: list[str] | None, namespace: str, *, port_security: bool,
                      field: str) -> list[str]:
    """The security groups an interface of ``namespace`` asks for, by UUID:
    the namespace's default for none; none at all without port security."""
    if not port_security:
        if refs:
            raise BadRequest(f"{field}: an interface with port_security off has no "
                             "security groups")
        return []
    if not refs:
        return [(await secgroups.ensure_default(namespace)).uuid]
    if len(refs) > MAX_GROUPS_PER_INTERFACE:
        raise validation.ValidationError(
            field, f"at most {MAX_GROUPS_PER_INTERFACE} security groups per interface")
    uuids: list[str] = []
    for ref in refs:
        try:
            record = await secgroups.get(ref, frozenset({namespace}))
        except NotFound:
            if ref != DEFAULT_GROUP:
                raise NotFound(f"{field}: no security group {validation.shown(ref)} in "
                               f"namespace {namespace}") from None
            record = await secgroups.ensure_default(namespace)
        if record.uuid not in uuids:
            uuids.append(record.uuid)
    return uuids


# --- planning an instance's NICs ----------------------------------------------------------


async def plan(
    nics: list[NicRequest], resolved: list[Resolved], *, instance_uuid: str,
    namespace: str, node: str, first_order: int = 0,
) -> Plan:
    """Choose addresses and MACs for every NIC, from a fresh read, and the
    comparisons that make the create (or hot plug) fail, and be planned
    again, if anyone else took one of them meanwhile (or deleted one of its
    groups). The NICs are numbered from ``first_order`` (0 is eth0)."""
    etcd, keys = store.etcd(), store.keys()
    result = Plan()
    if not nics:
        return result
    records = [r.network for r in resolved]
    pools = {record.uuid: record for record in records}
    taken = dict(zip(pools, await asyncio.gather(
        *(ipam.taken(etcd, keys, uuid) for uuid in pools)), strict=True))
    floating_taken: set[str] | None = None
    for uuid, record in pools.items():
        # The network must still be what we read (not being deleted), and a
        # delete racing with us must see that it gained a user.
        result.compares.append(Compare.unchanged_since(keys.network(uuid), record.revision))
        result.puts.append(Put(keys.network_fence(uuid), instance_uuid))
    # Addresses this request names for some NIC: a NIC given any address
    # must not be handed one of them, or the NIC naming it would collide.
    named: dict[str, set[str]] = {}
    for nic, record in zip(nics, records, strict=True):
        if nic.address not in (None, NO_ADDRESS):
            named.setdefault(record.uuid, set()).add(nic.address)
    for index, (nic, record) in enumerate(zip(nics, records, strict=True)):
        order = first_order + index
        pool = ipam.Pool.for_network(record.uuid, record.spec.netblock)
        in_use = taken[record.uuid]
        interface_uuid = str(uuidlib.uuid4())
        address: str | None
        if nic.address == NO_ADDRESS:
            address = None
        elif nic.address is not None:
            if nic.address in in_use:
                raise Conflict(f"network[{index}].address: {nic.address} is already in use on "
                               f"network {record.spec.name}")
            address = nic.address
        else:
            try:
                address = pool.choose(in_use | named.get(record.uuid, set()))[0]
            except ipam.PoolExhausted as exc:
                raise InsufficientResources(
                    f"network {record.spec.name} is full: {exc}") from exc
        if address is not None:
            in_use.add(address)
            compare, put = ipam.claim_address(keys, record.uuid, AddressReservation(
                address=address, type="instance", user=["interface", interface_uuid],
                network_uuid=record.uuid, comment=f"instance {instance_uuid} eth{order}",
            ))
            result.compares.append(compare)
            result.puts.append(put)
        mac = nic.macaddress or ipam.random_mac()
        if nic.macaddress and await etcd.get(keys.mac(mac)) is not None:
            raise Conflict(f"network[{index}].macaddress: {mac} is already in use")
        compare, put = ipam.claim_mac(keys, mac, interface_uuid)
        result.compares.append(compare)
        result.puts.append(put)
        floating = None
        if nic.float:
            floating_pool = networks.require_floating_pool()
            if floating_taken is None:
                floating_taken = await ipam.taken(etcd, keys, FLOATING_POOL)
            try:
                floating = floating_pool.choose(floating_taken)[0]
            except ipam.PoolExhausted as exc:
                raise InsufficientResources(str(exc)) from exc
            floating_taken.add(floating)
            compare, put = ipam.claim_address(keys, FLOATING_POOL, AddressReservation(
                address=floating, type="floating", user=["interface", interface_uuid],
                network_uuid=record.uuid, comment=f"floating for instance {instance_uuid}",
            ))
            result.compares.append(compare)
            result.puts.append(put)
        spec = InterfaceSpec(
            uuid=interface_uuid, network_uuid=record.uuid, instance_uuid=instance_uuid,
            namespace=namespace, order=order, macaddr=mac, ipv4=address, model=nic.model,
            floating=floating, node=node, security_groups=resolved[index].groups,
            port_security=nic.port_security, allowed_addresses=list(nic.allowed_addresses),
        )
        result.interfaces.append(spec)
        result.puts.append(Put(keys.interface(interface_uuid), spec.to_json()))
    groups = sorted({uuid for r in resolved for uuid in r.groups})
    if groups:
        result.compares += await secgroups_present(groups)
        # A group's delete must see that it gained a user.
        result.puts.append(Put(keys.security_fence(namespace), instance_uuid))
    return result


async def secgroups_present(uuids: list[str]) -> list[Compare]:
    """Comparisons that fail if one of these groups changed (or went) since now."""
    etcd, keys = store.etcd(), store.keys()
    found = await asyncio.gather(*(etcd.get(keys.security_group(uuid)) for uuid in uuids))
    compares = []
    for uuid, kv in zip(uuids, found, strict=True):
        if kv is None:
            raise NotFound(f"security group {uuid} not found")
        compares.append(Compare.unchanged_since(keys.security_group(uuid), kv.mod_revision))
    return compares


# --- floating -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InterfaceRecord:
    spec: InterfaceSpec
    revision: int
    live: bool = True  # False: what remains of an interface whose instance was torn down

    @property
    def uuid(self) -> str:
        return self.spec.uuid


async def get(uuid: str, namespaces: Namespaces) -> InterfaceRecord:
    """An interface by UUID; one of a torn-down instance too, for as long as
    the instance is readable (its state then reads "deleted")."""
    try:
        uuid = str(uuidlib.UUID(uuid))
    except ValueError:
        raise NotFound(f"interface {uuid} not found") from None
    etcd, keys = store.etcd(), store.keys()
    kv = await etcd.get(keys.interface(uuid))
    live = kv is not None
    if kv is None:
        kv = await etcd.get(keys.deleted_interface(uuid))
    if kv is None:
        raise NotFound(f"interface {uuid} not found")
    spec = InterfaceSpec.from_json(kv.value)
    if not networks.visible(spec.namespace, namespaces):
        raise NotFound(f"interface {uuid} not found")
    return InterfaceRecord(spec=spec, revision=kv.mod_revision if live else 0, live=live)


async def instance_is_active(spec: InterfaceSpec) -> bool:
    kv = await store.etcd().get(store.keys().instance(spec.instance_uuid))
    return kv is not None and states.is_active(InstanceSpec.from_json(kv.value))


async def _record_events(actor: Actor, spec: InterfaceSpec, message: str,
                         operation: AuditAction) -> None:
    await changes.event(actor, ObjectKind.INSTANCE, spec.instance_uuid,
                        f"eth{spec.order}: {message}", operation=operation,
                        type=EventType.MUTATE, interface=spec.uuid)
    await changes.event(actor, ObjectKind.NETWORK, spec.network_uuid,
                        f"interface {spec.uuid} {message}", operation=operation,
                        type=EventType.MUTATE)


async def record_on_networks(actor: Actor, instance: InstanceSpec, what: str) -> None:
    """Tell each network of the instance's NICs (its event log) that one of
    them arrived or is going: a network's page shows who joins it."""
    for spec in await of_instance(instance):
        await record_on_network(actor, instance, spec, what)


async def record_on_network(actor: Actor, instance: InstanceSpec, spec: InterfaceSpec,
                            what: str, operation: str | None = None) -> None:
    """One NIC arrived on or is going from its network (instance create and
    delete, hot plug): the network's event log says so."""
    address = spec.ipv4 or "no address"
    await changes.event(actor, ObjectKind.NETWORK, spec.network_uuid,
                        f"interface {spec.uuid} {what}: eth{spec.order} of instance "
                        f"{instance.name}, {address}", type=EventType.MUTATE,
                        operation=operation, interface=spec.uuid, instance=instance.uuid)


async def float_interface(actor: Actor, record: InterfaceRecord) -> InterfaceSpec:
    """Give the interface an address from the floating pool (507 when none is left)."""
    async with changes.changing(actor, AuditAction.FLOAT, ObjectKind.INTERFACE,
                                namespace=record.spec.namespace, object_id=record.uuid):
        _require_live(record)
        floated = await _float(record)
    await _record_events(actor, floated, f"floated at {floated.floating}", AuditAction.FLOAT)
    return floated


async def defloat_interface(actor: Actor, record: InterfaceRecord) -> InterfaceSpec:
    """Take the floating address away. The network node releases it to the
    pool once it has removed the address's NAT."""
    async with changes.changing(actor, AuditAction.DEFLOAT, ObjectKind.INTERFACE,
                                namespace=record.spec.namespace, object_id=record.uuid):
        _require_live(record)
        spec, address = await _defloat(record)
    await _record_events(actor, spec, f"floating address {address} removed",
                         AuditAction.DEFLOAT)
    return spec


def _require_live(record: InterfaceRecord) -> None:
    if not record.live:
        raise Conflict(f"interface {record.uuid} belongs to a deleted instance")


async def _float(record: InterfaceRecord) -> InterfaceSpec:
    etcd, keys = store.etcd(), store.keys()
    spec = record.spec
    if spec.floating:
        raise Conflict(f"interface {spec.uuid} already has the floating address {spec.floating}")
    if spec.ipv4 is None:
        raise Conflict(f"interface {spec.uuid} has no address to forward a floating address to")
    if not await instance_is_active(spec):
        raise Conflict(f"the instance of interface {spec.uuid} is being deleted")
    pool = networks.require_floating_pool()
    floated: dict[str, InterfaceSpec] = {}

    async def build(address: str) -> tuple[list[Compare], list[Put]]:
        kv = await etcd.get(keys.interface(spec.uuid))
        if kv is None:
            raise NotFound(f"interface {spec.uuid} not found")
        current = InterfaceSpec.from_json(kv.value)
        if current.floating:
            raise Conflict(
                f"interface {spec.uuid} already has the floating address {current.floating}")
        floated["spec"] = current.replace(floating=address)
        # Counted again at each attempt, in the transaction that takes the address.
        quota = await quotas.guard(spec.namespace, {"floating_addresses": 1})
        return ([Compare.unchanged_since(keys.interface(spec.uuid), kv.mod_revision),
                 *quota.compares],
                [Put(keys.interface(spec.uuid), floated["spec"].to_json()), *quota.ops])

    try:
        await ipam.allocate(etcd, keys, pool, lambda address: AddressReservation(
            address=address, type="floating", user=["interface", spec.uuid],
            network_uuid=spec.network_uuid, comment=f"floating for instance {spec.instance_uuid}",
        ), build=build)
    except ipam.PoolExhausted as exc:
        raise InsufficientResources(str(exc)) from exc
    except ipam.TooMuchContention as exc:
        raise Conflict(str(exc)) from exc
    return floated["spec"]


async def _defloat(record: InterfaceRecord) -> tuple[InterfaceSpec, str]:
    """(the interface without its floating address, the address it had)."""
    etcd, keys = store.etcd(), store.keys()
    current = record
    for _ in range(16):
        address = current.spec.floating
        if not address:
            raise Conflict(f"interface {current.spec.uuid} has no floating address")
        spec = current.spec.replace(floating=None)
        result = await etcd.txn(
            [Compare.unchanged_since(keys.interface(spec.uuid), current.revision)],
            [Put(keys.interface(spec.uuid), spec.to_json())],
        )
        if result.succeeded:
            return spec, address
        current = await get(spec.uuid, None)
    raise Conflict("the interface kept changing; try again")


# --- how interfaces are shown -------------------------------------------------------------


def interface_state(
    spec: InterfaceSpec, instance: tuple[InstanceSpec, InstanceObserved | None] | None,
    network: NetworkObserved | None, filtering: str = states.APPLIED,
) -> str:
    if instance is None:
        return states.DELETED
    instance_state = states.instance_state(*instance)
    if instance_state in (states.DELETING, states.DELETED):
        return states.DELETED
    if spec.uuid not in instance[0].interfaces:
        return states.DELETING  # detached from its instance; its node is unplugging it
    if instance_state == states.ERROR or filtering == states.ERROR:
        return states.ERROR
    if instance_state == states.CREATED and network is not None and spec.uuid in network.applied:
        return states.CREATED
    return states.INITIAL


async def views(interfaces: list[InterfaceSpec]) -> list[dict[str, Any]]:
    """Shaken Fist's interface objects, with their state."""
    if not interfaces:
        return []
    etcd, keys = store.etcd(), store.keys()
    instance_uuids = sorted({i.instance_uuid for i in interfaces})
    network_uuids = sorted({i.network_uuid for i in interfaces})
    (group_kvs, _), observed_kvs, *fetched = await asyncio.gather(
        etcd.get_prefix(keys.security_groups),
        asyncio.gather(*(etcd.get(keys.observed_interface(i.uuid)) for i in interfaces)),
        *(etcd.get(keys.instance(u)) for u in instance_uuids),
        *(etcd.get(keys.observed_instance(u)) for u in instance_uuids),
        *(etcd.get(keys.observed_network(u)) for u in network_uuids),
    )
    groups = {g.uuid: g for g in (SecurityGroup.from_json(kv.value) for kv in group_kvs)}
    filtering = {i.uuid: InterfaceObserved.from_json(kv.value)
                 for i, kv in zip(interfaces, observed_kvs, strict=True) if kv is not None}
    count = len(instance_uuids)
    instances = {}
    for uuid, spec_kv, observed_kv in zip(instance_uuids, fetched[:count],
                                          fetched[count:2 * count], strict=True):
        if spec_kv is not None:
            instances[uuid] = (InstanceSpec.from_json(spec_kv.value),
                               InstanceObserved.from_json(observed_kv.value)
                               if observed_kv else None)
    observed_networks = {
        uuid: NetworkObserved.from_json(kv.value)
        for uuid, kv in zip(network_uuids, fetched[2 * count:], strict=True) if kv is not None
    }
    generations = {uuid: group.generation for uuid, group in groups.items()}
    shown = []
    for spec in interfaces:
        observed = filtering.get(spec.uuid)
        filter_state = states.filtering_state(spec, observed, generations)
        state = interface_state(spec, instances.get(spec.instance_uuid),
                                observed_networks.get(spec.network_uuid), filter_state)
        shown.append(view(spec, state, _filtering_view(spec, observed, filter_state, groups)))
    return shown


def _filtering_view(spec: InterfaceSpec, observed: InterfaceObserved | None, state: str,
                    groups: dict[str, SecurityGroup]) -> dict[str, Any]:
    """What the interface's hypervisor has in force, beside what it asks for."""
    return {
        "state": state,
        "error": observed.error if observed else None,
        "node": observed.node if observed else None,
        "applied_groups": sorted(observed.groups) if observed else [],
        "applied_at": observed.applied_at if observed else None,
        "group_names": {uuid: groups[uuid].name for uuid in spec.security_groups
                        if uuid in groups},
    }


def view(spec: InterfaceSpec, state: str,
         filtering: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "uuid": spec.uuid,
        "state": state,
        "metadata": {},
        "version": 1,
        "network_uuid": spec.network_uuid,
        "instance_uuid": spec.instance_uuid,
        "macaddr": spec.macaddr,
        "ipv4": spec.ipv4,
        "order": spec.order,
        "model": spec.model,
        "floating": spec.floating,
        "security_groups": list(spec.security_groups),
        "port_security": spec.port_security,
        "allowed_addresses": list(spec.allowed_addresses),
        "filtering": filtering,
        "error_message": filtering["error"] if filtering else None,
    }


async def of_instance(instance: InstanceSpec) -> list[InterfaceSpec]:
    """Its interfaces, in order; a torn-down instance's from what they were."""
    etcd, keys = store.etcd(), store.keys()
    kvs = await asyncio.gather(*(etcd.get(keys.interface(u)) for u in instance.interfaces))
    if instance.desired == "deleted" and any(kv is None for kv in kvs):
        kvs = [kv or await etcd.get(keys.deleted_interface(u))
               for u, kv in zip(instance.interfaces, kvs, strict=True)]
    return [InterfaceSpec.from_json(kv.value) for kv in kvs if kv is not None]


def check_unique_addresses(nics: list[NicRequest], resolved: list[Resolved]) -> None:
    seen: set[tuple[str, str]] = set()
    for index, (nic, found) in enumerate(zip(nics, resolved, strict=True)):
        record = found.network
        if nic.address in (None, NO_ADDRESS):
            continue
        if (record.uuid, nic.address) in seen:
            raise BadRequest(f"network[{index}].address: {nic.address} is asked for twice")
        seen.add((record.uuid, nic.address))
    macs = [nic.macaddress for nic in nics if nic.macaddress]
    if len(macs) != len(set(macs)):
        raise BadRequest("network: the same macaddress is asked for twice")
