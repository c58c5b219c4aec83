"""The audit trail: who did what to which object, from where, and how it ended.

The service layer calls ``record`` (or wraps an action in ``recording``)
for every change it makes, whoever asked: a person in the portal, a key or
a personal token through the API. Never pass a secret in ``detail``.

    await audit.record(who, "demo", "create", "instance", object_id=uuid,
                       object_name="web-1", source=audit.source_of(request))

    async with audit.recording(who, ns, "delete", "network", source=...) as entry:
        network = await networks.delete(...)
        entry.object_id = network.uuid

(``record_now`` and ``recording_now`` are the same for synchronous code.)

``who`` is a Principal (API), a user (pages), or a plain string.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from cloudstate.validation import ValidationError
from portal.accounts.models import AuditEvent
from portal.cloud.errors import CloudError, Forbidden, NotFound

log = logging.getLogger(__name__)

Outcome = AuditEvent.Outcome
MAX_DETAIL = 2000


def actor_name(who: Any) -> str:
    if who is None:
        return "anonymous"
    if isinstance(who, str):
        return who
    if hasattr(who, "get_username"):
        return who.get_username() or "anonymous"
    name = getattr(who, "name", None)  # a Principal
    return str(name) if name else str(who)


def source_of(request: Any) -> str | None:
    """The client's address from an HTTP request or a websocket scope."""
    if request is None:
        return None
    if isinstance(request, dict):  # an ASGI scope
        client = request.get("client")
        return client[0] if client else None
    return request.META.get("REMOTE_ADDR") or None


def _event(who: Any, namespace: str | None, action: str, kind: str, object_id: str,
           object_name: str, outcome: str, detail: str, source: str | None) -> AuditEvent:
    return AuditEvent(
        actor=actor_name(who)[:200], namespace=(namespace or "")[:63], action=action[:40],
        object_kind=kind[:40], object_id=str(object_id or "")[:100],
        object_name=str(object_name or "")[:255], outcome=outcome,
        detail=(detail or "")[:MAX_DETAIL], source=source or None,
    )


async def record(who: Any, namespace: str | None, action: str, kind: str, *,
                 object_id: str = "", object_name: str = "", outcome: str = Outcome.OK,
                 detail: str = "", source: str | None = None) -> None:
    event = _event(who, namespace, action, kind, object_id, object_name, outcome, detail,
                   source)
    await event.asave()
    log.info("audit: %s %s %s %s/%s in %s: %s", event.actor, event.action, event.object_kind,
             event.object_id, event.object_name, event.namespace or "-", event.outcome)


def record_now(who: Any, namespace: str | None, action: str, kind: str, *,
               object_id: str = "", object_name: str = "", outcome: str = Outcome.OK,
               detail: str = "", source: str | None = None) -> None:
    """``record`` for synchronous code (forms, signals)."""
    event = _event(who, namespace, action, kind, object_id, object_name, outcome, detail,
                   source)
    event.save()
    log.info("audit: %s %s %s %s/%s in %s: %s", event.actor, event.action, event.object_kind,
             event.object_id, event.object_name, event.namespace or "-", event.outcome)


@dataclass
class Entry:
    """What ``recording`` will write; the body may fill in the object."""

    object_id: str = ""
    object_name: str = ""
    detail: str = ""
    namespace: str | None = None


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, Forbidden):
        return Outcome.DENIED
    if isinstance(exc, ValidationError | NotFound) or (
            isinstance(exc, CloudError) and 400 <= exc.status < 500):
        return Outcome.REFUSED
    return Outcome.FAILED


@asynccontextmanager
async def recording(who: Any, namespace: str | None, action: str, kind: str, *,
                    object_id: str = "", object_name: str = "", detail: str = "",
                    source: str | None = None) -> AsyncIterator[Entry]:
    """Record the action once it ends: done, or refused/denied/failed with
    the error's message as the detail (the error still propagates)."""
    entry = Entry(object_id=object_id, object_name=object_name, detail=detail,
                  namespace=namespace)
    try:
        yield entry
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        await record(who, entry.namespace, action, kind, object_id=entry.object_id,
                     object_name=entry.object_name, outcome=outcome_of(exc),
                     detail=str(message), source=source)
        raise
    await record(who, entry.namespace, action, kind, object_id=entry.object_id,
                 object_name=entry.object_name, detail=entry.detail, source=source)


@contextmanager
def recording_now(who: Any, namespace: str | None, action: str, kind: str, *,
                  object_id: str = "", object_name: str = "", detail: str = "",
                  source: str | None = None) -> Iterator[Entry]:
    """``recording`` for synchronous code."""
    entry = Entry(object_id=object_id, object_name=object_name, detail=detail,
                  namespace=namespace)
    try:
        yield entry
    except Exception as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        record_now(who, entry.namespace, action, kind, object_id=entry.object_id,
                   object_name=entry.object_name, outcome=outcome_of(exc),
                   detail=str(message), source=source)
        raise
    record_now(who, entry.namespace, action, kind, object_id=entry.object_id,
               object_name=entry.object_name, detail=entry.detail, source=source)


async def prune() -> int:
    """Forget audit records older than the retention period (0: keep them
    forever); returns how many went."""
    if settings.AUDIT_RETENTION_DAYS <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    deleted, _ = await AuditEvent.objects.filter(when__lt=cutoff).adelete()
    return deleted
