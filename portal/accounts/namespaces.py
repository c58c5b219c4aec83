"""Namespaces, their keys and metadata: the service the API and the admin
pages share.

Changes take the Actor asking (from the API or a page): it carries their
roles and their name for the audit trail. Reading a namespace the caller
can't see is *not found*; changing one they can see but do not manage is
*forbidden*. Every change, and every refused attempt, is audited here.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from cloudstate import metadata as rules
from cloudstate import validation
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit, keys, notify
from portal.accounts.actor import Actor
from portal.accounts.models import (
    SYSTEM_NAMESPACE,
    ApiKey,
    AuditAction,
    Membership,
    Namespace,
    Trust,
)
from portal.accounts.roles import RoleChecks
from portal.cloud import ownership, quotas
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

KIND = ObjectKind.NAMESPACE
KEY_KIND = ObjectKind.KEY


def _key_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("key_name: a key needs a name")
    return validation.namespace_name(value, "key_name")


def _with_details() -> Any:
    return Namespace.objects.prefetch_related("keys", "trusts__trusted")


async def trusting(who: RoleChecks) -> frozenset[str]:
    """The namespaces that trust one the caller belongs to: the caller may
    see them (not change them), as Shaken Fist's trust allows."""
    names = Trust.objects.filter(trusted__name__in=list(who.memberships)) \
        .values_list("namespace__name", flat=True)
    return frozenset([name async for name in names])


async def readable(who: RoleChecks) -> frozenset[str] | None:
    """The namespaces the caller may see: their own, and those that trust
    one of them (None: all, for a member of system)."""
    if who.visible is None:
        return None
    return who.visible | await trusting(who)


async def list_namespaces(who: RoleChecks) -> list[Namespace]:
    """The namespaces the caller may see, each with its keys and trusts."""
    queryset = _with_details()
    scope = await readable(who)
    if scope is not None:
        queryset = queryset.filter(name__in=scope)
    return [ns async for ns in queryset]


async def get_namespace(who: RoleChecks, name: str) -> Namespace:
    if not isinstance(name, str) or not (who.can_read(name) or name in await trusting(who)):
        raise NotFound(f"namespace {name} not found")
    found = await _with_details().filter(name=name).afirst()
    if found is None:
        raise NotFound(f"namespace {name} not found")
    return found


def trusted_names(namespace: Namespace) -> list[str]:
    """Who ``namespace`` trusts, as Shaken Fist lists it: system first (it
    always is), then the rest by name. Needs the trusts prefetched."""
    return [SYSTEM_NAMESPACE, *sorted(t.trusted.name for t in namespace.trusts.all())]


async def key_names(who: RoleChecks, name: str) -> list[str]:
    """The names of the namespace's keys (never a secret)."""
    namespace = await get_namespace(who, name)
    return sorted(key.name for key in namespace.keys.all())


async def require_open(name: str) -> None:
    """Refuse new objects in a namespace that is gone or being deleted.
    Creators call this before writing anything."""
    state = await Namespace.objects.filter(name=name).values_list("state", flat=True).afirst()
    if state is None:
        raise NotFound(f"namespace {name} not found")
    if state != "created":
        raise Conflict(f"namespace {name} is being deleted")


async def create_namespace(actor: Actor, name: Any, *, key_name: Any = None,
                           key: Any = None) -> Namespace:
    async with audit.recording(actor, str(name)[:63], AuditAction.CREATE, KIND,
                               object_name=str(name)[:63]):
        actor.require_system_admin("create namespaces")
        name = validation.namespace_name(name)
        if key is not None or key_name is not None:
            key_name, key = _key_name(key_name), keys.check_secret(key)
        try:
            namespace = await _create(name, key_name, key)
        except IntegrityError:
            raise Conflict(f"a namespace named {name} already exists") from None
        try:
            await quotas.start_namespace(name)
        except BaseException:
            # Nothing half-made: a namespace without its quotas would be unlimited.
            await Namespace.objects.filter(name=name).adelete()
            raise
    if key_name:
        await audit.record(actor, name, AuditAction.CREATE, KEY_KIND, object_name=key_name)
    return namespace


async def _create(name: str, key_name: str | None, key: str | None) -> Namespace:
    @sync_to_async
    def in_transaction() -> Namespace:
        with transaction.atomic():
            namespace = Namespace.objects.create(name=name)
            if key_name and key:
                ApiKey.objects.create(namespace=namespace, name=key_name,
                                      digest=keys.digest(key))
            return namespace

    return await in_transaction()


