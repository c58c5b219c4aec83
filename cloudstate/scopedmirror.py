"""Several mirrors, each of one prefix, read as one.

A process that needs only some families of keys (a node agent: its own
node's instances, not the whole cloud's) follows each with a Mirror of its
own and reads them through this, exactly as it would read one Mirror of the
root: ``get``, ``items``, ``refused``, ``subscribe``, ``wait_for_revision``.
A part may show its keys under another prefix (Mirror's ``shown_as``), so
readers never learn where a family really lives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cloudstate.etcd import Etcd, KeyValue
from cloudstate.mirror import Gate, Listener, Mirror, Refused


@dataclass(frozen=True)
class Part:
    """A prefix to follow, and the prefix readers see it under."""

    prefix: str
    shown_as: str | None = None

    @property
    def shown(self) -> str:
        return self.shown_as if self.shown_as is not None else self.prefix


class ScopedMirror:
    def __init__(self, etcd: Etcd, parts: list[Part], *, resync_interval: float = 300.0,
                 gate: Gate | None = None):
        shown = [part.shown for part in parts]
        for a in shown:
            if any(a != b and a.startswith(b) for b in shown):
                raise ValueError(f"{a} is inside another part of the scope")
        self._parts = [(part.shown, Mirror(etcd, part.prefix, resync_interval=resync_interval,
                                            gate=gate, shown_as=part.shown_as))
                       for part in parts]
        self.ready = asyncio.Event()

    def _holding(self, key: str) -> Mirror | None:
        for shown, mirror in self._parts:
            if key.startswith(shown):
                return mirror
        return None

    def _overlapping(self, prefix: str) -> Iterator[Mirror]:
        for shown, mirror in self._parts:
            if shown.startswith(prefix) or prefix.startswith(shown):
                yield mirror

    # --- reading, as Mirror ---------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        mirror = self._holding(key)
        return mirror.get(key) if mirror is not None else None

    def items(self, prefix: str = "") -> Iterator[KeyValue]:
        return iter([kv for mirror in self._overlapping(prefix) for kv in mirror.items(prefix)])

    def refused(self, key: str) -> Refused | None:
        mirror = self._holding(key)
        return mirror.refused(key) if mirror is not None else None

    def refused_items(self, prefix: str = "") -> list[Refused]:
        return [r for mirror in self._overlapping(prefix) for r in mirror.refused_items(prefix)]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        undo = [mirror.subscribe(listener) for _, mirror in self._parts]

        def unsubscribe() -> None:
            for one in undo:
                one()

        return unsubscribe

    @property
    def revision(self) -> int:
        """The revision every part has reached."""
        return min(mirror.revision for _, mirror in self._parts)

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _, mirror in self._parts:
                group.create_task(mirror.run())
            for _, mirror in self._parts:
                await mirror.ready.wait()
            self.ready.set()

    async def wait_for_revision(self, revision: int, timeout: float = 10.0, *,
                                keys: Iterable[str] = ()) -> None:
        """Every part holding ``keys`` (what the caller wrote at ``revision``),
        or every part if none is named, reflects every change under its
        prefix up to ``revision``. A part nothing changed in learns it only
        from etcd after a grace (Mirror.fence_after): name the keys."""
        wanted = {id(m): m for key in keys if (m := self._holding(key)) is not None}
        parts = list(wanted.values()) if keys else [mirror for _, mirror in self._parts]
        await asyncio.gather(*(mirror.wait_for_revision(revision, timeout) for mirror in parts))
