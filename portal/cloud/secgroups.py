"""Security groups: create, find, list, delete, and their rules; shared by the
API and the pages.

A group belongs to a namespace; its name is unique there (a name key
written in the group's own transaction). Every namespace has a ``default``
group, made the first time something needs it (by the portal itself, so the
audit trail says so): anything out, anything in from its own members. It may
be edited but not deleted; it goes with its namespace.

How many groups a namespace may have is its security_groups quota (a 403
naming limit and use, as every quota); rules per group are limited by
SFCLOUD_RULES_PER_SECURITY_GROUP (a 409 naming it). Both hold exactly: a create
compares the namespace's security fence, which every create (and every
attach of a group to an interface, and every rule naming another group or an
address set) rewrites, so two changes can't both take the last place, and a
delete can't miss a user that arrived meanwhile.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from cloudstate import secgroups as rules_of
from cloudstate.etcd import Compare, Delete, Put
from cloudstate.model import InterfaceSpec, SecurityGroup, SecurityRule
from cloudstate.secgroups import DEFAULT_GROUP, CheckedRule
from cloudstate.validation import ValidationError, shown
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import addresssets, changes, ownership, quotas, refs, store
from portal.cloud.changes import Later, given
from portal.cloud.errors import BadRequest, Conflict, NotFound
from portal.cloud.refs import Namespaces, visible

KIND = ObjectKind.SECURITY_GROUP
_ATTEMPTS = 16


@dataclass(frozen=True)
class GroupRequest:
    """What a create asks for, as given: the service checks all of it."""

    name: object
    description: object = ""
    rules: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class GroupRecord(refs.SpecRecord[SecurityGroup]):
    kind = KIND
    parse = SecurityGroup.from_json

    @property
    def is_default(self) -> bool:
        return self.spec.name == DEFAULT_GROUP


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


# --- reads -------------------------------------------------------------------------------------


async def _load(uuid: str) -> GroupRecord | None:
    kv = await store.etcd().get(store.keys().security_group(uuid))
    return None if kv is None else GroupRecord.from_kv(kv)


async def list_groups(namespaces: Namespaces) -> list[GroupRecord]:
    kvs, _ = await store.etcd().get_prefix(store.keys().security_groups)
    found = [GroupRecord.from_kv(kv) for kv in kvs]
    return sorted((r for r in found if visible(r.spec.namespace, namespaces)),
                  key=lambda r: (r.spec.namespace, r.spec.name != DEFAULT_GROUP, r.spec.name))


async def get(ref: str, namespaces: Namespaces) -> GroupRecord:
    """By UUID or by name, within what the caller may see."""
    return await refs.find(ref, namespaces, kind="security group", load=_load,
                           active=list_groups)


async def of_namespace(namespace: str) -> list[GroupRecord]:
    return await list_groups(frozenset({namespace}))


async def by_name(namespace: str, name: str) -> GroupRecord | None:
    kv = await store.etcd().get(store.keys().security_group_name(namespace, name))
    return None if kv is None else await _load(kv.value.decode())


async def interfaces_using(group_uuid: str) -> list[InterfaceSpec]:
    kvs, _ = await store.etcd().get_prefix(store.keys().interfaces)
    found = [InterfaceSpec.from_json(kv.value) for kv in kvs]
    return sorted((i for i in found if group_uuid in i.security_groups),
                  key=lambda i: (i.created_at, i.instance_uuid, i.order))


def names_by_uuid(records: list[GroupRecord]) -> dict[str, str]:
    return {r.uuid: r.spec.name for r in records}


# --- the default group -------------------------------------------------------------------------


async def ensure_default(namespace: str) -> GroupRecord:
    """The namespace's ``default`` group, made now if it has none."""
    found = await by_name(namespace, DEFAULT_GROUP)
    if found is not None:
        return found
    group_uuid = _new_uuid()
    spec = SecurityGroup(uuid=group_uuid, name=DEFAULT_GROUP, namespace=namespace,
                         description=rules_of.DEFAULT_DESCRIPTION,
                         rules=rules_of.default_rules(group_uuid, _new_uuid))
    actor = Actor.portal()
    try:
        async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                    object_id=spec.uuid, object_name=spec.name):
            await _insert(spec, quota=False)
    except Conflict:
        # Made by someone else meanwhile (another request, another portal).
        found = await by_name(namespace, DEFAULT_GROUP)
        if found is None:
            raise
        return found
    await changes.event(actor, KIND, spec.uuid, "created for the namespace")
    return (await _load(spec.uuid)) or GroupRecord(spec=spec)


