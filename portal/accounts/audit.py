"""The audit trail: who did what to which object, through which door and from
where, and how it ended.

Only the service layer writes it (portal/cloud/ for cloud objects,
accounts.namespaces and accounts.people for namespaces, keys and people),
with the Actor it was given, for every change it is asked for, whichever
door it came through: a success, a refusal and a failure alike. Never pass a
secret in ``detail``.

    async with audit.recording(actor, ns, AuditAction.DELETE, ObjectKind.NETWORK,
                               object_id=uuid, object_name=name) as entry:
        actor.require_operate(ns, f"network {uuid}")
        ...
        entry.detail = "..."

(``recording_now`` and ``record_now`` are the same for synchronous code.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from cloudstate.validation import ValidationError
from portal.accounts.actor import Actor
from portal.accounts.models import AuditEvent
from portal.cloud.errors import CloudError, Forbidden, NotFound

log = logging.getLogger(__name__)

Outcome = AuditEvent.Outcome
MAX_DETAIL = 2000


@dataclass
class Entry:
    """What will be written; the body of ``recording`` may fill in the
    object once it knows it, and a detail."""

    namespace: str | None
    action: str
    kind: str
    object_id: str = ""
    object_name: str = ""
    detail: str = ""
    outcome: str = Outcome.OK

    def row(self, actor: Actor) -> AuditEvent:
        return AuditEvent(
            actor=actor.name[:200], namespace=(self.namespace or "")[:63],
            action=str(self.action)[:40], object_kind=str(self.kind)[:40],
            object_id=str(self.object_id or "")[:100],
            object_name=str(self.object_name or "")[:255], outcome=self.outcome,
            detail=(self.detail or "")[:MAX_DETAIL], via=actor.via, source=actor.address,
        )

    def ended_by(self, exc: BaseException) -> None:
        """Turn a success into the refusal or failure ``exc`` says."""
        self.outcome = outcome_of(exc)
        self.detail = str(getattr(exc, "message", None) or str(exc) or type(exc).__name__)


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, Forbidden):
        return Outcome.DENIED
    if isinstance(exc, ValidationError | NotFound) or (
            isinstance(exc, CloudError) and 400 <= exc.status < 500):
        return Outcome.REFUSED
    return Outcome.FAILED


def _logged(row: AuditEvent) -> None:
    log.info("audit: %s via %s %s %s %s/%s in %s: %s", row.actor, row.via or "-", row.action,
             row.object_kind, row.object_id, row.object_name, row.namespace or "-", row.outcome)


async def write(actor: Actor, entry: Entry) -> None:
    row = entry.row(actor)
    await row.asave()
    _logged(row)


def write_now(actor: Actor, entry: Entry) -> None:
    """``write`` for synchronous code (forms, signals)."""
    row = entry.row(actor)
    row.save()
    _logged(row)


def record_repeat_now(actor: Actor, namespace: str | None, action: str, kind: str, *,
                      same: tuple[str, ...], object_id: str = "", object_name: str = "",
                      outcome: str = Outcome.OK, detail: str = "") -> AuditEvent:
    """Record an attempt that may come in a flood (a failed or throttled
    log-in): the first within the window writes a row, the others only
    count on it. ``same`` names the row's fields that make attempts "the
    same" besides action, kind and outcome, e.g. ("object_name",) for one
    account, ("source",) for one address. Returns the row."""
    row = Entry(namespace, action, kind, object_id, object_name, detail, outcome).row(actor)
    now = timezone.now()
    window = timedelta(seconds=settings.LOGIN_FAILURE_WINDOW)
    match = {name: getattr(row, name) for name in ("action", "object_kind", "outcome", *same)}
    earlier = AuditEvent.objects.filter(when__gte=now - window, **match).order_by("-when").first()
    if earlier is not None:
        AuditEvent.objects.filter(pk=earlier.pk).update(repeats=F("repeats") + 1, last_at=now)
        earlier.refresh_from_db(fields=["repeats", "last_at"])
        return earlier
    row.save()
    _logged(row)
    return row


async def record(actor: Actor, namespace: str | None, action: str, kind: str, *,
                 object_id: str = "", object_name: str = "", outcome: str = Outcome.OK,
                 detail: str = "") -> None:
    await write(actor, Entry(namespace, action, kind, object_id, object_name, detail, outcome))


def record_now(actor: Actor, namespace: str | None, action: str, kind: str, *,
               object_id: str = "", object_name: str = "", outcome: str = Outcome.OK,
               detail: str = "") -> None:
    write_now(actor, Entry(namespace, action, kind, object_id, object_name, detail, outcome))


@asynccontextmanager
async def recording(actor: Actor, namespace: str | None, action: str, kind: str, *,
                    object_id: str = "", object_name: str = "", detail: str = ""
                    ) -> AsyncIterator[Entry]:
    """Record the action once it ends: done, or refused/denied/failed with
    the error's message as the detail (the error still propagates)."""
    entry = Entry(namespace, action, kind, object_id, object_name, detail)
    try:
        yield entry
    except Exception as exc:
        entry.ended_by(exc)
        await write(actor, entry)
        raise
    await write(actor, entry)


@contextmanager
def recording_now(actor: Actor, namespace: str | None, action: str, kind: str, *,
                  object_id: str = "", object_name: str = "", detail: str = ""
                  ) -> Iterator[Entry]:
    """``recording`` for synchronous code."""
    entry = Entry(namespace, action, kind, object_id, object_name, detail)
    try:
        yield entry
    except Exception as exc:
        entry.ended_by(exc)
        write_now(actor, entry)
        raise
    write_now(actor, entry)


async def prune() -> int:
    """Forget audit records older than the retention period (0: keep them
    forever); returns how many went."""
    if settings.AUDIT_RETENTION_DAYS <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    deleted, _ = await AuditEvent.objects.filter(when__lt=cutoff).adelete()
    return deleted
