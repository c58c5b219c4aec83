"""cloudstate.etcd and cloudstate.mirror against a real etcd (deploy.localetcd).

Tests that stop, kill, restart or compact etcd use a private member, so the
shared one never changes under another test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from cloudstate.etcd import (
    Compacted,
    Compare,
    Delete,
    Etcd,
    EtcdUnavailable,
    KeyValue,
    Put,
    WatchEvent,
)
from cloudstate.mirror import Change, Mirror
from deploy.localetcd import LocalEtcd, free_port

pytest_plugins = ("tests.support.fixtures_etcd",)
pytestmark = pytest.mark.integration

# Generous bounds: they only matter when something hangs.
WAIT = 15.0


@dataclass
class Watched:
    """What a watch delivered, with a way to wait for more of it."""

    batches: list[list[WatchEvent]] = field(default_factory=list)
    grew: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, batch: list[WatchEvent]) -> None:
        async with self.grew:
            self.batches.append(batch)
            self.grew.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout), self.grew:
            await self.grew.wait_for(predicate)

    @property
    def last_revision(self) -> int:
        return self.batches[-1][-1].revision if self.batches else 0


async def watch_until_delete(etcd: Etcd, key: str, start: int) -> WatchEvent:
    async for batch in etcd.watch_prefix(key, start):
        for event in batch:
            if event.kind == "delete" and event.kv.key == key:
                return event
    raise AssertionError("watch ended")


@contextlib.asynccontextmanager
async def running(coro: Awaitable[object]) -> AsyncIterator[asyncio.Task[object]]:
    """Run a background task for the duration of a block, then cancel it."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- key/value and transactions ----------------------------------------------


async def test_put_get_delete(etcd: Etcd, etcd_prefix: str) -> None:
    key = etcd_prefix + "a"
    rev1 = await etcd.put(key, {"x": 1})
    kv = await etcd.get(key)
    assert kv is not None
    assert (kv.json(), kv.mod_revision, kv.create_revision, kv.version) == ({"x": 1}, rev1, rev1, 1)

    rev2 = await etcd.put(key, "two")
    await etcd.put(etcd_prefix + "b", b"\x00bytes")
    kv = await etcd.get(key)
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.create_revision, kv.version) == (b"two", rev2, rev1, 2)
    assert await etcd.revision() >= rev2

    kvs, at = await etcd.get_prefix(etcd_prefix)
    assert [(k.key, k.value) for k in kvs] == [(key, b"two"), (etcd_prefix + "b", b"\x00bytes")]
    assert at >= rev2

    assert await etcd.delete(key) is True
    assert await etcd.delete(key) is False
    assert await etcd.get(key) is None
    assert await etcd.delete_prefix(etcd_prefix) == 1


async def test_revision_is_the_store_revision(etcd: Etcd, etcd_prefix: str) -> None:
    rev = await etcd.put(etcd_prefix + "r", "1")
    assert await etcd.revision() == rev  # nothing else writes the shared server meanwhile


async def test_create_if_absent_succeeds_once(etcd: Etcd, etcd_prefix: str) -> None:
    key = etcd_prefix + "ip/10.0.0.5"
    attempts = [
        etcd.txn(
            [Compare.absent(key)], [Put(key, f"owner-{n}")], [Put(etcd_prefix + f"lost-{n}", "")]
        )
        for n in range(8)
    ]
    results = await asyncio.gather(*attempts)
    winners = [n for n, result in enumerate(results) if result.succeeded]
    assert len(winners) == 1
    kv = await etcd.get(key)
    assert kv is not None and kv.value == f"owner-{winners[0]}".encode()
    assert kv.mod_revision == results[winners[0]].revision
    losers, _ = await etcd.get_prefix(etcd_prefix + "lost-")
    assert len(losers) == 7  # every loser ran the failure branch


async def test_unchanged_since_fences_stale_writers(etcd: Etcd, etcd_prefix: str) -> None:
    key = etcd_prefix + "instance"
    absent = await etcd.txn([Compare.unchanged_since(key, 0)], [Put(key, {"state": "new"})])
    assert absent.succeeded
    read = await etcd.get(key)
    assert read is not None and read.mod_revision == absent.revision

    first = await etcd.txn(
        [Compare.unchanged_since(key, read.mod_revision)], [Put(key, {"state": "running"})]
    )
    second = await etcd.txn(  # a writer that read before `first`
        [Compare.unchanged_since(key, read.mod_revision)], [Put(key, {"state": "error"})]
    )
    assert first.succeeded and not second.succeeded
    assert second.revision >= first.revision
    current = await etcd.get(key)
    assert current is not None and current.json() == {"state": "running"}

    assert (await etcd.txn([Compare.value_is(key, {"state": "running"})], [Delete(key)])).succeeded
    assert await etcd.get(key) is None


