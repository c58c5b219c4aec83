"""The portal's handle on etcd: one client per event loop, the key layout,
and the one way a desired record is rewritten.

grpc.aio channels belong to the loop that made them. The ASGI server runs one
loop, but management commands and tests may run several in turn, so clients
are kept per loop rather than per process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

from django.conf import settings

from cloudstate import tls
from cloudstate.etcd import Compare, Delete, Etcd, Put
from cloudstate.keys import Keys
from portal.cloud.errors import Conflict, NotFound

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Etcd] = (
    weakref.WeakKeyDictionary()
)
REWRITE_ATTEMPTS = 8


def new_etcd() -> Etcd:
    """A client of its own (the live hub's watch, a management command),
    with the portal's certificate."""
    return Etcd(settings.CLOUD.etcd_endpoints, tls=tls.portal(settings.CLOUD.pki_dir))


def etcd() -> Etcd:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = new_etcd()
    return client


def keys() -> Keys:
    return Keys(settings.CLOUD.etcd_prefix)


async def forget(spec_key: str, observed_key: str, revision: int, *,
                 also: Iterable[str] = ()) -> bool:
    """Remove an object's desired and observed records (and ``also``: their
    copies) for good, fenced on the revision it was judged at: several
    portal processes may try at once, and only one transaction succeeds."""
    result = await etcd().txn([Compare.unchanged_since(spec_key, revision)],
                              [Delete(spec_key), Delete(observed_key),
                               *(Delete(key) for key in also)])
    return result.succeeded


class _Spec(Protocol):
    def to_json(self) -> bytes: ...


class Rewritable(Protocol):
    """A record of desired state read at a revision (an instance, a network)."""

    @property
    def uuid(self) -> str: ...

    @property
    def spec(self) -> Any: ...

    @property
    def revision(self) -> int: ...


R = TypeVar("R", bound=Rewritable)


async def rewrite(record: R, change: Callable[[R], _Spec], *, key: Callable[[str], str],
                  load: Callable[[str], Awaitable[R | None]], kind: str,
                  copies: Callable[[Any], list[str]] = lambda spec: []) -> R:
    """Rewrite the desired record with ``change``, which sees the latest
    record and may raise to refuse; tried again on a fresh read when another
    writer got there first, so no change is lost. ``key`` names the record's
    key from its uuid, ``load`` reads it again, ``copies`` names the keys
    of the record's copies, written in the same transaction."""
    current = record
    for _ in range(REWRITE_ATTEMPTS):
        spec = change(current)
        value = spec.to_json()
        result = await etcd().txn(
            [Compare.unchanged_since(key(record.uuid), current.revision)],
            [Put(key(record.uuid), value), *(Put(k, value) for k in copies(spec))],
        )
        if result.succeeded:
            return dataclasses.replace(current, spec=spec,  # type: ignore[type-var]
                                       revision=result.revision)
        fresh = await load(record.uuid)
        if fresh is None:
            raise NotFound(f"{kind} {record.uuid} not found")
        current = fresh
    raise Conflict(f"the {kind} is changing too often right now; try again")