# --- writes ------------------------------------------------------------------------------------


async def create(actor: Actor, namespace: str,
                 request: GroupRequest | Later[GroupRequest]) -> GroupRecord:
    """A new group in ``namespace`` with the rules asked for (all or none)."""
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                object_name=str(request.name or "")[:255],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        wanted = given(request)
        group_name = rules_of.name(wanted.name)
        description = rules_of.description(wanted.description)
        await ensure_default(namespace)
        group_uuid = _new_uuid()
        checked = _checked_rules(wanted.rules, "rules")
        resolved = await _resolve(checked, namespace, own=(group_uuid, group_name), field="rules")
        _check_rule_count(len(resolved))
        spec = SecurityGroup(uuid=group_uuid, name=group_name, namespace=namespace,
                             description=description, rules=resolved)
        await _insert(spec, quota=True)
        entry.object_id = spec.uuid
    await changes.event(actor, KIND, spec.uuid, "created",
                        rules=[rules_of.describe(r) for r in spec.rules])
    return (await _load(spec.uuid)) or GroupRecord(spec=spec)


async def _insert(spec: SecurityGroup, *, quota: bool) -> None:
    """Write a new group, its name and the namespace's fence, within the
    namespace's security_groups quota (the default group is made whatever the
    quota: every namespace has one, and it counts)."""
    keys = store.keys()

    async def guard() -> store.Guarded:
        return await quotas.guard(spec.namespace, {"security_groups": 1})

    await store.insert_named(
        key=keys.security_group(spec.uuid), value=spec.to_json(),
        name_key=keys.security_group_name(spec.namespace, spec.name), uuid=spec.uuid,
        fence_key=keys.security_fence(spec.namespace),
        taken=f"a security group named {shown(spec.name)} already exists in namespace "
              f"{shown(spec.namespace)}",
        guard=guard if quota else None)


