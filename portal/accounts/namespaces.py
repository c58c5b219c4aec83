"""Namespaces and their keys: the service the API and the admin pages share.

``who`` is whoever asks (an API Principal or a portal Access): it carries the
caller's roles and their name for the audit trail. Reading a namespace the
caller can't see is *not found*; changing one they can see but do not manage
is *forbidden*. Every change, and every refused attempt, is audited.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from cloudstate import validation
from portal.accounts import audit, keys, notify
from portal.accounts.models import SYSTEM_NAMESPACE, ApiKey, Membership, Namespace
from portal.accounts.roles import RoleChecks
from portal.cloud import ownership
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

KIND = "namespace"
KEY_KIND = "key"
MAX_METADATA_KEYS = 100


def _key_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("key_name: a key needs a name")
    return validation.namespace_name(value, "key_name")


async def list_namespaces(who: RoleChecks) -> list[Namespace]:
    """The namespaces the caller may see, each with its keys."""
    queryset = Namespace.objects.prefetch_related("keys")
    if who.visible is not None:
        queryset = queryset.filter(name__in=who.visible)
    return [ns async for ns in queryset]


async def get_namespace(who: RoleChecks, name: str) -> Namespace:
    if not isinstance(name, str) or not who.can_read(name):
        raise NotFound(f"namespace {name} not found")
    found = await Namespace.objects.prefetch_related("keys").filter(name=name).afirst()
    if found is None:
        raise NotFound(f"namespace {name} not found")
    return found


async def require_open(name: str) -> None:
    """Refuse new objects in a namespace that is gone or being deleted.
    Creators call this before writing anything."""
    state = await Namespace.objects.filter(name=name).values_list("state", flat=True).afirst()
    if state is None:
        raise NotFound(f"namespace {name} not found")
    if state != "created":
        raise Conflict(f"namespace {name} is being deleted")


async def create_namespace(who: RoleChecks, name: Any, *, source: str | None,
                           key_name: Any = None, key: Any = None) -> Namespace:
    async with audit.recording(who, str(name)[:63], "create", KIND, object_name=str(name)[:63],
                               source=source):
        who.require_system_admin("create namespaces")
        name = validation.namespace_name(name)
        if key is not None or key_name is not None:
            key_name, key = _key_name(key_name), keys.check_secret(key)
        try:
            namespace = await _create(name, key_name, key)
        except IntegrityError:
            raise Conflict(f"a namespace named {name} already exists") from None
    if key_name:
        await audit.record(who, name, "create", KEY_KIND, object_name=key_name, source=source)
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


async def delete_namespace(who: RoleChecks, name: str, *, source: str | None) -> None:
    async with audit.recording(who, name, "delete", KIND, object_name=name, source=source):
        if name == SYSTEM_NAMESPACE and who.can_read(name):
            raise Forbidden("the system namespace cannot be deleted")
        await get_namespace(who, name)
        who.require_system_admin("delete namespaces")
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
        members = [uid async for uid in Membership.objects.filter(
            namespace__name=name).values_list("user_id", flat=True)]
        await Namespace.objects.filter(name=name).adelete()
    await notify.access_changed(members)


async def set_key(who: RoleChecks, namespace: str, key_name: Any, secret: Any, *,
                  source: str | None, must_exist: bool = False,
                  must_be_new: bool = False) -> tuple[ApiKey, bool]:
    """Add a key, or give an existing one a new secret (which ends the
    tokens issued from it). Returns the key and whether it is new."""
    action = "create" if must_be_new else "rotate" if must_exist else "set"
    async with audit.recording(who, namespace, action, KEY_KIND,
                               object_name=str(key_name)[:63], source=source) as entry:
        target = await get_namespace(who, namespace)
        who.require_admin(namespace, f"namespace {namespace}")
        key_name = _key_name(key_name)
        secret = keys.check_secret(secret)
        exists = await ApiKey.objects.filter(namespace=target, name=key_name).aexists()
        if must_be_new and exists:
            raise Conflict(f"namespace {namespace} already has a key named {key_name}; "
                           "use PUT to give it a new secret")
        if must_exist and not exists:
            raise NotFound(f"namespace {namespace} has no key named {key_name}")
        try:
            key, created = await keys.set_key(target, key_name, secret)
        except IntegrityError:
            raise Conflict(
                f"another key of namespace {namespace} already has that secret") from None
        entry.detail = "new key" if created else "new secret; tokens issued before end now"
    return key, created


async def delete_key(who: RoleChecks, namespace: str, key_name: str, *,
                     source: str | None) -> None:
    async with audit.recording(who, namespace, "delete", KEY_KIND, object_name=key_name,
                               source=source):
        target = await get_namespace(who, namespace)
        who.require_admin(namespace, f"namespace {namespace}")
        deleted, _ = await ApiKey.objects.filter(namespace=target, name=key_name).adelete()
        if not deleted:
            raise NotFound(f"namespace {namespace} has no key named {key_name}")


async def set_metadata(who: RoleChecks, namespace: str, key: str, value: Any, *,
                       source: str | None) -> dict[str, Any]:
    async with audit.recording(who, namespace, "set-metadata", KIND, object_name=namespace,
                               detail=key, source=source):
        target = await get_namespace(who, namespace)
        who.require_admin(namespace, f"namespace {namespace}")
        if not key or len(key) > 255:
            raise BadRequest("metadata key: must be 1-255 characters")
        metadata = dict(target.metadata)
        if key not in metadata and len(metadata) >= MAX_METADATA_KEYS:
            raise BadRequest(f"metadata: at most {MAX_METADATA_KEYS} keys per namespace")
        metadata[key] = value
        await Namespace.objects.filter(pk=target.pk).aupdate(metadata=metadata)
    return metadata


async def delete_metadata(who: RoleChecks, namespace: str, key: str, *,
                          source: str | None) -> dict[str, Any]:
    async with audit.recording(who, namespace, "delete-metadata", KIND, object_name=namespace,
                               detail=key, source=source):
        target = await get_namespace(who, namespace)
        who.require_admin(namespace, f"namespace {namespace}")
        metadata = dict(target.metadata)
        if key not in metadata:
            raise NotFound(f"namespace {namespace} has no metadata key {key}")
        del metadata[key]
        await Namespace.objects.filter(pk=target.pk).aupdate(metadata=metadata)
    return metadata

