"""One-time console tickets.

A page asks for a ticket over its logged-in session and hands it to the
console websocket as its first message, so a ticket is never in a URL, a
log line or a Referer. etcd holds only a hash of it, with what it is bound
to (the person, the instance, the console kind and the node), on a lease
that removes it after its lifetime; using it deletes it in a transaction
that compares its revision, so of several portal processes racing for one
ticket exactly one wins.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from cloudstate.etcd import Compare, Delete, Etcd
from cloudstate.keys import Keys

MAX_TTL = 60.0


@dataclass(frozen=True)
class Ticket:
    user_id: int
    instance: str
    kind: str
    node: str
    read_only: bool
    expires_at: float

    def matches(self, *, user_id: int, instance: str, kind: str) -> bool:
        return (self.user_id == user_id and self.instance == instance and self.kind == kind
                and self.expires_at >= time.time())


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue(etcd: Etcd, keys: Keys, *, user_id: int, instance: str, kind: str, node: str,
                read_only: bool, ttl: float = MAX_TTL) -> str:
    ttl = min(ttl, MAX_TTL)
    ticket = secrets.token_urlsafe(32)
    record = Ticket(user_id=user_id, instance=instance, kind=kind, node=node,
                    read_only=read_only, expires_at=time.time() + ttl)
    lease = await etcd.grant_lease(max(1, math.ceil(ttl)))
    await etcd.put(keys.console_ticket(_digest(ticket)), asdict(record), lease=lease)
    return ticket


async def consume(etcd: Etcd, keys: Keys, ticket: Any) -> Ticket | None:
    """The ticket's binding if it existed, was unexpired and this call used
    it up; None otherwise (also when another caller used it first)."""
    if not isinstance(ticket, str) or not 20 <= len(ticket) <= 100:
        return None
    key = keys.console_ticket(_digest(ticket))
    kv = await etcd.get(key)
    if kv is None:
        return None
    result = await etcd.txn([Compare.unchanged_since(key, kv.mod_revision)], [Delete(key)])
    if not result.succeeded:
        return None
    try:
        found = Ticket(**kv.json())
    except (TypeError, ValueError):
        return None
    return found if found.expires_at >= time.time() else None