async def delete(actor: Actor, record: GroupRecord) -> None:
    """Remove a group nothing uses: no interface names it and no other
    group's rule names it as its remote end."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.DELETE, KIND, namespace=spec.namespace,
                                object_id=spec.uuid, object_name=spec.name):
        if record.is_default:
            raise Conflict("a namespace's default group can't be deleted (it goes with its "
                           "namespace); change its rules instead")
        await _remove(record)
    await changes.event(actor, KIND, spec.uuid, "deleted")


async def _remove(record: GroupRecord) -> None:
    etcd, keys = store.etcd(), store.keys()
    spec = record.spec
    fence_key = keys.security_fence(spec.namespace)
    current = record
    for _ in range(_ATTEMPTS):
        fence = await etcd.get(fence_key)
        users = await interfaces_using(spec.uuid)
        if users:
            raise Conflict(f"security group {spec.name} is in use by {len(users)} "
                           f"interface{'s' if len(users) != 1 else ''} (of instance"
                           f"{'s' if len({u.instance_uuid for u in users}) > 1 else ''} "
                           f"{', '.join(sorted({u.instance_uuid for u in users}))}): "
                           "take it off them first")
        naming = [g.spec.name for g in await of_namespace(spec.namespace)
                  if g.uuid != spec.uuid and any(r.remote_group == spec.uuid
                                                 for r in g.spec.rules)]
        if naming:
            raise Conflict(f"security group {spec.name} is named by rules of group"
                           f"{'s' if len(naming) > 1 else ''} {', '.join(naming)}: "
                           "remove those rules first")
        result = await etcd.txn(
            [Compare.unchanged_since(keys.security_group(spec.uuid), current.revision),
             Compare.unchanged_since(fence_key, fence.mod_revision if fence else 0)],
            [Delete(keys.security_group(spec.uuid)),
             Delete(keys.security_group_name(spec.namespace, spec.name))])
        if result.succeeded:
            return
        fresh = await _load(spec.uuid)
        if fresh is None:
            return  # deleted meanwhile: what was asked for
        current = fresh
    raise Conflict("the security group kept changing while it was being deleted; try again")


async def add_rules(actor: Actor, record: GroupRecord,
                    rules: list[Any] | Later[list[Any]]) -> tuple[GroupRecord, list[SecurityRule]]:
    """Add rules to a group, all of them or none; a rule the group already
    has (or one given twice) is refused."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.ADD_RULES, KIND, namespace=spec.namespace,
                                object_id=spec.uuid, object_name=spec.name) as entry:
        raw = given(rules)
        if not raw:
            raise BadRequest("rules: give at least one rule")
        checked = _checked_rules(raw, "rules")
        resolved = await _resolve(checked, spec.namespace, own=(spec.uuid, spec.name),
                                  field="rules")
        added: list[SecurityRule] = []

        def change(current: GroupRecord) -> SecurityGroup:
            have = current.spec.rules
            _check_duplicates(have, resolved)
            _check_rule_count(len(have) + len(resolved))
            added[:] = resolved
            return current.spec.replace(rules=[*have, *resolved],
                                        generation=current.spec.generation + 1)

        updated = await _rewrite(record, change, fence=any(
            r.remote_group or r.remote_address_set for r in resolved))
        entry.detail = "; ".join(rules_of.describe(r) for r in added)[:2000]
    await changes.event(actor, KIND, spec.uuid, f"{len(added)} rule{'s' if len(added) != 1 else ''}"
                        " added", rules=[rules_of.describe(r) for r in added])
    return updated, added


async def remove_rule(actor: Actor, record: GroupRecord, rule_uuid: str) -> GroupRecord:
    spec = record.spec
    removed: list[SecurityRule] = []
    async with changes.changing(actor, AuditAction.REMOVE_RULE, KIND, namespace=spec.namespace,
                                object_id=spec.uuid, object_name=spec.name,
                                detail=str(rule_uuid)[:100]) as entry:

        def change(current: GroupRecord) -> SecurityGroup:
            kept = [r for r in current.spec.rules if r.uuid != rule_uuid]
            if len(kept) == len(current.spec.rules):
                raise NotFound(f"security group {spec.name} has no rule {rule_uuid}")
            removed[:] = [r for r in current.spec.rules if r.uuid == rule_uuid]
            return current.spec.replace(rules=kept, generation=current.spec.generation + 1)

        updated = await _rewrite(record, change, fence=False)
        entry.detail = rules_of.describe(removed[0])
    await changes.event(actor, KIND, spec.uuid, f"rule removed: {rules_of.describe(removed[0])}",
                        rule=rule_uuid)
    return updated


async def update(record: GroupRecord,
                 change: Callable[[GroupRecord], SecurityGroup]) -> GroupRecord:
    """Rewrite the desired record with ``change`` (see store.rewrite). The
    caller is a service that has checked the Actor's role."""
    return await store.rewrite(record, change, key=store.keys().security_group, load=_load,
                               kind="security group")


async def _rewrite(record: GroupRecord, change: Callable[[GroupRecord], SecurityGroup], *,
                   fence: bool) -> GroupRecord:
    """``update``, and with ``fence`` (a rule names another group or an
    address set, which must not be deleted meanwhile) the namespace's fence
    rewritten in the same transaction."""
    fence_key = store.keys().security_fence(record.spec.namespace)

    async def fenced(spec: SecurityGroup) -> tuple[list[Compare], list[Put]]:
        return [], [Put(fence_key, spec.uuid)]

    return await store.rewrite(record, change, key=store.keys().security_group, load=_load,
                               kind="security group", guard=fenced if fence else None)


