"""Work done once however many ask for it.

Fetching a blob or converting one to qcow2 takes long, and several callers
(instances starting together, a pre-cache pass) may want the same one at
the same time. The first caller starts the work; the others share it and
its outcome, success or failure. One caller giving up (cancelled) does not
cancel it for the rest. Each caller may listen to its progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
ProgressCallback = Callable[[int, int | None], None]
Start = Callable[[list[ProgressCallback]], Awaitable[T]]


@dataclass
class _Running(Generic[T]):
    task: asyncio.Task[T]
    listeners: list[ProgressCallback]


class Shared(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, _Running[T]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._running

    def __bool__(self) -> bool:
        return bool(self._running)

    async def run(self, key: str, start: Start[T],
                  on_progress: ProgressCallback | None = None) -> T:
        """The outcome of the work for ``key``: ``start(listeners)`` begun
        now, or the run already under way."""
        running = self._running.get(key)
        if running is None:
            listeners: list[ProgressCallback] = []
            running = _Running(task=asyncio.create_task(start(listeners)), listeners=listeners)
            self._running[key] = running
            running.task.add_done_callback(lambda _t, r=running: self._finished(key, r))
        if on_progress is not None:
            running.listeners.append(on_progress)
        # Shielded so one caller giving up does not cancel the others' work.
        return await asyncio.shield(running.task)

    def _finished(self, key: str, running: _Running[T]) -> None:
        if self._running.get(key) is running:
            del self._running[key]
        # Mark the outcome as seen: if every caller gave up, nobody else will.
        if not running.task.cancelled():
            running.task.exception()

    async def close(self) -> None:
        """Cancel everything under way (the agent stops); each run cleans up
        after itself."""
        tasks = [running.task for running in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
