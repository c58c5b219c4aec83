"""Changing an interface's filtering while its guest runs: its security
groups, port security (filtering on or off), the extra addresses it may
send from. The hypervisor applies each change at once (its agent watches
the interface) and reports what it has in force, which the interface's
views show beside what it asks for.

Each change rewrites the interface record fenced on its revision, and
rewrites the namespace's security fence, so a group being deleted can't
miss that it gained a user.
"""

from __future__ import annotations

from collections.abc import Callable

from cloudstate import secgroups as rules_of
from cloudstate.etcd import Compare, Put
from cloudstate.model import InterfaceSpec
from cloudstate.vocabulary import EventType, ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, interfaces, networks, store
from portal.cloud.changes import Later, given
from portal.cloud.errors import Conflict, NotFound
from portal.cloud.interfaces import InterfaceRecord


async def set_security_groups(actor: Actor, record: InterfaceRecord,
                              groups: list[str] | Later[list[str]]) -> InterfaceSpec:
    """The interface's groups become exactly these (names or UUIDs of its
    namespace's groups; none at all means the namespace's default)."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.SET_SECURITY_GROUPS, ObjectKind.INTERFACE,
                                namespace=spec.namespace, object_id=spec.uuid) as entry:
        refs = given(groups)
        if not spec.port_security:
            raise Conflict(f"interface {spec.uuid} has port security off: turn it on first "
                           "(its groups come back with it)")
        uuids = await interfaces.group_uuids(refs, spec.namespace, port_security=True,
                                             field="security_groups")
        updated = await _rewrite(record, lambda current: current.replace(
            security_groups=uuids), groups=uuids)
        entry.detail = ", ".join(uuids)
    names = await _names(uuids)
    await _event(actor, updated, f"security groups set to {', '.join(names)}")
    return updated


async def set_port_security(actor: Actor, record: InterfaceRecord,
                            enabled: bool | Later[bool]) -> InterfaceSpec:
    """Filtering on or off. Off takes the interface out of its groups (and
    its anti-spoofing); on puts it back in its namespace's default group."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.SET_PORT_SECURITY, ObjectKind.INTERFACE,
                                namespace=spec.namespace, object_id=spec.uuid) as entry:
        wanted = given(enabled)
        entry.detail = "on" if wanted else "off"
        if wanted == spec.port_security:
            return spec
        uuids = await interfaces.group_uuids(None, spec.namespace, port_security=wanted,
                                             field="port_security")
        updated = await _rewrite(record, lambda current: current.replace(
            port_security=wanted, security_groups=uuids), groups=uuids)
    await _event(actor, updated, "filtering turned " + ("on (default group)" if wanted
                                                        else "off"))
    return updated


async def set_allowed_addresses(actor: Actor, record: InterfaceRecord,
                                cidrs: object | Later[object]) -> InterfaceSpec:
    """Further addresses the guest may send from (a shared virtual IP)."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.SET_ALLOWED_ADDRESSES, ObjectKind.INTERFACE,
                                namespace=spec.namespace, object_id=spec.uuid) as entry:
        wanted = rules_of.allowed_addresses(given(cidrs))
        entry.detail = ", ".join(wanted)
        updated = await _rewrite(record, lambda current: current.replace(
            allowed_addresses=wanted), groups=[])
    await _event(actor, updated, "allowed addresses: " + (", ".join(wanted) or "none"))
    return updated


async def _rewrite(record: InterfaceRecord, change: Callable[[InterfaceSpec], InterfaceSpec],
                   *, groups: list[str]) -> InterfaceSpec:
    """The interface rewritten, if its instance is not going and its groups
    are still there; the namespace's fence rewritten with it."""
    keys = store.keys()

    async def guarded(spec: InterfaceSpec) -> tuple[list[Compare], list[Put]]:
        if not await interfaces.instance_is_active(spec):
            raise Conflict(f"the instance of interface {spec.uuid} is being deleted")
        return (await interfaces.secgroups_present(groups),
                [Put(keys.security_fence(spec.namespace), spec.uuid)])

    async def load(uuid: str) -> InterfaceRecord | None:
        try:
            return await interfaces.get(uuid, None)
        except NotFound:
            return None

    updated = await store.rewrite(record, lambda current: change(current.spec),
                                  key=keys.interface, load=load, kind="interface",
                                  guard=guarded)
    return updated.spec


async def _names(uuids: list[str]) -> list[str]:
    found = []
    for uuid in uuids:
        kv = await store.etcd().get(store.keys().security_group(uuid))
        found.append(kv.json()["name"] if kv is not None else uuid)
    return found


async def _event(actor: Actor, spec: InterfaceSpec, message: str) -> None:
    await changes.event(actor, ObjectKind.INSTANCE, spec.instance_uuid,
                        f"eth{spec.order}: {message}", type=EventType.MUTATE,
                        interface=spec.uuid)


async def adopt_unfiltered() -> int:
    """Interfaces made before security groups existed name no group: give
    each its namespace's default group (what an interface that names none
    gets). The portal does this once at start; returns how many."""
    adopted = 0
    for spec in await networks.all_interfaces():
        if not spec.port_security or spec.security_groups:
            continue
        try:
            record = await interfaces.get(spec.uuid, None)
            await set_security_groups(Actor.portal(), record, [])
        except (NotFound, Conflict):
            continue  # gone, or its instance is going: nothing to filter
        adopted += 1
    return adopted