# --- rules -------------------------------------------------------------------------------------


def _checked_rules(raw: Any, field: str) -> list[CheckedRule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationError(field, "must be a list of rules")
    limit = settings.RULES_PER_SECURITY_GROUP
    if len(raw) > limit:
        raise Conflict(f"{field}: {len(raw)} rules are more than a group may "
                                    f"have ({limit}, SFCLOUD_RULES_PER_SECURITY_GROUP)")
    checked = [rules_of.check_rule(item, f"{field}[{index}]") for index, item in enumerate(raw)]
    seen: dict[tuple[Any, ...], int] = {}
    for index, rule in enumerate(checked):
        key = rules_of.identity(rule)
        if key in seen:
            raise Conflict(f"{field}[{index}]: the same rule as {field}[{seen[key]}]")
        seen[key] = index
    return checked


async def _resolve(checked: list[CheckedRule], namespace: str, *, own: tuple[str, str],
                   field: str) -> list[SecurityRule]:
    """Rules with their remote groups and address sets resolved to UUIDs,
    within ``namespace`` (``own`` is the group being made or changed, which
    may name itself)."""
    resolved = []
    for index, rule in enumerate(checked):
        group = address_set = None
        if rule.remote_group is not None:
            group = await _remote_group(rule.remote_group, namespace, own,
                                        f"{field}[{index}].remote.group")
        if rule.remote_address_set is not None:
            address_set = await addresssets.find_in(
                rule.remote_address_set, namespace, f"{field}[{index}].remote.address_set")
        resolved.append(SecurityRule(
            uuid=_new_uuid(), direction=rule.direction, protocol=rule.protocol,
            ports=rule.ports, icmp_type=rule.icmp_type, icmp_code=rule.icmp_code,
            remote_cidrs=list(rule.remote_cidrs), remote_group=group,
            remote_address_set=address_set, description=rule.description,
            ethertype=rule.ethertype))
    return resolved


async def _remote_group(ref: str, namespace: str, own: tuple[str, str], field: str) -> str:
    if ref in own:
        return own[0]
    try:
        found = await get(ref, frozenset({namespace}))
    except NotFound:
        if ref == DEFAULT_GROUP:
            return (await ensure_default(namespace)).uuid
        raise NotFound(f"{field}: no security group {shown(ref)} in namespace "
                       f"{namespace}") from None
    return found.uuid


def _check_duplicates(have: list[SecurityRule], new: list[SecurityRule]) -> None:
    existing = {rules_of.identity(r): r for r in have}
    for index, rule in enumerate(new):
        if (same := existing.get(rules_of.identity(rule))) is not None:
            raise Conflict(f"rules[{index}]: the group already has this rule ({same.uuid}: "
                           f"{rules_of.describe(same)})")


def _check_rule_count(count: int) -> None:
    limit = settings.RULES_PER_SECURITY_GROUP
    if count > limit:
        raise Conflict(
            f"a security group may have {limit} rules (SFCLOUD_RULES_PER_SECURITY_GROUP); "
            f"this would make {count}")


# --- a namespace's groups ----------------------------------------------------------------------


async def _owned_groups(namespace: str) -> list[str]:
    """Groups someone made (the default group goes with its namespace)."""
    return [r.spec.name for r in await of_namespace(namespace) if not r.is_default]


async def _release_default(namespace: str) -> None:
    found = await by_name(namespace, DEFAULT_GROUP)
    if found is not None:
        keys = store.keys()
        await store.etcd().txn([], [Delete(keys.security_group(found.uuid)),
                                    Delete(keys.security_group_name(namespace, DEFAULT_GROUP)),
                                    Delete(keys.security_fence(namespace))])


ownership.register("security groups", _owned_groups, release=_release_default)
