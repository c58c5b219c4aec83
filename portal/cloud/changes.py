"""How a service makes a change on someone's behalf, the same way for every
kind of object and whichever door the Actor came through:

    async with changes.changing(actor, AuditAction.DELETE, ObjectKind.INSTANCE,
                                namespace=spec.namespace, object_id=uuid,
                                object_name=spec.name) as entry:
        ...  # the change itself; raise to refuse
    await changes.event(actor, ObjectKind.INSTANCE, uuid, "deletion requested")

``changing`` checks the Actor's role in the object's namespace (404 for an
Actor who can't see it, 403 for one who may only look) and writes the audit
row when the change ends, refused or not. ``event`` writes the object's own
event, naming the Actor as the audit row does.

A front door may hand a service its input as ``Later(parse)``: the service
reads it only once the role check has passed, so someone who may not make
the change hears "forbidden" whatever they sent, and a refusal of bad input
is audited like any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cloudstate.vocabulary import EventType, ObjectKind
from portal.accounts import audit
from portal.accounts.actor import Actor
from portal.cloud.errors import BadRequest
from portal.events import log as eventlog

T = TypeVar("T")


@dataclass(frozen=True)
class Later(Generic[T]):
    """Input to read (and check) once the Actor may make the change."""

    read: Callable[[], T]
    name: str = ""  # what the input calls the object, for the audit row of a refusal


def given(value: T | Later[T]) -> T:
    """The input itself: read now if it was handed over as ``Later``."""
    return value.read() if isinstance(value, Later) else value


@asynccontextmanager
async def changing(actor: Actor, action: str, kind: ObjectKind, *, namespace: str,
                   object_id: str = "", object_name: str = "", detail: str = "",
                   what: str | None = None) -> AsyncIterator[audit.Entry]:
    """The audit row around a change to an object of ``namespace``, for an
    Actor who may operate there. ``what`` names the object in a refusal
    (default: "<kind> <object_id>")."""
    async with audit.recording(actor, namespace, action, kind, object_id=object_id,
                               object_name=object_name, detail=detail) as entry:
        actor.require_operate(namespace, what or f"{kind} {object_id}")
        yield entry


def may_delete_all(actor: Actor, kind: ObjectKind, scope: frozenset[str] | None, *,
                   confirm: bool) -> None:
    """Before deleting every ``kind`` of ``scope``: the Actor must operate in
    each namespace asked for, and have confirmed. (The caller then checks
    each object, before deleting any of them.) ``scope`` must name its
    namespaces: no request deletes every namespace's objects at once."""
    if scope is None:
        raise BadRequest(f"namespace: deleting every {kind} needs the namespace named")
    for namespace in sorted(scope or ()):
        actor.require_operate(namespace, f"namespace {namespace}")
    if not confirm:
        raise BadRequest(f"confirm: deleting every {kind} needs {{\"confirm\": true}}")


async def event(actor: Actor, kind: ObjectKind, uuid: str, what: str, *,
                operation: str | None = None, type: EventType = EventType.AUDIT,
                **extra: Any) -> None:
    """The object's event: ``what`` happened, asked for by the Actor;
    ``operation`` is the audit action it was (create, poweroff...)."""
    await eventlog.record(kind, uuid, f"{what} by {actor.name}", type=type,
                          operation=operation, extra={**extra, "actor": actor.name})