async def test_txn_applies_all_ops_at_one_revision(etcd: Etcd, etcd_prefix: str) -> None:
    await etcd.put(etcd_prefix + "old/1", "x")
    await etcd.put(etcd_prefix + "old/2", "x")
    result = await etcd.txn(
        [], [Put(etcd_prefix + "new", "y"), Delete(etcd_prefix + "old/", prefix=True)]
    )
    assert result.succeeded
    kvs, _ = await etcd.get_prefix(etcd_prefix)
    assert [(kv.key, kv.mod_revision) for kv in kvs] == [(etcd_prefix + "new", result.revision)]


async def test_prefix_stats(etcd: Etcd, etcd_prefix: str) -> None:
    rev = await etcd.put(etcd_prefix + "a", "1")
    await etcd.put(etcd_prefix + "b", "1")
    stats = await etcd.prefix_stats(etcd_prefix, rev)
    assert (stats.keys, stats.changed) == (2, True)
    stats = await etcd.prefix_stats(etcd_prefix, stats.revision)
    assert (stats.keys, stats.changed) == (2, False)
    await etcd.put("/elsewhere-" + etcd_prefix.strip("/"), "1")
    assert not (await etcd.prefix_stats(etcd_prefix, stats.revision)).changed
    await etcd.delete(etcd_prefix + "a")
    after_delete = await etcd.prefix_stats(etcd_prefix, stats.revision)
    assert (after_delete.keys, after_delete.changed) == (1, False)  # seen only by the count
    await etcd.delete("/elsewhere-" + etcd_prefix.strip("/"))


# --- leases ------------------------------------------------------------------


async def test_lease_expiry_deletes_its_keys(etcd: Etcd, etcd_prefix: str) -> None:
    key = etcd_prefix + "node"
    lease = await etcd.grant_lease(2)  # etcd's minimum TTL here
    rev = await etcd.put(key, "alive", lease=lease)
    kv = await etcd.get(key)
    assert kv is not None and kv.lease == lease
    async with asyncio.timeout(WAIT):
        event = await watch_until_delete(etcd, key, rev + 1)
    assert event.kv.mod_revision > rev
    assert await etcd.refresh_lease(lease) == 0


@dataclass
class LeaseHolder:
    """What hold_lease did, for tests to wait on."""

    key: str
    etcd: Etcd
    leases: list[int] = field(default_factory=list)
    lost: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def attach(self, lease: int) -> None:
        await self.etcd.put(self.key, "here", lease=lease)
        self.leases.append(lease)
        self.changed.set()

    def on_lost(self) -> None:
        self.lost += 1

    async def wait_for_attach(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.leases) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_hold_lease_reattaches_after_the_lease_is_lost(etcd: Etcd, etcd_prefix: str) -> None:
    holder = LeaseHolder(etcd_prefix + "node", etcd)
    task = asyncio.create_task(etcd.hold_lease(2, holder.attach, on_lost=holder.on_lost))
    try:
        await holder.wait_for_attach(1)
        await etcd.revoke_lease(holder.leases[0])  # what an expiry during a partition does
        assert await etcd.get(holder.key) is None
        await holder.wait_for_attach(2)
        kv = await etcd.get(holder.key)
        assert kv is not None and kv.lease == holder.leases[1] != holder.leases[0]
        assert holder.lost == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Cancelling the holder revokes its lease, so the key goes at once.
    assert await etcd.get(holder.key) is None


async def test_hold_lease_rides_out_an_etcd_outage(
    private_etcd_server: LocalEtcd, private_etcd: Etcd
) -> None:
    etcd = private_etcd
    holder = LeaseHolder("/node/n1", etcd)
    async with running(etcd.hold_lease(2, holder.attach, on_lost=holder.on_lost)) as task:
        await holder.wait_for_attach(1)
        await asyncio.to_thread(private_etcd_server.stop)
        # Down for longer than the TTL on purpose: the lease must outlive it.
        await asyncio.sleep(2.5)
        await asyncio.to_thread(private_etcd_server.start)
        # A single etcd member renews every lease when it becomes leader
        # again, so the key survives and no new lease is needed.
        kv = await etcd.get(holder.key)
        assert kv is not None and kv.lease == holder.leases[0]
        assert await etcd.refresh_lease(holder.leases[0]) > 0
        assert not task.done() and holder.lost == 0 and len(holder.leases) == 1