async def delete_namespace(actor: Actor, name: str) -> None:
    async with audit.recording(actor, name, AuditAction.DELETE, KIND, object_name=name):
        if name == SYSTEM_NAMESPACE and actor.can_read(name):
            raise Forbidden("the system namespace cannot be deleted")
        await get_namespace(actor, name)
        actor.require_system_admin("delete namespaces")
        # Marked first, so nothing new is made in it while we look. (A delete
        # interrupted here is simply tried again: "deleting" is not a lock.)
        await Namespace.objects.filter(name=name).aupdate(state="deleting")
        try:
            owned = await ownership.owned_by(name)
        except BaseException:
            await Namespace.objects.filter(name=name).aupdate(state="created")
            raise
        if owned:
            await Namespace.objects.filter(name=name).aupdate(state="created")
            raise BadRequest(
                f"namespace {name} still owns {ownership.describe(owned)}: delete them first"
            )
        await ownership.release(name)
        members = [uid async for uid in Membership.objects.filter(
            namespace__name=name).values_list("user_id", flat=True)]
        await Namespace.objects.filter(name=name).adelete()
        await quotas.forget_namespace(name)
    await notify.access_changed(members)


async def set_key(actor: Actor, namespace: str, key_name: Any, secret: Any, *,
                  new: bool) -> ApiKey:
    """Add a key (``new``), or give an existing one a new secret, which ends
    the tokens issued from it."""
    action = AuditAction.CREATE if new else AuditAction.ROTATE
    async with audit.recording(actor, namespace, action, KEY_KIND,
                               object_name=str(key_name)[:63]) as entry:
        target = await _administered(actor, namespace)
        key_name = _key_name(key_name)
        secret = keys.check_secret(secret)
        exists = await ApiKey.objects.filter(namespace=target, name=key_name).aexists()
        if new and exists:
            raise Conflict(f"namespace {namespace} already has a key named {key_name}; "
                           "use PUT to give it a new secret")
        if not new and not exists:
            raise NotFound(f"namespace {namespace} has no key named {key_name}")
        try:
            key, created = await keys.set_key(target, key_name, secret)
        except IntegrityError:
            raise Conflict(
                f"another key of namespace {namespace} already has that secret") from None
        entry.detail = "new key" if created else "new secret; tokens issued before end now"
    return key


async def delete_key(actor: Actor, namespace: str, key_name: str) -> None:
    async with audit.recording(actor, namespace, AuditAction.DELETE, KEY_KIND,
                               object_name=key_name):
        target = await _administered(actor, namespace)
        deleted, _ = await ApiKey.objects.filter(namespace=target, name=key_name).adelete()
        if not deleted:
            raise NotFound(f"namespace {namespace} has no key named {key_name}")


async def set_metadata(actor: Actor, namespace: str, key: str, value: Any) -> dict[str, Any]:
    """Metadata follows the same rules as every other object's (cloudstate.metadata)."""
    async with audit.recording(actor, namespace, AuditAction.SET_METADATA, KIND,
                               object_name=namespace, detail=key):
        target = await _administered(actor, namespace)
        rules.validate_key(key)
        rules.validate_value(value)
        metadata = rules.with_item(target.metadata, key, value, KIND)
        await Namespace.objects.filter(pk=target.pk).aupdate(metadata=metadata)
    return metadata


async def delete_metadata(actor: Actor, namespace: str, key: str) -> dict[str, Any]:
    async with audit.recording(actor, namespace, AuditAction.DELETE_METADATA, KIND,
                               object_name=namespace, detail=key):
        target = await _administered(actor, namespace)
        metadata = dict(target.metadata)
        if key not in metadata:
            raise NotFound(f"namespace {namespace} has no metadata key {key}")
        del metadata[key]
        await Namespace.objects.filter(pk=target.pk).aupdate(metadata=metadata)
    return metadata


async def add_trust(actor: Actor, namespace: str, other: Any) -> Namespace:
    """Let callers of ``other`` see ``namespace`` (done once however often
    asked). System is trusted always, so trusting it changes nothing."""
    async with audit.recording(actor, namespace, AuditAction.TRUST, KIND,
                               object_name=namespace, detail=str(other)[:63]):
        target = await _administered(actor, namespace)
        if not isinstance(other, str) or not other:
            raise BadRequest("external_namespace: name the namespace to trust")
        if other == namespace:
            raise BadRequest(f"external_namespace: namespace {namespace} can't trust itself")
        if other != SYSTEM_NAMESPACE:
            trusted = await Namespace.objects.filter(name=other).afirst()
            if trusted is None:
                raise NotFound(f"namespace {other} not found")
            await Trust.objects.aget_or_create(namespace=target, trusted=trusted)
    return await get_namespace(actor, namespace)


async def remove_trust(actor: Actor, namespace: str, other: str) -> Namespace:
    """Stop trusting ``other``; a trust that isn't there (system's, which
    can't be removed, included) is not an error, as in Shaken Fist."""
    async with audit.recording(actor, namespace, AuditAction.UNTRUST, KIND,
                               object_name=namespace, detail=str(other)[:63]):
        target = await _administered(actor, namespace)
        await Trust.objects.filter(namespace=target, trusted__name=other).adelete()
    return await get_namespace(actor, namespace)


async def _administered(actor: Actor, namespace: str) -> Namespace:
    """The namespace, for an Actor who administers it."""
    target = await get_namespace(actor, namespace)
    if not actor.can_read(namespace):
        raise Forbidden(f"namespace {namespace} trusts yours: you may see it, not change it")
    actor.require_admin(namespace, f"namespace {namespace}")
    return target
