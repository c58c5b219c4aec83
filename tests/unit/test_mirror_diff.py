"""Mirror logic against an in-memory stand-in for etcd: no process, no network.

The fake can do what a real etcd 3.4 does only rarely or slowly: lose a
delete from a watch (fixed upstream only in 3.5.16), compact history at will,
or refuse to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from cloudstate.etcd import Compacted, EtcdUnavailable, KeyValue, PrefixStats, WatchEvent
from cloudstate.mirror import Change, Mirror

WAIT = 5.0


class FakeEtcd:
    def __init__(self) -> None:
        self.revision = 1
        self.data: dict[str, KeyValue] = {}
        self.history: list[list[WatchEvent]] = []
        self.compacted = 0
        self.drop_deletes = False
        self.list_failures: list[Exception] = []
        self.lists = 0
        self.stats_calls = 0
        self._tick = asyncio.Event()
        # Cleared: watches stall, like a broken stream that has not resumed.
        self.watch_open = asyncio.Event()
        self.watch_open.set()

    # --- writing (synchronous: the test is the only writer) ---------------------

    def put(self, key: str, value: str) -> int:
        self.revision += 1
        old = self.data.get(key)
        kv = KeyValue(
            key=key,
            value=value.encode(),
            mod_revision=self.revision,
            create_revision=old.create_revision if old else self.revision,
            version=old.version + 1 if old else 1,
            lease=0,
        )
        self.data[key] = kv
        self._commit([WatchEvent("put", kv)])
        return self.revision

    def delete(self, key: str) -> int:
        self.revision += 1
        del self.data[key]
        tombstone = KeyValue(key, b"", self.revision, 0, 0, 0)
        self._commit([WatchEvent("delete", tombstone)])
        return self.revision

    def delete_unknown(self, key: str) -> int:
        """A delete event for a key the mirror never saw (a stale event)."""
        self.revision += 1
        self._commit([WatchEvent("delete", KeyValue(key, b"", self.revision, 0, 0, 0))])
        return self.revision

    def touch_elsewhere(self) -> int:
        """A write outside every prefix the tests mirror."""
        self.revision += 1
        return self.revision

    def compact(self) -> None:
        self.compacted = self.revision

    def _commit(self, batch: list[WatchEvent]) -> None:
        self.history.append(batch)
        self._tick.set()
        self._tick = asyncio.Event()

    # --- the part of cloudstate.etcd.Etcd that Mirror uses -------------------------

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self.lists += 1
        if self.list_failures:
            raise self.list_failures.pop(0)
        kvs = [kv for key, kv in sorted(self.data.items()) if key.startswith(prefix)]
        return kvs, self.revision

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[list[WatchEvent]]:
        next_revision = start_revision
        position = 0
        while True:
            await self.watch_open.wait()
            if next_revision <= self.compacted:
                raise Compacted(self.compacted)
            while position < len(self.history) and self.watch_open.is_set():
                batch = [
                    event
                    for event in self.history[position]
                    if event.kv.key.startswith(prefix)
                    and event.revision >= next_revision
                    and not (self.drop_deletes and event.kind == "delete")
                ]
                position += 1
                if batch:
                    yield batch
                    next_revision = batch[-1].revision + 1
            tick = self._tick
            await tick.wait()

    async def prefix_stats(self, prefix: str, changed_after: int) -> PrefixStats:
        self.stats_calls += 1
        under = [kv for key, kv in self.data.items() if key.startswith(prefix)]
        return PrefixStats(
            keys=len(under),
            changed=any(kv.mod_revision > changed_after for kv in under),
            revision=self.revision,
        )


@dataclass
class Recorder:
    changes: list[Change] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, changes: list[Change]) -> None:
        self.changes.extend(changes)
        self.arrived.set()

    def summary(self) -> list[tuple[str, str | None, str | None]]:
        return [
            (
                c.key,
                c.old.value.decode() if c.old else None,
                c.new.value.decode() if c.new else None,
            )
            for c in self.changes
        ]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.changes) < count:
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def running(mirror: Mirror) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(mirror.run())
    try:
        async with asyncio.timeout(WAIT):
            await mirror.ready.wait()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(fake: FakeEtcd, **kwargs: float) -> tuple[Mirror, Recorder]:
    mirror = Mirror(fake, "/p/", **kwargs)  # type: ignore[arg-type]
    mirror.retry_delay = 0.01
    recorder = Recorder()
    mirror.subscribe(recorder)
    return mirror, recorder


def values(mirror: Mirror) -> dict[str, str]:
    return {kv.key: kv.value.decode() for kv in mirror.items()}


async def test_first_list_reports_every_key_as_created() -> None:
    fake = FakeEtcd()
    fake.put("/p/b", "1")
    fake.put("/p/a", "1")
    fake.put("/other/x", "1")
    mirror, recorder = make(fake)
    async with running(mirror):
        assert recorder.summary() == [("/p/a", None, "1"), ("/p/b", None, "1")]
        assert mirror.revision == fake.revision
        assert values(mirror) == {"/p/a": "1", "/p/b": "1"}


async def test_watched_changes_reach_mirror_and_subscribers() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "1")
    mirror, recorder = make(fake)
    async with running(mirror):
        recorder.changes.clear()
        fake.put("/p/b", "1")
        fake.put("/p/a", "2")
        fake.put("/other/x", "1")
        rev = fake.delete("/p/b")
        await mirror.wait_for_revision(rev, timeout=WAIT)
        assert recorder.summary() == [("/p/b", None, "1"), ("/p/a", "1", "2"), ("/p/b", "1", None)]
        assert values(mirror) == {"/p/a": "2"}
        assert fake.stats_calls == 0  # every revision came as an event


async def test_delete_of_a_key_the_mirror_never_had_is_not_a_change() -> None:
    fake = FakeEtcd()
    mirror, recorder = make(fake)
    async with running(mirror):
        ghost = fake.delete_unknown("/p/ghost")
        await mirror.wait_for_revision(ghost, timeout=WAIT)
        fake.put("/p/real", "1")
        await recorder.wait_for(1)
        assert recorder.summary() == [("/p/real", None, "1")]


async def test_compaction_makes_it_relist_and_report_what_it_missed() -> None:
    fake = FakeEtcd()
    fake.put("/p/keep", "1")
    fake.put("/p/gone", "1")
    mirror, recorder = make(fake)
    async with running(mirror):
        recorder.changes.clear()
        fake.watch_open.clear()
        fake.put("/p/keep", "2")
        fake.delete("/p/gone")
        fake.put("/p/new", "1")
        fake.compact()
        lists = fake.lists
        fake.watch_open.set()  # resumes at a compacted revision
        await recorder.wait_for(3)
        assert fake.lists == lists + 1
        assert recorder.summary() == [
            ("/p/gone", "1", None),
            ("/p/keep", "1", "2"),
            ("/p/new", None, "1"),
        ]
        assert mirror.revision == fake.revision


async def test_periodic_relist_finds_a_delete_the_watch_lost() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "1")
    fake.put("/p/b", "1")
    fake.drop_deletes = True  # etcd 3.4 near a compaction
    mirror, recorder = make(fake, resync_interval=0.05)
    async with running(mirror):
        recorder.changes.clear()
        fake.delete("/p/a")
        await recorder.wait_for(1)
        assert recorder.summary() == [("/p/a", "1", None)]
        assert values(mirror) == {"/p/b": "1"}
        # Re-lists that find nothing new stay silent.
        lists = fake.lists
        async with asyncio.timeout(WAIT):
            while fake.lists < lists + 3:
                await asyncio.sleep(0.01)
        assert len(recorder.changes) == 1


async def test_unavailable_or_failing_etcd_is_retried() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "1")
    fake.list_failures = [EtcdUnavailable("down"), RuntimeError("surprise")]
    mirror, recorder = make(fake)
    async with running(mirror) as task:
        assert fake.lists == 3
        assert not task.done()
        assert values(mirror) == {"/p/a": "1"}


async def test_listeners_are_isolated_and_can_unsubscribe() -> None:
    fake = FakeEtcd()
    mirror = Mirror(fake, "/p/")  # type: ignore[arg-type]
    seen_async: list[str] = []

    def broken(changes: list[Change]) -> None:
        raise RuntimeError("listener bug")

    async def slow(changes: list[Change]) -> None:
        await asyncio.sleep(0)  # really suspends: the mirror must await it
        seen_async.extend(c.key for c in changes)

    mirror.subscribe(broken)
    unsubscribe = mirror.subscribe(slow)
    recorder = Recorder()
    mirror.subscribe(recorder)  # last: when it has the change, so has `slow`
    async with running(mirror):
        fake.put("/p/a", "1")
        await recorder.wait_for(1)
        assert seen_async == ["/p/a"]
        unsubscribe()
        unsubscribe()  # twice is harmless
        fake.put("/p/b", "1")
        await recorder.wait_for(2)
        assert seen_async == ["/p/a"]


async def test_wait_for_revision_made_elsewhere_uses_one_check() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "1")
    mirror, _ = make(fake)
    mirror.fence_after = 0.01
    async with running(mirror):
        rev = fake.touch_elsewhere()
        await mirror.wait_for_revision(rev, timeout=WAIT)
        assert fake.stats_calls == 1
        assert mirror.revision < rev


async def test_wait_for_revision_does_not_trust_a_stale_mirror() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "1")
    mirror, _ = make(fake)
    mirror.fence_after = 0.01
    fake.drop_deletes = True  # the watch will never bring this delete
    async with running(mirror):
        fake.delete("/p/a")
        rev = fake.touch_elsewhere()
        # Same revision on every key, one key fewer: not current.
        with pytest.raises(TimeoutError):
            await mirror.wait_for_revision(rev, timeout=0.3)
        assert fake.stats_calls >= 1


async def test_wait_for_revision_that_does_not_exist_times_out() -> None:
    fake = FakeEtcd()
    mirror, _ = make(fake)
    mirror.fence_after = 0.01
    async with running(mirror):
        with pytest.raises(TimeoutError):
            await mirror.wait_for_revision(fake.revision + 5, timeout=0.2)


async def test_wait_for_revision_waits_for_the_first_list() -> None:
    fake = FakeEtcd()
    rev = fake.put("/p/a", "1")
    mirror, _ = make(fake)
    waiter = asyncio.create_task(mirror.wait_for_revision(rev, timeout=WAIT))
    await asyncio.sleep(0)
    assert not waiter.done()
    async with running(mirror):
        await waiter
        assert values(mirror) == {"/p/a": "1"}


def only_digits(_key: str, value: bytes) -> str | None:
    return None if value.isdigit() else f"{value.decode()!r} is not a number"


async def test_a_gate_keeps_refused_records_out_but_says_why() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "1")
    fake.put("/p/b", "../../etc")
    mirror, recorder = make(fake, gate=only_digits)  # type: ignore[arg-type]
    async with running(mirror):
        # Listed: the refused one is absent from the mirror, and reported refused.
        assert values(mirror) == {"/p/a": "1"}
        refused = mirror.refused("/p/b")
        assert refused is not None and refused.reason == "'../../etc' is not a number"
        assert [(c.key, c.refused) for c in recorder.changes] == [
            ("/p/a", None), ("/p/b", "'../../etc' is not a number")]
        recorder.changes.clear()

        # Watched: a good record turning bad leaves the mirror, named refused;
        # a refused one turning good comes in; deleting a refused one is said.
        fake.put("/p/a", "x")
        fake.put("/p/b", "2")
        fake.put("/p/c", "y")
        rev = fake.delete("/p/c")
        await mirror.wait_for_revision(rev, timeout=WAIT)
        assert [(c.key, c.old and c.old.value, c.new and c.new.value, c.refused)
                for c in recorder.changes] == [
            ("/p/a", b"1", None, "'x' is not a number"),
            ("/p/b", None, b"2", None),
            ("/p/c", None, None, "'y' is not a number"),
            ("/p/c", None, None, None),
        ]
        assert values(mirror) == {"/p/b": "2"}
        assert [r.kv.key for r in mirror.refused_items()] == ["/p/a"]
        # The refused record still counts as present for read-your-writes.
        rev = fake.touch_elsewhere()
        await mirror.wait_for_revision(rev, timeout=WAIT)


async def test_a_relist_reports_refusals_once_and_recoveries() -> None:
    fake = FakeEtcd()
    fake.put("/p/a", "bad")
    mirror, recorder = make(fake, gate=only_digits, resync_interval=0.05)  # type: ignore[arg-type]
    async with running(mirror):
        lists = fake.lists
        async with asyncio.timeout(WAIT):
            while fake.lists < lists + 3:
                await asyncio.sleep(0.01)
        assert [c.refused for c in recorder.changes] == ["'bad' is not a number"]
        fake.drop_deletes = True
        fake.delete("/p/a")  # the watch loses it; the next re-list finds it gone
        await recorder.wait_for(2)
        assert (recorder.changes[-1].old, recorder.changes[-1].new) == (None, None)
        assert mirror.refused("/p/a") is None


async def test_items_under_a_prefix_are_exactly_the_keys_starting_with_it() -> None:
    """``items`` looks only at the parents under its prefix (placement asks
    for the nodes among every key of the cloud): each prefix, whole families,
    nested ones and one ending inside a name, finds what a scan would."""
    fake = FakeEtcd()
    for key in ("/p/nodes/a", "/p/nodes/ab", "/p/nodes/b", "/p/on/a/instances/1",
                "/p/on/a/observed/1", "/p/on/ab/instances/2", "/p/observed/instances/1",
                "/p/top"):
        fake.put(key, "1")
    mirror, _ = make(fake)
    async with running(mirror):
        fake.delete("/p/nodes/b")
        fake.delete("/p/on/a/observed/1")
        rev = fake.put("/p/on/a/instances/3", "1")
        await mirror.wait_for_revision(rev, timeout=WAIT)
        every = set(values(mirror))
        assert every == {"/p/nodes/a", "/p/nodes/ab", "/p/on/a/instances/1",
                         "/p/on/a/instances/3", "/p/on/ab/instances/2",
                         "/p/observed/instances/1", "/p/top"}
        for prefix in ("", "/p/", "/p/nodes/", "/p/nodes/a", "/p/on/", "/p/on/a",
                       "/p/on/a/", "/p/on/a/observed/", "/p/t", "/p/nodes/b", "/q/"):
            assert {kv.key for kv in mirror.items(prefix)} == \
                {key for key in every if key.startswith(prefix)}, prefix
