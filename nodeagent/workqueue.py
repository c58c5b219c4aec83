"""A de-duplicating work queue: keys in, one handler call per key at a time.

Reconciling is level-triggered: a key means "look at this object again",
not "apply this change". So ten events for one instance while it is being
handled collapse into one more pass afterwards, and two passes for the same
key never run at once.

A pass that fails (etcd gone for a while, libvirt restarting) is tried
again by itself, after a delay that doubles with each failure in a row, up
to RETRY_MAX: nothing else may ever mention that key again (an instance
being deleted while etcd was down has no further change to wake it), and
the periodic sweep is minutes away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class WorkQueue:
    def __init__(self, handler: Callable[[str], Awaitable[None]], *, workers: int = 4,
                 retry_first: float = RETRY_FIRST, retry_max: float = RETRY_MAX):
        self._handler = handler
        self._workers = workers
        self._retry_first, self._retry_max = retry_first, retry_max
        self._failures: dict[str, int] = {}  # failed passes in a row, by key
        self._retries: dict[str, asyncio.TimerHandle] = {}
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
        """Keys queued for a pass (a key being handled and queued again, or
        waiting to retry, counts)."""
        return len(self._queued) + len(self._dirty) + len(self._retries)

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
                self._retry_later(key)
            else:
                self._failures.pop(key, None)
            finally:
                self._running.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                elif not self._queued and not self._running and not self._retries:
                    self._idle.set()

    def _retry_later(self, key: str) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self._retry_first * 2 ** (failures - 1), self._retry_max)
        log.exception("handling %s failed (%d in a row); trying again in %.0f s", key,
                      failures, delay)
        if key not in self._retries:
            self._retries[key] = asyncio.get_running_loop().call_later(
                delay, self._retry, key)

    def _retry(self, key: str) -> None:
        self._retries.pop(key, None)
        self.add(key)

    async def wait_idle(self) -> None:
        await self._idle.wait()
