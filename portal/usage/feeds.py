"""Live samples from node agents, followed by an open page for as long as it
is open.

A page says which (node, topic) pairs it wants; each is followed in a task
of its own, which reconnects after a pause when the node restarts, goes
offline or does not answer (the page is told, so it can say so), and is
cancelled when the page no longer wants it or closes. Nothing is followed
while no page is open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from portal.cloud import usage
from portal.cloud.errors import CloudError

log = logging.getLogger(__name__)

RETRY = (1.0, 2.0, 5.0, 10.0)  # seconds between attempts, the last repeated

Feed = tuple[str, str]  # (node, topic)
OnSample = Callable[[Feed, dict[str, Any]], Awaitable[None]]
OnState = Callable[[Feed, str | None], Awaitable[None]]  # None: live; else why not


class AgentFeeds:
    def __init__(self, on_sample: OnSample, on_state: OnState | None = None):
        self._on_sample = on_sample
        self._on_state = on_state
        self._tasks: dict[Feed, asyncio.Task[None]] = {}

    def want(self, feeds: set[Feed]) -> None:
        """Follow exactly ``feeds`` from now on."""
        for feed in self._tasks.keys() - feeds:
            self._tasks.pop(feed).cancel()
        for feed in feeds - self._tasks.keys():
            self._tasks[feed] = asyncio.create_task(self._follow(feed),
                                                    name=f"usage-feed-{feed[0]}-{feed[1]}")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, feed: Feed) -> None:
        node, topic = feed
        failures = 0
        while True:
            reason = "the node's agent closed the feed"
            try:
                async with usage.follow(node, topic) as samples:
                    failures = 0
                    await self._state(feed, None)
                    async for sample in samples:
                        await self._on_sample(feed, sample)
            except CloudError as exc:
                reason = exc.message
            except (OSError, TimeoutError, ValueError) as exc:
                reason = f"node {node}'s agent does not answer ({exc})"
            await self._state(feed, reason)
            await asyncio.sleep(RETRY[min(failures, len(RETRY) - 1)])
            failures += 1

    async def _state(self, feed: Feed, reason: str | None) -> None:
        if self._on_state is not None:
            await self._on_state(feed, reason)
