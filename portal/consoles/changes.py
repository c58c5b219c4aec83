"""What people do to console sessions, audited in one place: opening one
(the console websocket, once the ticket and the person's role check out)
and ending someone's (an admin of the system namespace)."""

from __future__ import annotations

from cloudstate.consoles import ConsoleSession
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import store
from portal.consoles import sessions

KIND = ObjectKind.CONSOLE


async def opened(actor: Actor, session: ConsoleSession) -> None:
    await audit.record(actor, session.namespace, AuditAction.OPEN, KIND,
                       object_id=session.instance, object_name=session.instance_name,
                       detail=f"{session.kind} console, session {session.id}"
                              + (", read-only" if session.read_only else ""))


async def end(actor: Actor, session_id: str) -> bool:
    """End anyone's session; False if it had ended already."""
    etcd, keys = store.etcd(), store.keys()
    kv = await etcd.get(keys.console_session(session_id))
    session = ConsoleSession.from_json(kv.value) if kv is not None else None
    async with audit.recording(
            actor, session.namespace if session else None, AuditAction.END, KIND,
            object_id=session.instance if session else "",
            object_name=session.instance_name if session else "",
            detail=f"{session.username}'s {session.kind} console, session {session.id}"
            if session else f"session {session_id}") as entry:
        actor.require_system_admin("end other people's consoles")
        ended = await sessions.end(etcd, keys, session_id)
        if not ended:
            entry.detail += " (it had ended already)"
    return ended