# --- availability --------------------------------------------------------------


async def test_unavailable_is_raised_promptly(
    private_etcd_server: LocalEtcd, private_etcd: Etcd
) -> None:
    etcd = private_etcd
    await etcd.put("/k", "v")
    await asyncio.to_thread(private_etcd_server.stop)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: etcd.get("/k"),
        lambda: etcd.get_prefix("/"),
        lambda: etcd.put("/k", "w"),
        lambda: etcd.delete("/k"),
        lambda: etcd.txn([Compare.absent("/k")], [Put("/k", "x")]),
        lambda: etcd.revision(),
        lambda: etcd.grant_lease(5),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable):
            await call()
        assert time.monotonic() - started < 2.0

    # Many failures in a row: gRPC's reconnect backoff would now be long.
    for _ in range(8):
        with pytest.raises(EtcdUnavailable):
            await etcd.get("/k")

    # The same client works again with the very first call once etcd is back.
    await asyncio.to_thread(private_etcd_server.start)
    kv = await etcd.get("/k")
    assert kv is not None and kv.value == b"v"


async def test_unavailable_when_nothing_listens(etcd_server: LocalEtcd) -> None:
    etcd = Etcd([("127.0.0.1", free_port())], tls=etcd_server.client_tls)
    try:
        started = time.monotonic()
        with pytest.raises(EtcdUnavailable):
            await etcd.put("/k", "v")
        assert time.monotonic() - started < 2.0
    finally:
        await etcd.close()


