"""The agent's periodic chores (its record's refresh, the full sweep),
run so that a failed round never ends the agent.

They run in the agent's task group, where an exception that escapes a task
ends every task and the agent with it. etcd gone for longer than a chore's
interval made its write raise, and the agent died in the middle of an
outage it is built to ride out (found by the 3-minute etcd outage in
tests/integration/test_etcd_outage.py). A failed round is logged and the
chore tried again at its next interval, as the usage sampler does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cloudstate.etcd import EtcdUnavailable

log = logging.getLogger(__name__)


async def every(interval: float, chore: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``chore`` every ``interval`` seconds (first after one interval)
    until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await chore()
        except EtcdUnavailable as exc:
            log.warning("%s: etcd unavailable (%s); trying again in %.0f s", what, exc, interval)
        except Exception:  # noqa: BLE001 - a missed round is not worth the agent's life
            log.exception("%s failed; trying again in %.0f s", what, interval)
