"""Quotas as the portal applies them (the rules and the kinds are in
cloudstate.quotas).

Every service that makes something a quota limits asks ``guard`` for the
pieces of its transaction before it commits: the guard reads the
namespace's limits and quota fence, counts what the namespace holds now,
refuses (errors.QuotaExceeded, 403, naming the quota, its limit, the use and what
was asked) or returns comparisons on the limits and the fence and a rewrite
of the fence. The service's own retry loop plans again when the transaction
fails, so of several creates racing for the last unit exactly one wins and
the others are refused on their next count. A namespace with no limit on
what is asked (``system``, by default) costs one read and takes no fence.

Limits are set by system admins (``set_limits``, from the API or the admin
pages); a namespace's people read them with their use (``report``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudstate import quotas
from cloudstate.etcd import Compare, Delete, KeyValue, Put
from cloudstate.keys import Keys
from cloudstate.mirror import Mirror
from cloudstate.settings import read
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit
from portal.accounts.actor import Actor
from portal.accounts.models import SYSTEM_NAMESPACE, AuditAction
from portal.accounts.roles import RoleChecks
from portal.cloud import store
from portal.cloud.errors import BadRequest, Conflict, QuotaExceeded
from portal.cloud.versions import Change

# --- the check, in the creating transaction ------------------------------------------------


async def guard(namespace: str, asked: Mapping[str, int]) -> Change:
    """The comparisons and writes that make a create of ``asked`` (kind ->
    amount; 0: a new object of unknown size) fail if the namespace's limits
    or its use of a limited kind changed before it commits; QuotaExceeded
    if it would not fit now."""
    etcd, keys = store.etcd(), store.keys()
    limits_kv = await etcd.get(keys.quota(namespace))
    change = Change([Compare.unchanged_since(keys.quota(namespace),
                                             limits_kv.mod_revision if limits_kv else 0)])
    limits = quotas.limits_from_json(limits_kv.value if limits_kv else None)
    limited = [kind for kind in asked if kind in limits]
    if not limited:
        return change
    # The fence first, then the count: a create that commits after this
    # read rewrites the fence, so this transaction can't commit on a count
    # that missed it.
    fence_kv = await etcd.get(keys.quota_fence(namespace))
    used = await _count(keys, namespace, limited)
    exceeded = quotas.first_exceeded(limits, used, asked)
    if exceeded is not None:
        raise QuotaExceeded(exceeded.message, exceeded.kind)
    return change + Change(
        [Compare.unchanged_since(keys.quota_fence(namespace),
                                 fence_kv.mod_revision if fence_kv else 0)],
        [Put(keys.quota_fence(namespace), b"")])


async def _count(keys: Keys, namespace: str, kinds: list[str]) -> dict[str, int]:
    etcd = store.etcd()
    prefixes = quotas.prefixes_for(keys, kinds)
    read_kvs = await asyncio.gather(*(etcd.get_prefix(prefix) for prefix in prefixes))
    found: dict[str, list[KeyValue]] = {prefix: kvs for prefix, (kvs, _) in
                                        zip(prefixes, read_kvs, strict=True)}
    return quotas.usage(lambda prefix: found[prefix], keys, namespace, kinds)


# --- what a namespace holds, against its limits -------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One kind of quota of a namespace: its limit (None: none) and use."""

    kind: quotas.QuotaKind
    used: int
    limit: int | None

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def used_shown(self) -> str:
        return quotas.shown(self.name, self.used)

    @property
    def limit_shown(self) -> str:
        return "none" if self.limit is None else quotas.shown(self.name, self.limit)

    @property
    def percent(self) -> int | None:
        """Used, as a whole percentage of the limit (capped at 100, for bars)."""
        if self.limit is None:
            return None
        return 100 if self.limit == 0 else min(round(100 * self.used / self.limit), 100)

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "in_use": self.used, "unit": self.kind.unit,
                "label": self.kind.label}


def lines(limits: Mapping[str, int], used: Mapping[str, int]) -> list[Line]:
    return [Line(kind, used.get(name, 0), limits.get(name))
            for name, kind in quotas.KINDS.items()]


