"""An in-memory copy of a part of etcd, kept current by a watch.

Both the node agent and the portal need to react to changes rather than poll.
A Mirror lists a prefix once, then follows a watch from the next revision.
Because etcd 3.4 watches can miss a delete near a compaction and no watch
survives every failure, it also re-lists when etcd says the history is gone
and re-lists and diffs on a slow timer; either way subscribers are told only
about keys that really changed.

A mirror may have a gate: a check each record must pass to be mirrored at
all (the node agent's, which acts as root on what it reads). A record the
gate refuses is not in the mirror, as if absent, but is kept aside with the
reason (``refused``), so a reader can tell "gone" from "refused" and report
the refusal rather than act on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cloudstate.etcd import Compacted, Etcd, EtcdUnavailable, KeyValue, WatchEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    key: str
    old: KeyValue | None  # None: the key was created (or its last value was refused)
    new: KeyValue | None  # None: the key was deleted, or its new value refused
    refused: str | None = None  # why the gate refused the new value


@dataclass(frozen=True)
class Refused:
    kv: KeyValue
    reason: str


Listener = Callable[[list[Change]], Awaitable[None] | None]
# A record's key and value -> None if it may be mirrored, else why not.
Gate = Callable[[str, bytes], str | None]


class MirrorView(Protocol):
    """What readers of a mirror use: a Mirror, or several read as one
    (cloudstate.scopedmirror)."""

    ready: asyncio.Event

    def get(self, key: str) -> KeyValue | None: ...

    def items(self, prefix: str = "") -> Iterator[KeyValue]: ...

    def refused(self, key: str) -> Refused | None: ...

    def refused_items(self, prefix: str = "") -> list[Refused]: ...

    def subscribe(self, listener: Listener) -> Callable[[], None]: ...

    async def wait_for_revision(self, revision: int, timeout: float = 10.0, *,
                                keys: Iterable[str] = ()) -> None: ...


class Mirror:
    # How long to wait before retrying after etcd failed or a bug surfaced.
    retry_delay = 1.0
    # wait_for_revision's grace for the watch to deliver a revision before it
    # asks etcd whether anything under the prefix changed at all.
    fence_after = 0.1

    def __init__(self, etcd: Etcd, prefix: str, *, resync_interval: float = 300.0,
                 gate: Gate | None = None, shown_as: str | None = None):
        """``shown_as``: readers see keys under ``prefix`` as under this
        prefix instead (a node's copies of its records, read as the records
        themselves: nodeagent.scope)."""
        self._etcd = etcd
        self._prefix = prefix
        self._shown_as = shown_as
        self._resync_interval = resync_interval
        self._gate = gate
        self._data: dict[str, KeyValue] = {}
        # The same values by parent (a key up to its last "/"): ``items``
        # looks only at the parents under its prefix, not at every key (a
        # placement lists the nodes among tens of thousands of keys).
        self._by_parent: dict[str, dict[str, KeyValue]] = {}
        self._refused: dict[str, Refused] = {}
        self._listeners: list[Listener] = []
        self.revision = 0
        self.ready = asyncio.Event()
        self._progress = asyncio.Condition()

    # --- reading --------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        return self._data.get(key)

    def items(self, prefix: str = "") -> Iterator[KeyValue]:
        """Values under ``prefix`` (a snapshot: safe to mutate the mirror meanwhile)."""
        found: list[KeyValue] = []
        for parent, children in self._by_parent.items():
            if parent.startswith(prefix):
                found += children.values()
            elif prefix.startswith(parent):  # the prefix ends inside this parent's names
                found += [kv for key, kv in children.items() if key.startswith(prefix)]
        return iter(found)

    def _put(self, kv: KeyValue) -> None:
        self._data[kv.key] = kv
        self._by_parent.setdefault(_parent(kv.key), {})[kv.key] = kv

    def _drop(self, key: str) -> None:
        if self._data.pop(key, None) is None:
            return
        parent = _parent(key)
        children = self._by_parent[parent]
        del children[key]
        if not children:
            del self._by_parent[parent]

    def refused(self, key: str) -> Refused | None:
        """The record at ``key`` the gate refused (and why), if it did."""
        return self._refused.get(key)

    def refused_items(self, prefix: str = "") -> list[Refused]:
        return [r for key, r in self._refused.items() if key.startswith(prefix)]

    def _check(self, kv: KeyValue) -> str | None:
        if self._gate is None:
            return None
        try:
            return self._gate(kv.key, kv.value)
        except Exception as exc:  # noqa: BLE001 - a gate that breaks refuses, loudly
            log.exception("checking %s failed", kv.key)
            return f"could not be checked ({exc})"

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(changes)`` after every applied batch; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- running --------------------------------------------------------------

    async def run(self) -> None:
        """Follow etcd until cancelled."""
        while True:
            try:
                await self._relist()
                try:
                    # The timeout is the periodic re-list: it cancels the
                    # watch, and the loop lists again and diffs.
                    await asyncio.wait_for(self._follow(), self._resync_interval)
                except TimeoutError:
                    pass
            except Compacted as exc:
                log.info("mirror of %s fell behind compaction (%s); re-listing", self._prefix, exc)
            except EtcdUnavailable as exc:
                log.warning("mirror of %s: etcd unavailable (%s); retrying", self._prefix, exc)
                await asyncio.sleep(self.retry_delay)
            except Exception:
                # A mirror that stops silently leaves its owner acting on stale
                # data for ever; keep trying and make the cause loud instead.
                log.exception("mirror of %s failed; re-listing", self._prefix)
                await asyncio.sleep(self.retry_delay)

    def _shown(self, kv: KeyValue) -> KeyValue:
        if self._shown_as is None:
            return kv
        return dataclasses.replace(kv, key=self._shown_as + kv.key[len(self._prefix):])

    async def _relist(self) -> None:
        kvs, revision = await self._etcd.get_prefix(self._prefix)
        kvs = [self._shown(kv) for kv in kvs]
        fresh: dict[str, KeyValue] = {}
        refused: dict[str, Refused] = {}
        for kv in kvs:
            known = self._refused.get(kv.key)
            if known is not None and known.kv.mod_revision == kv.mod_revision:
                refused[kv.key] = known  # checked already
            elif (reason := self._check(kv)) is None:
                fresh[kv.key] = kv
            else:
                refused[kv.key] = Refused(kv, reason)
        changes = []
        for key in sorted(self._data.keys() | fresh.keys() | self._refused.keys()
                          | refused.keys()):
            old, new = self._data.get(key), fresh.get(key)
            now, before = refused.get(key), self._refused.get(key)
            if now is not None:
                if before is None or before.kv.mod_revision != now.kv.mod_revision:
                    changes.append(Change(key, old, None, refused=now.reason))
            elif before is not None or _differs(old, new):
                # A refused value was never mirrored: from the readers' side,
                # the key goes from nothing to ``new`` (or stays absent).
                changes.append(Change(key, old, new))
        self._data, self._by_parent = {}, {}
        for kv in fresh.values():
            self._put(kv)
        self._refused = refused
        self.revision = revision
        self.ready.set()
        await self._notify(changes)

    async def _follow(self) -> None:
        # aclosing: when the periodic re-list cancels us while a listener
        # runs, the watch generator is suspended at its yield; close it now
        # rather than leave its gRPC stream open until garbage collection.
        watch = self._etcd.watch_prefix(self._prefix, self.revision + 1)
        async with contextlib.aclosing(watch) as batches:
            async for batch in batches:
                await self._apply(batch)

    async def _apply(self, batch: list[WatchEvent]) -> None:
        changes = []
        for event in batch:
            if self._shown_as is not None:
                event = dataclasses.replace(event, kv=self._shown(event.kv))
            key = event.kv.key
            old = self._data.get(key)
            was_refused = self._refused.pop(key, None)
            if event.kind == "delete":
                self._drop(key)
                if old is not None or was_refused is not None:
                    changes.append(Change(key, old, None))
            elif (reason := self._check(event.kv)) is None:
                self._put(event.kv)
                changes.append(Change(key, old, event.kv))
            else:
                self._drop(key)
                self._refused[key] = Refused(event.kv, reason)
                changes.append(Change(key, old, None, refused=reason))
        self.revision = batch[-1].revision
        await self._notify(changes)

    async def _notify(self, changes: list[Change]) -> None:
        async with self._progress:
            self._progress.notify_all()
        if not changes:
            return
        for listener in list(self._listeners):
            try:
                result = listener(changes)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("mirror listener failed")

    async def wait_for_revision(self, revision: int, timeout: float = 10.0, *,
                                keys: Iterable[str] = ()) -> None:
        """Wait until the mirror reflects every change under its prefix up to
        ``revision`` (read-your-writes); raises ``TimeoutError``. ``keys``:
        what the caller wrote at that revision, for a scoped mirror to wait
        on the parts holding them only (one mirror holds them all).

        The watch moves ``self.revision`` only when something under the
        prefix changes, so a revision made by a write elsewhere (or returned
        by a failed txn) may never arrive as an event. If the watch has not
        delivered it within ``fence_after``, one consistent read decides:
        if nothing under the prefix changed after the mirror's revision, the
        mirror is already current.
        """
        async with asyncio.timeout(timeout):
            grace = self.fence_after
            while self.revision < revision:
                seen = self.revision
                if await self._progress_within(seen, grace):
                    continue
                grace = 1.0  # later rounds poll only for a revision not yet made
                if not self.ready.is_set():
                    continue
                known = len(self._data) + len(self._refused)
                stats = await self._etcd.prefix_stats(self._prefix, seen)
                if (
                    stats.revision >= revision
                    and not stats.changed
                    and stats.keys == known
                    and self.revision == seen
                ):
                    return

    async def _progress_within(self, seen: int, delay: float) -> bool:
        """Wait up to ``delay`` for the mirror to move past ``seen``."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._progress.wait_for(lambda: self.revision > seen)
            return self.revision > seen


def _parent(key: str) -> str:
    return key[:key.rfind("/") + 1]


def _differs(a: KeyValue | None, b: KeyValue | None) -> bool:
    if a is None or b is None:
        return a is not b
    return a.mod_revision != b.mod_revision
