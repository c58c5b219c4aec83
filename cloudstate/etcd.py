"""The one place sfcloud talks to etcd.

A thin layer over aetcd (asyncio gRPC) that adds what aetcd leaves to its
callers: TLS with the cloud's certificates (etcd refuses a client without
one), plain immutable results, failover between endpoints, watches that
survive an etcd restart by resuming from the last revision they delivered,
and leases that are kept alive (and re-granted after they were lost).

Errors come out as two exceptions only: ``EtcdUnavailable`` when no member
answers (the portal turns it into a 503) and ``Compacted`` when a watch asks
for history etcd no longer has (the caller re-lists).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions as aetcd_errors
import grpc
from aetcd import rpc, watcher
from aetcd.utils import prefix_range_end

from cloudstate.metrics import ETCD_SECONDS
from cloudstate.tls import Credentials, TlsError

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHANNEL_OPTIONS = {
    # gRPC keepalives let a dead TCP connection be noticed in seconds rather
    # than after the kernel gives up; etcd refuses pings more often than 5 s.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,
    # gRPC's 4 MiB default would make a large prefix list, or a watch
    # catching up on 1000 revisions, fail the same way on every retry.
    "grpc.max_receive_message_length": -1,
    # etcd is always reached directly; an http_proxy meant for apt or image
    # downloads must not capture it.
    "grpc.enable_http_proxy": 0,
    # By default every channel to one address shares a process-wide
    # connection, with its reconnect backoff (up to two minutes): a fresh
    # channel after a failure would inherit that and keep failing although
    # etcd is back. Our own connection per channel makes fail-over real.
    "grpc.use_local_subchannel_pool": 1,
    "grpc.max_reconnect_backoff_ms": 2_000,
}
# How often, at most, a client looks whether its certificate files changed.
TLS_RECHECK_INTERVAL = 1.0
_UNAVAILABLE_CODES = {
    aetcd.rpc.StatusCode.UNAVAILABLE,
    aetcd.rpc.StatusCode.DEADLINE_EXCEEDED,
    aetcd.rpc.StatusCode.INTERNAL,
    # Sent by the server when a request's context ends on its side (as when
    # it stops); our own cancellations never look like this, grpc.aio raises
    # CancelledError for them.
    aetcd.rpc.StatusCode.CANCELLED,
}
# etcd 3.4 sends errors it has no gRPC code for as UNKNOWN, among them the one
# a write gets while the member shuts down under it; and over TLS, a member
# that closes its connections as it stops leaves calls in flight with UNKNOWN
# "No status received" or "Stream removed (...)": no answer, as above.
# "context deadline exceeded": a member without quorum gives up on a
# request (seen renewing a lease with two of three members stopped).
_UNAVAILABLE_UNKNOWN_DETAILS = ("raft: stopped", "No status received", "Stream removed",
                                "context deadline exceeded")
_UNAVAILABLE = (
    aetcd_errors.ConnectionFailedError,
    aetcd_errors.ConnectionTimeoutError,
    aetcd_errors.InternalError,
)


class EtcdUnavailable(Exception):
    """No etcd member answered. A write that raised this may or may not have
    been applied: fence a retry (``Compare``) if applying it twice matters."""


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


@dataclass(frozen=True)
class PrefixStats:
    """How many keys a prefix holds, and whether any of them was written
    after a given revision, both read at ``revision``."""

    keys: int
    changed: bool
    revision: int


@dataclass(frozen=True)
class MemberStatus:
    """What one etcd member says of itself."""

    member_id: int
    revision: int
    db_size: int  # bytes on disk, free pages included
    db_size_in_use: int  # bytes holding data; the rest is what defragmenting gives back
    leader: bool
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Member:
    """One member of the etcd cluster, as the cluster lists it."""

    member_id: int
    name: str  # empty for a member added but not started yet
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool


@dataclass(frozen=True)
class Alarm:
    member_id: int
    kind: str  # "NOSPACE": the member's database reached its quota


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


class _TlsClient(aetcd.Client):
    """aetcd's client over a TLS channel: aetcd 1.0 only dials plain gRPC.

    The channel verifies etcd's certificate against the cloud's CA (it must
    name the address dialled) and presents this part's certificate, which
    etcd requires (``--client-cert-auth``). This replaces only how the
    channel is made; the stubs are aetcd's.
    """

    def __init__(self, *, host: str, port: int, credentials: grpc.ChannelCredentials,
                 timeout: float, options: dict[str, Any]):
        super().__init__(host=host, port=port, timeout=timeout,  # type: ignore[arg-type]
                         options=options)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        # Nothing here awaits, so two callers can't both get this far.
        self.channel = rpc.secure_channel(f"{self._host}:{self._port}", self._credentials,
                                          options=self._options.items())
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                        metadata=self.metadata)
        self._connected.set()


class _Connection:
    """One gRPC channel and the number of calls currently using it.

    Closing a grpc.aio channel cancels every call on it, and each of those
    calls then raises ``asyncio.CancelledError`` in its own task, which looks
    exactly like that task being cancelled. So a broken channel is only
    retired when a call fails (or the certificate files changed), and closed
    once its last user has finished.
    """

    def __init__(self, client: aetcd.Client, tls_stamp: object):
        self.client = client
        self.tls_stamp = tls_stamp
        self.users = 0
        self.retired = False


class Etcd:
    """An asyncio etcd client bound to the event loop that first uses it.

    ``tls`` are this part's credentials (``cloudstate.tls``). They are read
    when a channel is opened; once their files change (a renewal), the next
    call opens a new channel with them, while calls and watches already
    running finish on the old one.
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]], *, tls: Credentials,
                 timeout: float = 5.0):
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self._endpoints = list(endpoints)
        self._current = 0
        self._timeout = timeout
        self._tls = tls
        self._tls_checked = 0.0
        self._conn: _Connection | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # --- connection management --------------------------------------------

    def _new_client(self) -> aetcd.Client:
        host, port = self._endpoints[self._current]
        ca, cert, key = self._tls.read()
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                   certificate_chain=cert)
        return _TlsClient(host=host, port=port, credentials=credentials,
                          timeout=self._timeout, options=_CHANNEL_OPTIONS)

    def _retire_if_renewed(self) -> None:
        """Leave a channel whose certificate files were replaced since it was
        opened (looked at once a second at most)."""
        now = time.monotonic()
        if self._conn is None or now - self._tls_checked < TLS_RECHECK_INTERVAL:
            return
        self._tls_checked = now
        if self._tls.stamp() != self._conn.tls_stamp:
            conn, self._conn = self._conn, None
            conn.retired = True
            if conn.users == 0:
                # Nobody uses it: close it in the background (never await in
                # a caller's path for an old channel's goodbye).
                task = asyncio.get_running_loop().create_task(_close_quietly(conn.client))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[_Connection]:
        """The current connection, kept open until the caller is done with it."""
        self._retire_if_renewed()
        if self._conn is None:
            # The stamp before the read: a change while reading retires this
            # channel at the next check rather than going unnoticed.
            stamp = self._tls.stamp()
            try:
                client = self._new_client()
            except TlsError as exc:
                # Without its certificate files this part reaches no member:
                # callers treat it as they treat etcd down (a 503, a retry),
                # and the message names the missing file.
                raise EtcdUnavailable(str(exc)) from exc
            self._conn = _Connection(client, stamp)
        conn = self._conn
        conn.users += 1
        try:
            await conn.client.connect()
            yield conn
        finally:
            conn.users -= 1
            if conn.retired and conn.users == 0:
                await _close_quietly(conn.client)

    def _fail_over(self, broken: _Connection) -> None:
        """Stop handing out a connection that failed; move to the next endpoint.

        The next call opens a fresh channel, which connects at once instead
        of waiting out the failed one's reconnect backoff.
        """
        broken.retired = True
        if self._conn is broken:
            self._conn = None
            if len(self._endpoints) > 1:
                self._current = (self._current + 1) % len(self._endpoints)

    async def _unary(self, operation: str, call: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run one unary call, trying each endpoint once before giving up;
        its round trip (retries included) goes into the process's metrics."""
        started = time.perf_counter()
        try:
            return await self._try_each_endpoint(call)
        finally:
            ETCD_SECONDS.labels(operation).observe(time.perf_counter() - started)

    async def _try_each_endpoint(self, call: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        last: Exception | None = None
        for _ in range(len(self._endpoints)):
            async with self._session() as conn:
                try:
                    return await call(conn.client)
                except Exception as exc:
                    if not _is_unavailable(exc):
                        raise
                    last = exc
                    self._fail_over(conn)
        raise EtcdUnavailable(str(last)) from last

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await self._unary(name, lambda client: getattr(client, name)(*args, **kwargs))

    async def close(self) -> None:
        """Close the channel; calls and watches still running on it end."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.retired = True
            await _close_quietly(conn.client)

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
        # A range from b"\0" to b"\0" would mean every key in etcd; count
        # just the one key b"\0" instead.
        request = aetcd.rpc.RangeRequest(key=b"\0", count_only=True)

        async def call(client: aetcd.Client) -> int:
            response = await client.kvstub.Range(
                request, timeout=self._timeout, metadata=client.metadata
            )
            return int(response.header.revision)

        return await self._unary("revision", call)

    async def prefix_stats(self, prefix: str, changed_after: int) -> PrefixStats:
        """Count the keys under ``prefix`` and tell whether any of them was
        written after revision ``changed_after``, in one consistent read.

        Lets a reader that knew the prefix at ``changed_after`` check that it
        is still current without listing it: nothing changed if no key is
        newer and the count is the same (a delete would lower the count).
        """
        key = prefix.encode()
        end = prefix_range_end(key)
        request = aetcd.rpc.TxnRequest(
            success=[
                aetcd.rpc.RequestOp(
                    request_range=aetcd.rpc.RangeRequest(key=key, range_end=end, count_only=True)
                ),
                # etcd applies min_mod_revision after counting, so this one
                # must return keys (at most one) rather than a count.
                aetcd.rpc.RequestOp(
                    request_range=aetcd.rpc.RangeRequest(
                        key=key,
                        range_end=end,
                        keys_only=True,
                        limit=1,
                        min_mod_revision=changed_after + 1,
                    )
                ),
            ]
        )

        async def call(client: aetcd.Client) -> PrefixStats:
            response = await client.kvstub.Txn(
                request, timeout=self._timeout, metadata=client.metadata
            )
            counted, newer = (r.response_range for r in response.responses)
            return PrefixStats(
                keys=int(counted.count),
                changed=len(newer.kvs) > 0,
                revision=int(response.header.revision),
            )

        return await self._unary("prefix_stats", call)

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

        async def call(client: aetcd.Client) -> TxnResult:
            response = await client.kvstub.Txn(
                request, timeout=self._timeout, metadata=client.metadata
            )
            return TxnResult(succeeded=response.succeeded, revision=response.header.revision)

        return await self._unary("txn", call)

    async def compact(self, revision: int) -> None:
        await self._call("compact", revision, physical=True)

    # --- maintenance (deploy.etcdmaint) ---------------------------------------
    # Each of these answers for, or acts on, the member this client is
    # connected to: give it a single endpoint to choose which.

    async def member_status(self) -> MemberStatus:
        async def call(client: aetcd.Client) -> MemberStatus:
            reply = await client.maintenancestub.Status(
                rpc.StatusRequest(), timeout=self._timeout, metadata=client.metadata)
            return MemberStatus(member_id=int(reply.header.member_id),
                                revision=int(reply.header.revision), db_size=int(reply.dbSize),
                                db_size_in_use=int(reply.dbSizeInUse),
                                leader=int(reply.leader) == int(reply.header.member_id),
                                errors=tuple(reply.errors))

        return await self._unary("member_status", call)

    async def alarms(self) -> list[Alarm]:
        """Every alarm raised in the cluster (NOSPACE blocks all writes)."""
        async def call(client: aetcd.Client) -> list[Alarm]:
            reply = await client.maintenancestub.Alarm(
                rpc.AlarmRequest(action=rpc.AlarmRequest.GET, memberID=0, alarm=rpc.NONE),
                timeout=self._timeout, metadata=client.metadata)
            return [Alarm(member_id=int(a.memberID),
                          kind="NOSPACE" if a.alarm == rpc.NOSPACE else str(a.alarm))
                    for a in reply.alarms]

        return await self._unary("alarms", call)

    async def disarm(self, alarm: Alarm) -> None:
        async def call(client: aetcd.Client) -> None:
            await client.maintenancestub.Alarm(
                rpc.AlarmRequest(action=rpc.AlarmRequest.DEACTIVATE, memberID=alarm.member_id,
                                 alarm=rpc.NOSPACE if alarm.kind == "NOSPACE" else rpc.NONE),
                timeout=self._timeout, metadata=client.metadata)

        await self._unary("disarm", call)

    async def defragment(self) -> None:
        """Give the member's free pages back to the disk. It blocks that
        member's reads and writes while it runs: one member at a time."""
        async def call(client: aetcd.Client) -> None:
            await client.maintenancestub.Defragment(
                rpc.DefragmentRequest(), timeout=self._timeout, metadata=client.metadata)

        await self._unary("defragment", call)

    # --- membership (sfcloud-deploy) ----------------------------------------
    # A learner receives the log but does not vote, and refuses most client
    # calls: clients' endpoint lists must leave learners out.

    async def members(self) -> list[Member]:
        async def call(client: aetcd.Client) -> list[Member]:
            reply = await client.clusterstub.MemberList(
                rpc.MemberListRequest(), timeout=self._timeout, metadata=client.metadata)
            return [_member(m) for m in reply.members]

        return await self._unary("members", call)

    async def add_member(self, peer_urls: Sequence[str], *, learner: bool) -> Member:
        """Announce a member before it starts (it joins with state
        ``existing``). Added as a learner it changes no quorum until promoted."""
        async def call(client: aetcd.Client) -> Member:
            reply = await client.clusterstub.MemberAdd(
                rpc.MemberAddRequest(peerURLs=list(peer_urls), isLearner=learner),
                timeout=self._timeout, metadata=client.metadata)
            return _member(reply.member)

        return await self._unary("add_member", call)

    async def promote_member(self, member_id: int) -> None:
        """Make a learner a voting member. etcd refuses until the learner has
        caught up with the leader (``FAILED_PRECONDITION``): retry."""
        async def call(client: aetcd.Client) -> None:
            await client.clusterstub.MemberPromote(
                rpc.MemberPromoteRequest(ID=member_id), timeout=self._timeout,
                metadata=client.metadata)

        await self._unary("promote_member", call)

    async def remove_member(self, member_id: int) -> None:
        async def call(client: aetcd.Client) -> None:
            await client.clusterstub.MemberRemove(
                rpc.MemberRemoveRequest(ID=member_id), timeout=self._timeout,
                metadata=client.metadata)

        await self._unary("remove_member", call)

    async def snapshot(self, path: Path) -> int:
        """Stream the connected member's whole database into ``path``
        (written under a temporary name, then renamed); its size. Give this
        client one endpoint: a snapshot comes from one member."""
        partial = path.with_name(f".{path.name}.partial")

        async def call(client: aetcd.Client) -> int:
            size = 0
            with open(partial, "wb") as out:
                stream = client.maintenancestub.Snapshot(
                    rpc.SnapshotRequest(), timeout=self._timeout, metadata=client.metadata)
                async for chunk in stream:
                    out.write(chunk.blob)
                    size += len(chunk.blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
            return size

        try:
            return await self._unary("snapshot", call)
        finally:
            partial.unlink(missing_ok=True)

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
        lease is lost (it expired while we could not refresh it: a partition,
        a stalled process; an etcd restart does not do it, as the new leader
        renews every lease), a new one is granted and ``attach`` runs again,
        so the keys come back by themselves. The same happens when ``attach``
        itself fails with ``EtcdUnavailable``. The lease is revoked when the
        task is cancelled.
        """
        lease_id = 0
        try:
            while True:
                try:
                    if not lease_id:
                        lease_id = await self.grant_lease(ttl)
                        try:
                            await attach(lease_id)
                        except EtcdUnavailable:
                            # Keys may be half attached. Start over with a
                            # fresh lease and a full attach; this one expires.
                            lease_id = 0
                            raise
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
            broke: Exception | None = None
            try:
                async with self._session() as conn:
                    try:
                        call = aetcd.rpc.WatchStub(conn.client.channel).Watch(
                            requests(), metadata=conn.client.metadata
                        )
                        async for response in call:
                            if response.compact_revision:
                                raise Compacted(response.compact_revision)
                            if response.canceled:
                                raise aetcd_errors.ClientError(
                                    response.cancel_reason or "watch canceled"
                                )
                            backoff = 0.1
                            # etcd never splits one revision across responses
                            # (we do not ask for fragments), so each is whole.
                            for batch in _by_revision(response.events):
                                yield batch
                                next_revision = batch[-1].revision + 1
                        broke = aetcd_errors.ClientError("watch stream ended")
                    except (aetcd.rpc.AioRpcError, aetcd_errors.ClientError) as exc:
                        broke = exc
                        self._fail_over(conn)
                    finally:
                        stop.set()
                        if call is not None:
                            call.cancel()
            except _UNAVAILABLE as exc:  # from connect()
                broke = exc
            log.info("etcd watch on %s broke (%s); resuming at %d", prefix, broke, next_revision)
            await asyncio.sleep(backoff + random.uniform(0, backoff))
            backoff = min(backoff * 2, 2.0)


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


def _member(raw: Any) -> Member:
    return Member(member_id=int(raw.ID), name=raw.name, peer_urls=tuple(raw.peerURLs),
                  client_urls=tuple(raw.clientURLs), learner=bool(raw.isLearner))


def _is_unavailable(exc: BaseException) -> bool:
    """True for failures that mean "no answer", whatever their outcome was."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    # aetcd wraps the codes it does not know in a plain ClientError.
    rpc_error = exc if isinstance(exc, aetcd.rpc.AioRpcError) else exc.__cause__
    if not isinstance(rpc_error, aetcd.rpc.AioRpcError):
        return False
    code = rpc_error.code()
    if code in _UNAVAILABLE_CODES:
        return True
    return code == aetcd.rpc.StatusCode.UNKNOWN and (rpc_error.details() or "").startswith(
        _UNAVAILABLE_UNKNOWN_DETAILS
    )


async def _close_quietly(client: aetcd.Client) -> None:
    try:
        await client.close()
    except Exception:  # noqa: BLE001 - closing a broken channel may fail too
        log.debug("closing an etcd client raised", exc_info=True)
