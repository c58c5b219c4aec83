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
from collections.abc import Awaitable, Callable
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


async def forget(spec_key: str, observed_key: str, revision: int, *also: str) -> bool:
    """Remove an object's desired and observed records (and the keys
    ``also`` names: their copies, what they leave to read) for good, fenced
    on the revision it was judged at: several portal processes may try at
    once, and only one transaction succeeds."""
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


Guard = Callable[[Any], Awaitable[tuple[list[Compare], list[Put]]]]


async def rewrite(record: R, change: Callable[[R], _Spec], *, key: Callable[[str], str],
                  load: Callable[[str], Awaitable[R | None]], kind: str,
                  guard: Guard | None = None,
                  copies: Callable[[Any], list[str]] = lambda spec: []) -> R:
    """Rewrite the desired record with ``change``, which sees the latest
    record and may raise to refuse; tried again on a fresh read when another
    writer got there first, so no change is lost. ``key`` names the record's
    key from its uuid, ``load`` reads it again; ``guard(spec)``, if given,
    adds comparisons and writes to each attempt's transaction (a fence);
    ``copies`` names the keys of the record's copies, written in the same
    transaction."""
    current = record
    for _ in range(REWRITE_ATTEMPTS):
        spec = change(current)
        value = spec.to_json()
        compares, puts = await guard(spec) if guard is not None else ([], [])
        result = await etcd().txn(
            [Compare.unchanged_since(key(record.uuid), current.revision), *compares],
            [Put(key(record.uuid), value), *(Put(k, value) for k in copies(spec)), *puts],
        )
        if result.succeeded:
            return dataclasses.replace(current, spec=spec,  # type: ignore[type-var]
                                       revision=result.revision)
        fresh = await load(record.uuid)
        if fresh is None:
            raise NotFound(f"{kind} {record.uuid} not found")
        current = fresh
    raise Conflict(f"the {kind} is changing too often right now; try again")


class Guarded(Protocol):
    """More comparisons and writes for a transaction (a quota's: portal.cloud.quotas)."""

    compares: list[Compare]
    ops: list[Any]


async def insert_named(*, key: str, value: bytes, name_key: str, uuid: str, fence_key: str,
                       taken: str,
                       guard: Callable[[], Awaitable[Guarded]] | None = None) -> None:
    """Write a new record with its name key, where names are unique within a
    namespace: fenced on ``fence_key``, which every such create rewrites, so
    two creates can't both take a name or the last place. ``taken`` is the
    409's message. ``guard``, asked again at every attempt, adds what the
    transaction must also compare and write (a namespace's quota) or refuses."""
    etcd_client = etcd()
    for _ in range(REWRITE_ATTEMPTS * 2):
        fence = await etcd_client.get(fence_key)
        if await etcd_client.get(name_key) is not None:
            raise Conflict(taken)
        extra = await guard() if guard is not None else None
        result = await etcd_client.txn(
            [Compare.absent(name_key),
             Compare.unchanged_since(fence_key, fence.mod_revision if fence else 0),
             *(extra.compares if extra else [])],
            [Put(key, value), Put(name_key, uuid), Put(fence_key, uuid),
             *(extra.ops if extra else [])])
        if result.succeeded:
            return
    raise Conflict("too many changes at once in this namespace right now; try again")