async def test_unavailable_when_etcd_hangs(private_etcd_server: LocalEtcd) -> None:
    # A frozen member accepts connections but never answers: only the
    # per-call deadline ends the wait.
    etcd = private_etcd_server.client(timeout=1.0)
    assert private_etcd_server.pid is not None
    try:
        await etcd.put("/k", "v")  # connect while it answers
        os.kill(private_etcd_server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(EtcdUnavailable):
                await etcd.get("/k")
            # The 1 s deadline, plus room for a loaded machine: a hang would be minutes.
            assert time.monotonic() - started < 4.0
        finally:
            os.kill(private_etcd_server.pid, signal.SIGCONT)
        # A thawed member takes a moment to catch up on a loaded machine: the same
        # client must work again within seconds, without being rebuilt.
        kv = None
        deadline = time.monotonic() + 15
        while kv is None and time.monotonic() < deadline:
            try:
                kv = await etcd.get("/k")
            except EtcdUnavailable:
                await asyncio.sleep(0.2)
        assert kv is not None and kv.value == b"v"
    finally:
        await etcd.close()


# --- watches -----------------------------------------------------------------


async def test_watch_delivers_each_revision_once(etcd: Etcd, etcd_prefix: str) -> None:
    start = await etcd.revision() + 1
    puts = [await etcd.put(etcd_prefix + f"k{n}", str(n)) for n in range(3)]
    both = await etcd.txn([], [Put(etcd_prefix + "k0", "x"), Delete(etcd_prefix + "k1")])
    await etcd.put("/not-" + etcd_prefix.strip("/"), "ignored")
    last = await etcd.put(etcd_prefix + "k2", "last")
    seen: list[list[WatchEvent]] = []
    async with asyncio.timeout(WAIT):
        async for batch in etcd.watch_prefix(etcd_prefix, start):
            seen.append(batch)
            if batch[-1].revision == last:
                break
    assert [[(e.kind, e.kv.key) for e in b] for b in seen] == [
        [("put", etcd_prefix + "k0")],
        [("put", etcd_prefix + "k1")],
        [("put", etcd_prefix + "k2")],
        [("put", etcd_prefix + "k0"), ("delete", etcd_prefix + "k1")],
        [("put", etcd_prefix + "k2")],
    ]
    assert [b[0].revision for b in seen] == [*puts, both.revision, last]
    await etcd.delete("/not-" + etcd_prefix.strip("/"))


async def test_watch_from_a_compacted_revision_raises(
    private_etcd_server: LocalEtcd, private_etcd: Etcd
) -> None:
    etcd = private_etcd
    first = await etcd.put("/c/k", "1")
    await etcd.put("/c/k", "2")
    latest = await etcd.put("/c/k", "3")
    await etcd.compact(latest)
    with pytest.raises(Compacted) as raised:
        async with asyncio.timeout(WAIT):
            async for _ in etcd.watch_prefix("/c/", first):
                pass
    assert raised.value.revision == latest
    # From the compaction point on, history is still there.
    async with asyncio.timeout(WAIT):
        async for batch in etcd.watch_prefix("/c/", latest):
            assert batch[0].kv.value == b"3"
            break


# --- THE test: a watch under load across etcd restarts ---------------------------

WRITERS = 4
OPS_PER_WRITER = 1200
KEYS_PER_WRITER = 40


@dataclass
class Expected:
    """One acknowledged write: what the watch must show at its revision."""

    events: set[tuple[str, str, bytes]]  # (kind, key, value); a delete has b""


@dataclass
class Load:
    etcd: Etcd
    prefix: str
    acked: dict[int, Expected] = field(default_factory=dict)
    done_ops: int = 0
    failed_calls: int = 0  # EtcdUnavailable seen: proves the outages hit us
    unacked_deletes: int = 0
    restarts_done: asyncio.Event = field(default_factory=asyncio.Event)

    async def _retrying(self, op: Callable[[], Awaitable[int]]) -> int:
        """Run an idempotent-enough write until etcd acknowledges it.

        A write whose answer was lost may have been applied, so a retry can
        add a second revision with the same content: allowed, since only
        acknowledged writes are checked one by one.
        """
        while True:
            try:
                return await op()
            except EtcdUnavailable:
                self.failed_calls += 1
                await asyncio.sleep(0.02)  # etcd is restarting; nothing to wait on

    async def writer(self, w: int) -> None:
        # mod_revision of each key as we last wrote it; None: state unknown.
        known: dict[str, int | None] = {}
        for i in range(OPS_PER_WRITER):
            if i == OPS_PER_WRITER * 9 // 10:
                # Keep writing until every restart happened mid-stream.
                await self.restarts_done.wait()
            key = f"{self.prefix}w{w}/k{i % KEYS_PER_WRITER:02d}"
            value = f"w{w}-{i}".encode()
            if i % 10 == 7 and known.get(key):
                await self._delete(key, known)
            elif i % 13 == 5:
                other = f"{self.prefix}w{w}/pair"
                rev = await self._retrying(
                    lambda key=key, value=value, other=other: self._txn_put(
                        [Put(key, value), Put(other, value)]
                    )
                )
                self.acked[rev] = Expected({("put", key, value), ("put", other, value)})
                known[key] = known[other] = rev
            else:
                rev = await self._retrying(lambda key=key, value=value: self.etcd.put(key, value))
                self.acked[rev] = Expected({("put", key, value)})
                known[key] = rev
            self.done_ops += 1

    async def _txn_put(self, ops: list[Put | Delete]) -> int:
        result = await self.etcd.txn([], ops)
        return result.revision

    async def _delete(self, key: str, known: dict[str, int | None]) -> None:
        # Fenced on the revision we wrote, so a success is a real delete at
        # a revision of its own. Not retried: a lost answer leaves the key
        # in an unknown state, and the next write to it settles that.
        mod_revision = known[key]
        assert mod_revision is not None
        try:
            result = await self.etcd.txn(
                [Compare.unchanged_since(key, mod_revision)], [Delete(key)]
            )
        except EtcdUnavailable:
            self.failed_calls += 1
            self.unacked_deletes += 1
            known[key] = None
            return
        assert result.succeeded, f"nobody else writes {key}"
        self.acked[result.revision] = Expected({("delete", key, b"")})
        known[key] = None


def replay(batches: list[list[WatchEvent]]) -> dict[str, KeyValue]:
    """Rebuild the key space from events, checking their bookkeeping."""
    state: dict[str, KeyValue] = {}
    for batch in batches:
        for event in batch:
            kv = event.kv
            before = state.get(kv.key)
            if event.kind == "delete":
                assert before is not None, f"delete of absent {kv.key} at {kv.mod_revision}"
                del state[kv.key]
                continue
            if before is None:
                assert (kv.create_revision, kv.version) == (kv.mod_revision, 1)
            else:
                assert kv.create_revision == before.create_revision
                assert kv.version == before.version + 1
            state[kv.key] = kv
    return state


@pytest.mark.parametrize(
    "restarts",
    [
        pytest.param(["term", "term", "term"], id="sigterm"),
        pytest.param(["kill", "term", "kill"], id="sigkill"),
    ],
)
async def test_watch_sees_exact_history_across_restarts(
    private_etcd_server: LocalEtcd, private_etcd: Etcd, restarts: list[str]
) -> None:
    etcd = private_etcd  # writers and watcher share one client, as in the portal
    prefix = "/load/"
    start = await etcd.revision() + 1
    load = Load(etcd, prefix)
    watched = Watched()
    total = WRITERS * OPS_PER_WRITER

    async def watcher() -> None:
        async for batch in etcd.watch_prefix(prefix, start):
            await watched.add(batch)

    async with asyncio.timeout(120), running(watcher()) as watch_task:
        writers = asyncio.gather(*(load.writer(w) for w in range(WRITERS)))
        try:
            for n, how in enumerate(restarts, start=1):
                # Restart when the watcher is a known way into the stream,
                # and the writers are still going (they wait at 90%).
                share = total * n // (len(restarts) + 2)
                await watched.wait_for(lambda share=share: len(watched.batches) >= share)
                assert not watch_task.done()
                await asyncio.to_thread(private_etcd_server.restart, kill=how == "kill")
            load.restarts_done.set()
            await writers
        finally:
            writers.cancel()
        final_kvs, final = await etcd.get_prefix(prefix)
        await watched.wait_for(lambda: watched.last_revision >= final)
        assert not watch_task.done()

    seen = watched.batches
    # Every revision exactly once, in order, no gap (only we write this etcd).
    revisions = [batch[0].revision for batch in seen]
    assert revisions == list(range(start, final + 1))
    assert all(len({e.revision for e in batch}) == 1 for batch in seen)

    # Every acknowledged write is in the history, at its revision.
    by_revision = {batch[0].revision: batch for batch in seen}
    for revision, expected in load.acked.items():
        got = {(e.kind, e.kv.key, e.kv.value) for e in by_revision[revision]}
        assert got == expected.events, f"revision {revision}"
    # Every write but the deletes whose answer was lost was acknowledged,
    # and the writers did run into each outage.
    assert load.done_ops == total
    assert len(load.acked) == total - load.unacked_deletes
    assert load.failed_calls >= len(restarts)

    # Replaying the history gives exactly what etcd holds now.
    assert replay(seen) == {kv.key: kv for kv in final_kvs}


# --- Mirror ------------------------------------------------------------------


@dataclass
class Recorder:
    changes: list[Change] = field(default_factory=list)

    def __call__(self, changes: list[Change]) -> None:
        self.changes.extend(changes)

    def summary(self) -> list[tuple[str, bytes | None, bytes | None]]:
        return [
            (c.key, c.old.value if c.old else None, c.new.value if c.new else None)
            for c in self.changes
        ]


def contents(mirror: Mirror) -> dict[str, tuple[bytes, int]]:
    return {kv.key: (kv.value, kv.mod_revision) for kv in mirror.items()}


async def etcd_contents(etcd: Etcd, prefix: str) -> dict[str, tuple[bytes, int]]:
    kvs, _ = await etcd.get_prefix(prefix)
    return {kv.key: (kv.value, kv.mod_revision) for kv in kvs}


async def test_mirror_converges_and_tells_subscribers(etcd: Etcd, etcd_prefix: str) -> None:
    await etcd.put(etcd_prefix + "a", "1")
    await etcd.put(etcd_prefix + "b", "1")
    mirror = Mirror(etcd, etcd_prefix)
    recorder = Recorder()
    mirror.subscribe(recorder)
    async with running(mirror.run()):
        async with asyncio.timeout(WAIT):
            await mirror.ready.wait()
        assert contents(mirror) == await etcd_contents(etcd, etcd_prefix)
        assert recorder.summary() == [
            (etcd_prefix + "a", None, b"1"),
            (etcd_prefix + "b", None, b"1"),
        ]
        recorder.changes.clear()

        await etcd.put(etcd_prefix + "c", "1")
        await etcd.put(etcd_prefix + "a", "2")
        result = await etcd.txn([], [Delete(etcd_prefix + "b")])
        await mirror.wait_for_revision(result.revision)
        assert recorder.summary() == [
            (etcd_prefix + "c", None, b"1"),
            (etcd_prefix + "a", b"1", b"2"),
            (etcd_prefix + "b", b"1", None),
        ]
        assert contents(mirror) == await etcd_contents(etcd, etcd_prefix)
        assert mirror.get(etcd_prefix + "b") is None
        assert [kv.key for kv in mirror.items(etcd_prefix + "a")] == [etcd_prefix + "a"]


async def test_wait_for_revision(etcd: Etcd, etcd_prefix: str) -> None:
    mirror = Mirror(etcd, etcd_prefix)
    async with running(mirror.run()):
        rev = await etcd.put(etcd_prefix + "x", "1")
        await mirror.wait_for_revision(rev)  # before ready: waits for the list
        kv = mirror.get(etcd_prefix + "x")
        assert kv is not None and kv.mod_revision == rev

        # A revision made elsewhere never arrives as an event under this
        # prefix; the mirror must still say it is current, and quickly.
        elsewhere = await etcd.put("/elsewhere-" + etcd_prefix.strip("/"), "1")
        started = time.monotonic()
        await mirror.wait_for_revision(elsewhere, timeout=5.0)
        assert time.monotonic() - started < 1.0
        assert mirror.revision < elsewhere

        # So is a failed transaction's revision.
        lost = await etcd.txn([Compare.absent(etcd_prefix + "x")], [Put(etcd_prefix + "x", "2")])
        assert not lost.succeeded
        await mirror.wait_for_revision(lost.revision, timeout=5.0)

        # A revision that does not exist yet is a timeout, not a hang.
        with pytest.raises(TimeoutError):
            await mirror.wait_for_revision(await etcd.revision() + 100, timeout=0.5)
    await etcd.delete("/elsewhere-" + etcd_prefix.strip("/"))


class GatedEtcd(Etcd):
    """An Etcd whose watches wait at a gate before they start."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[list[WatchEvent]]:
        self.waiting.set()
        await self.gate.wait()
        async for batch in super().watch_prefix(prefix, start_revision):
            yield batch


async def test_mirror_relists_after_compaction_behind_its_back(
    private_etcd_server: LocalEtcd,
) -> None:
    etcd = GatedEtcd(private_etcd_server.endpoints, tls=private_etcd_server.client_tls)
    try:
        await etcd.put("/m/keep", "1")
        await etcd.put("/m/gone", "1")
        mirror = Mirror(etcd, "/m/")
        recorder = Recorder()
        mirror.subscribe(recorder)

        # Stop the watch: the mirror lists, then parks before watching.
        etcd.gate.clear()
        async with running(mirror.run()):
            async with asyncio.timeout(WAIT):
                await etcd.waiting.wait()
            assert set(contents(mirror)) == {"/m/keep", "/m/gone"}
            recorder.changes.clear()

            # Behind its back: changes, then the history of them compacted away.
            await etcd.put("/m/new", "1")
            await etcd.put("/m/keep", "2")
            await etcd.delete("/m/gone")
            await etcd.compact(await etcd.revision())

            etcd.gate.set()  # resume: the watch gets Compacted, the mirror re-lists
            await mirror.wait_for_revision(await etcd.revision())
            assert contents(mirror) == await etcd_contents(etcd, "/m/")
            assert sorted(recorder.summary()) == [
                ("/m/gone", b"1", None),  # the delete it never saw as an event
                ("/m/keep", b"1", b"2"),
                ("/m/new", None, b"1"),
            ]
    finally:
        await etcd.close()


async def test_mirror_keeps_working_across_etcd_restarts(
    private_etcd_server: LocalEtcd, private_etcd: Etcd
) -> None:
    etcd = private_etcd
    mirror = Mirror(etcd, "/m/")
    recorder = Recorder()
    mirror.subscribe(recorder)
    written = 0
    async with running(mirror.run()) as task:
        for round_ in range(3):
            for n in range(20):
                await etcd.put(f"/m/k{n % 7}", f"{round_}-{n}")
                written += 1
            await etcd.delete(f"/m/k{round_}")
            written += 1
            await asyncio.to_thread(private_etcd_server.restart, kill=round_ == 1)
        rev = await etcd.put("/m/after", "1")
        written += 1
        await mirror.wait_for_revision(rev)
        assert not task.done()
    assert contents(mirror) == await etcd_contents(etcd, "/m/")
    # The watch resumed each time, so there was no re-list and no repeat:
    # one change per write.
    assert len(recorder.changes) == written
