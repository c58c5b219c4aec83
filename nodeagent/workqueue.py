"""A de-duplicating work queue: keys in, one handler call per key at a time.

Reconciling is level-triggered: a key means "look at this object again",
not "apply this change". So ten events for one instance while it is being
handled collapse into one more pass afterwards, and two passes for the same
key never run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, handler: Callable[[str], Awaitable[None]], *, workers: int = 4):
        self._handler = handler
        self._workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._dirty: set[str] = set()  # re-add once the running pass ends
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: str) -> None:
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._idle.clear()
            self._queue.put_nowait(key)

    @property
    def waiting(self) -> int:
        """Keys queued for a pass (a key being handled and queued again counts)."""
        return len(self._queued) + len(self._dirty)

    @property
    def in_progress(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(self._workers):
                group.create_task(self._work())

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                await self._handler(key)
            except Exception:
                log.exception("handling %s failed", key)
            finally:
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                elif not self._queued and not self._running:
                    self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()
