"""New samples, handed to whoever is watching them as they are taken.

A topic nobody listens to costs one dict lookup per sample, so the agent does
no work for graphs nobody has open. Each listener has a short queue: one that
falls behind loses its oldest points, never the agent's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

BACKLOG = 8


class Topics:
    def __init__(self, backlog: int = BACKLOG):
        self._backlog = backlog
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    def listened(self, topic: str) -> bool:
        return bool(self._listeners.get(topic))

    @property
    def listeners(self) -> int:
        return sum(len(queues) for queues in self._listeners.values())

    @contextmanager
    def listen(self, topic: str) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._backlog)
        self._listeners.setdefault(topic, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._listeners.get(topic, set())
            queues.discard(queue)
            if not queues:
                self._listeners.pop(topic, None)

    def publish(self, topic: str, message: dict[str, Any]) -> None:
        for queue in self._listeners.get(topic, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)
