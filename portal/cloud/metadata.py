"""Metadata ("tags" in the portal): small key/value pairs on an object.

One implementation for every kind of object that keeps its metadata in its
desired record in etcd (instances, networks, nodes, artifacts, blobs, security
groups): the same key rules and size limits (cloudstate.metadata), the same
audit row and the same event.
A new kind plugs in with its ``update`` function in ``_REWRITERS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from cloudstate import metadata as rules
from cloudstate.validation import shown
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import artifacts, blobs, changes, instances, networks, nodes, secgroups
from portal.cloud.changes import Later, given
from portal.cloud.errors import NotFound


class _Spec(Protocol):
    name: str
    namespace: str
    metadata: dict[str, Any]

    def replace(self, **changes: Any) -> Any: ...


class Holder(Protocol):
    """A record whose desired spec carries metadata."""

    kind: ObjectKind

    @property
    def uuid(self) -> str: ...

    @property
    def spec(self) -> _Spec: ...


H = TypeVar("H", bound=Holder)
Rewriter = Callable[[Any, Callable[[Any], Any]], Awaitable[Any]]

_REWRITERS: dict[ObjectKind, Rewriter] = {
    ObjectKind.INSTANCE: instances.update,
    ObjectKind.NETWORK: networks.update,
    ObjectKind.NODE: nodes.update,
    ObjectKind.IMAGE: artifacts.update,
    ObjectKind.BLOB: blobs.update,
    ObjectKind.SECURITY_GROUP: secgroups.update,
}


async def set_item(actor: Actor, record: H, key: object | Later[object],
                   value: Any | Later[Any]) -> H:
    kind = record.kind
    async with _changing(actor, record, AuditAction.SET_METADATA,
                         "" if isinstance(key, Later) else key) as entry:
        key = rules.validate_key(given(key))
        entry.detail = key
        value = rules.validate_value(given(value))

        def change(current: H) -> Any:
            spec = current.spec
            return spec.replace(metadata=rules.with_item(spec.metadata, key, value, kind))

        updated = await _REWRITERS[kind](record, change)
    await changes.event(actor, kind, record.uuid, f"metadata {key} set",
                        operation=AuditAction.SET_METADATA, key=key, value=value)
    return updated


async def delete_item(actor: Actor, record: H, key: str) -> H:
    kind = record.kind

    def change(current: H) -> Any:
        spec = current.spec
        if key not in spec.metadata:
            raise NotFound(f"{kind} {spec.name} has no metadata key {shown(key)}")
        return spec.replace(metadata={k: v for k, v in spec.metadata.items() if k != key})

    async with _changing(actor, record, AuditAction.DELETE_METADATA, key):
        updated = await _REWRITERS[kind](record, change)
    await changes.event(actor, kind, record.uuid, f"metadata {key} deleted",
                        operation=AuditAction.DELETE_METADATA, key=key)
    return updated


def _changing(actor: Actor, record: Holder, action: AuditAction,
              key: object) -> AbstractAsyncContextManager[Any]:
    return changes.changing(actor, action, record.kind, namespace=record.spec.namespace,
                            object_id=record.uuid, object_name=record.spec.name,
                            detail=str(key)[:200])
