"""Running the portal's requests into each other on purpose.

``raced_transactions`` holds each of the in-process portal's etcd
transactions at the commit point until ``hold`` seconds after the first of
its wave arrived, then lets the wave go together: every request of a wave
has read etcd and prepared its transaction before any commits, which is the
moment a race is lost or won. It counts the transactions whose comparison
failed (a request that lost and went round again, or gave up): proof the
race was run, so a test of a race can't pass without one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from tests.support.inprocess import InProcessPortal


async def _portal_client() -> Any:
    """The portal's own etcd client (one per loop: read on its loop)."""
    from portal.cloud import store

    return store.etcd()


@contextlib.contextmanager
def raced_transactions(portal: InProcessPortal, hold: float = 0.25) -> Iterator[Counter[str]]:
    client = portal.loop.run(_portal_client())
    counted: Counter[str] = Counter()
    real = client.txn
    wave: dict[str, float] = {}

    async def held(*args: Any, **kwargs: Any) -> Any:
        now = asyncio.get_running_loop().time()
        if wave.get("release", 0.0) <= now:
            wave["release"] = now + hold
        await asyncio.sleep(wave["release"] - now)
        result = await real(*args, **kwargs)
        counted["won" if result.succeeded else "lost"] += 1
        return result

    client.txn = held  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        del client.txn
