"""The one place sfcloud talks to etcd.

A thin layer over aetcd (asyncio gRPC) that adds what aetcd leaves to its
callers: plain immutable results, failover between endpoints, watches that
survive an etcd restart by resuming from the last revision they delivered,
and leases that are kept alive (and re-granted after they were lost).

Errors come out as two exceptions only: ``EtcdUnavailable`` when no member
answers (the portal turns it into a 503) and ``Compacted`` when a watch asks
for history etcd no longer has (the caller re-lists).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions as aetcd_errors
from aetcd.utils import prefix_range_end

log = logging.getLogger(__name__)

# gRPC keepalives let a dead TCP connection be noticed in seconds rather than
# after the kernel gives up; etcd refuses pings more often than every 5 s.
_CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,
}
_UNAVAILABLE_CODES = {
    aetcd.rpc.StatusCode.UNAVAILABLE,
    aetcd.rpc.StatusCode.DEADLINE_EXCEEDED,
    aetcd.rpc.StatusCode.INTERNAL,
}
_UNAVAILABLE = (
    aetcd_errors.ConnectionFailedError,
    aetcd_errors.ConnectionTimeoutError,
    aetcd_errors.InternalError,
)


class EtcdUnavailable(Exception):
    """No etcd member answered."""


class Compacted(Exception):
    """A watch asked for a revision etcd has already compacted away."""

    def __init__(self, revision: int):
        super().__init__(f"etcd history compacted below revision {revision}")
        self.revision = revision


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)

    @classmethod
    def _from_aetcd(cls, kv: Any) -> KeyValue:
        return cls(
            key=kv.key.decode(),
            value=bytes(kv.value),
            mod_revision=kv.mod_revision,
            create_revision=kv.create_revision,
            version=kv.version,
            lease=kv.lease,
        )


@dataclass(frozen=True)
class WatchEvent:
    """One change. For a delete, ``kv.value`` is empty and ``kv.mod_revision``
    is the revision of the deletion."""

    kind: str  # "put" or "delete"
    kv: KeyValue

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int


# --- transaction building blocks --------------------------------------------
# Small value objects so callers never touch protobuf or aetcd.


@dataclass(frozen=True)
class Compare:
    target: str  # "version", "mod" or "value"
    key: str
    expected: Any

    @classmethod
    def absent(cls, key: str) -> Compare:
        return cls("version", key, 0)

    @classmethod
    def unchanged_since(cls, key: str, mod_revision: int) -> Compare:
        """True if the key was last written at ``mod_revision`` (0: absent)."""
        return cls("mod", key, mod_revision)

    @classmethod
    def value_is(cls, key: str, value: bytes | str | dict | list) -> Compare:
        return cls("value", key, value)

    def _to_proto(self) -> Any:
        compare = aetcd.rpc.Compare(key=self.key.encode(), result=aetcd.rpc.Compare.EQUAL)
        if self.target == "version":
            compare.target = aetcd.rpc.Compare.VERSION
            compare.version = int(self.expected)
        elif self.target == "mod":
            compare.target = aetcd.rpc.Compare.MOD
            compare.mod_revision = int(self.expected)
        elif self.target == "value":
            compare.target = aetcd.rpc.Compare.VALUE
            compare.value = _to_bytes(self.expected)
        else:
            raise ValueError(f"unknown comparison {self.target!r}")
        return compare


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes | str | dict | list
    lease: int | None = None

    def _to_proto(self) -> Any:
        request = aetcd.rpc.PutRequest(
            key=self.key.encode(), value=_to_bytes(self.value), lease=self.lease or 0
        )
        return aetcd.rpc.RequestOp(request_put=request)


@dataclass(frozen=True)
class Delete:
    key: str
    prefix: bool = False

    def _to_proto(self) -> Any:
        key = self.key.encode()
        request = aetcd.rpc.DeleteRangeRequest(key=key)
        if self.prefix:
            request.range_end = prefix_range_end(key)
        return aetcd.rpc.RequestOp(request_delete_range=request)


def _to_bytes(value: bytes | str | dict | list) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class Etcd:
    """An asyncio etcd client bound to the event loop that first uses it."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], timeout: float = 5.0):
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._endpoints = list(endpoints)
        self._current = 0
        self._timeout = timeout
        self._client: aetcd.Client | None = None
        self._reconnect_lock = asyncio.Lock()

    # --- connection management --------------------------------------------

    def _new_client(self) -> aetcd.Client:
        host, port = self._endpoints[self._current]
        return aetcd.Client(host=host, port=port, timeout=self._timeout, options=_CHANNEL_OPTIONS)

    async def _get_client(self) -> aetcd.Client:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    async def _fail_over(self, broken: aetcd.Client | None) -> None:
        """Drop a client that failed and move to the next endpoint."""
        async with self._reconnect_lock:
            if self._client is not broken or broken is None:
                return  # somebody already replaced it
            self._client = None
            if len(self._endpoints) > 1:
                self._current = (self._current + 1) % len(self._endpoints)
            try:
                await broken.close()
            except Exception:  # noqa: BLE001 - closing a broken channel may fail too
                log.debug("closing a failed etcd client raised", exc_info=True)

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run one unary call, trying each endpoint once before giving up."""
        last: Exception | None = None
        for _ in range(len(self._endpoints)):
            client = await self._get_client()
            try:
                return await getattr(client, name)(*args, **kwargs)
            except _UNAVAILABLE as exc:
                last = exc
                await self._fail_over(client)
        raise EtcdUnavailable(str(last)) from last

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # --- key/value ----------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        result = await self._call("get", key.encode())
        return None if result is None else KeyValue._from_aetcd(result)

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys under ``prefix`` and the store revision they were read at."""
        result = await self._call("get_prefix", prefix.encode())
        return [KeyValue._from_aetcd(kv) for kv in result.kvs], result.header.revision

    async def revision(self) -> int:
        """The current store revision (a cheap read of one absent key)."""
        result = await self._call("get_range", b"\0", b"\0", sort_order=None)
        return result.header.revision

    async def put(
        self, key: str, value: bytes | str | dict | list, lease: int | None = None
    ) -> int:
        result = await self._call("put", key.encode(), _to_bytes(value), lease=lease)
        return result.header.revision

    async def delete(self, key: str) -> bool:
        result = await self._call("delete", key.encode())
        return result is not None and bool(result.deleted)

    async def delete_prefix(self, prefix: str) -> int:
        result = await self._call("delete_prefix", prefix.encode())
        return int(result.deleted)

    async def txn(
        self,
        compare: Iterable[Compare],
        success: Iterable[Put | Delete],
        failure: Iterable[Put | Delete] = (),
    ) -> TxnResult:
        request = aetcd.rpc.TxnRequest(
            compare=[c._to_proto() for c in compare],
            success=[op._to_proto() for op in success],
            failure=[op._to_proto() for op in failure],
        )
        # aetcd's transaction() hides the response header, and the revision a
        # transaction committed at is what callers fence later writes on.
        last: Exception | None = None
        for _ in range(len(self._endpoints)):
            client = await self._get_client()
            try:
                await client.connect()
                response = await client.kvstub.Txn(
                    request, timeout=self._timeout, metadata=client.metadata
                )
                return TxnResult(succeeded=response.succeeded, revision=response.header.revision)
            except aetcd.rpc.AioRpcError as exc:
                if exc.code() not in _UNAVAILABLE_CODES:
                    raise
                last = exc
                await self._fail_over(client)
        raise EtcdUnavailable(str(last)) from last

    async def compact(self, revision: int) -> None:
        await self._call("compact", revision, physical=True)

    # --- leases -------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        lease = await self._call("lease", ttl)
        return int(lease.id)

    async def refresh_lease(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL (0 if it had expired)."""
        reply = await self._call("refresh_lease", lease_id)
        return 0 if reply is None else int(reply.TTL)

    async def revoke_lease(self, lease_id: int) -> None:
        await self._call("revoke_lease", lease_id)

    async def hold_lease(
        self,
        ttl: int,
        attach: Callable[[int], Awaitable[None]],
        *,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """Keep a lease alive for as long as the calling task runs.

        ``attach(lease_id)`` writes the keys that belong on the lease. If the
        lease is lost (etcd was unreachable for longer than ``ttl``), a new
        one is granted and ``attach`` runs again, so the keys come back by
        themselves. The lease is revoked when the task is cancelled.
        """
        lease_id = 0
        try:
            while True:
                try:
                    if not lease_id:
                        lease_id = await self.grant_lease(ttl)
                        await attach(lease_id)
                    await asyncio.sleep(max(ttl / 3, 0.5))
                    if await self.refresh_lease(lease_id) <= 0:
                        log.warning("etcd lease %x expired; granting a new one", lease_id)
                        lease_id = 0
                        if on_lost:
                            on_lost()
                except EtcdUnavailable as exc:
                    log.warning("etcd unavailable while keeping a lease: %s", exc)
                    await asyncio.sleep(1.0)
        finally:
            if lease_id:
                try:
                    await asyncio.shield(self.revoke_lease(lease_id))
                except Exception:  # noqa: BLE001 - best effort; the TTL cleans up anyway
                    log.debug("revoking lease %x failed", lease_id, exc_info=True)

    # --- watches ------------------------------------------------------------

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[list[WatchEvent]]:
        """Every change under ``prefix`` from ``start_revision`` on, in order.

        Yields lists of events that share one revision (one transaction).
        When the stream breaks (etcd restarted, a member died) it reconnects
        and resumes from the next undelivered revision, so callers see no gap
        and no duplicate. Raises ``Compacted`` if that revision is gone.
        """
        next_revision = start_revision
        backoff = 0.1
        key = prefix.encode()
        while True:
            client = await self._get_client()
            stop = asyncio.Event()
            create = aetcd.rpc.WatchRequest(
                create_request=aetcd.rpc.WatchCreateRequest(
                    key=key, range_end=prefix_range_end(key), start_revision=next_revision
                )
            )

            async def requests(create: Any = create, stop: asyncio.Event = stop) -> Any:
                # The request stream must stay open: closing it ends the watch.
                yield create
                await stop.wait()

            call = None
            try:
                await client.connect()
                call = aetcd.rpc.WatchStub(client.channel).Watch(
                    requests(), metadata=client.metadata
                )
                async for response in call:
                    if response.compact_revision:
                        raise Compacted(response.compact_revision)
                    if response.canceled:
                        raise aetcd_errors.ClientError(response.cancel_reason or "watch canceled")
                    backoff = 0.1
                    # etcd never splits one revision across responses (we do
                    # not ask for fragments), so each response is complete.
                    for batch in _by_revision(response.events):
                        yield batch
                        next_revision = batch[-1].revision + 1
            except (aetcd.rpc.AioRpcError, aetcd_errors.ClientError) as exc:
                log.info("etcd watch on %s broke (%s); resuming at %d", prefix, exc, next_revision)
                await self._fail_over(client)
                await asyncio.sleep(backoff + random.uniform(0, backoff))
                backoff = min(backoff * 2, 5.0)
            finally:
                stop.set()
                if call is not None:
                    call.cancel()


def _by_revision(raw_events: Iterable[Any]) -> Iterable[list[WatchEvent]]:
    batch: list[WatchEvent] = []
    for raw in raw_events:
        event = WatchEvent(
            kind="delete" if raw.type == aetcd.rpc.Event.DELETE else "put",
            kv=KeyValue._from_aetcd(raw.kv),
        )
        if batch and batch[0].revision != event.revision:
            yield batch
            batch = []
        batch.append(event)
    if batch:
        yield batch