def from_mirror(mirror: Mirror, keys: Keys, namespace: str) -> list[Line]:
    """A namespace's quota lines as the live hub's mirror holds them (no etcd read)."""
    limits_kv = mirror.get(keys.quota(namespace))
    limits = quotas.limits_from_json(limits_kv.value if limits_kv else None)
    return lines(limits, quotas.usage(mirror.items, keys, namespace))


async def limits_of(namespace: str) -> dict[str, int]:
    kv = await store.etcd().get(store.keys().quota(namespace))
    return quotas.limits_from_json(kv.value if kv else None)


async def report(who: RoleChecks, namespace: str) -> list[Line]:
    """A namespace's limits and use, for someone who may read the namespace."""
    await _existing(who, namespace)
    return await count_lines(namespace)


async def count_lines(namespace: str) -> list[Line]:
    """A namespace's limits and use, counted afresh from etcd."""
    limits = await limits_of(namespace)
    return lines(limits, await _count(store.keys(), namespace, list(quotas.KINDS)))


async def _existing(who: RoleChecks, namespace: str) -> None:
    # The namespace service owns "may this person see it": the same 404.
    from portal.accounts.namespaces import get_namespace

    await get_namespace(who, namespace)


# --- setting them ---------------------------------------------------------------------------------


def parse_changes(values: object) -> dict[str, int | None]:
    """``{"vcpus": 8, "networks": null, ...}`` as given: each kind named
    must be known, each amount a limit (None: no limit). BadRequest names
    the first bad one."""
    if not isinstance(values, dict):
        raise BadRequest("quota: give an object of kind: limit, e.g. {\"vcpus\": 8}")
    found: dict[str, int | None] = {}
    for name, value in values.items():
        if name not in quotas.KINDS:
            raise BadRequest(f"{str(name)[:40]}: not a kind of quota; the kinds are "
                             f"{', '.join(quotas.KINDS)}")
        try:
            found[name] = quotas.parse_amount(name, value)
        except ValueError as exc:
            raise BadRequest(f"{name}: {exc}") from None
    return found


async def set_limits(actor: Actor, namespace: str, changes: object) -> dict[str, int]:
    """Change some of a namespace's limits (a kind given None: no limit;
    kinds not given stay). System admins only. Lowering a limit below what
    the namespace holds removes nothing: only new things are refused."""
    async with audit.recording(actor, namespace, AuditAction.SET_QUOTA, ObjectKind.NAMESPACE,
                               object_name=namespace) as entry:
        await _existing(actor, namespace)
        actor.require_system_admin("set quotas")
        wanted = parse_changes(changes)
        etcd, keys = store.etcd(), store.keys()
        for _ in range(store.REWRITE_ATTEMPTS):
            kv = await etcd.get(keys.quota(namespace))
            limits = quotas.limits_from_json(kv.value if kv else None)
            for name, amount in wanted.items():
                if amount is None:
                    limits.pop(name, None)
                else:
                    limits[name] = amount
            result = await etcd.txn(
                [Compare.unchanged_since(keys.quota(namespace), kv.mod_revision if kv else 0)],
                [Put(keys.quota(namespace), quotas.limits_to_json(limits))])
            if result.succeeded:
                entry.detail = ", ".join(
                    f"{name} {'none' if amount is None else quotas.shown(name, amount)}"
                    for name, amount in wanted.items())[:255]
                return limits
    raise Conflict("the quotas are changing too often right now; try again")


async def start_namespace(namespace: str) -> None:
    """A new namespace's limits: each kind's default as SFCLOUD_DEFAULT_QUOTAS
    changes them; none for ``system``."""
    if namespace == SYSTEM_NAMESPACE:
        return
    keys = store.keys()
    await store.etcd().txn([], [
        Put(keys.quota(namespace), quotas.limits_to_json(
            quotas.defaults(read("SFCLOUD_DEFAULT_QUOTAS")))),
        Delete(keys.quota_fence(namespace))])


async def forget_namespace(namespace: str) -> None:
    keys = store.keys()
    await store.etcd().txn([], [Delete(keys.quota(namespace)),
                                Delete(keys.quota_fence(namespace))])

