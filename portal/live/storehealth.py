"""Whether this portal process reaches etcd, for the live pages' banner.

The hub's watch reconnects by itself when etcd goes away (cloudstate.etcd),
so it never says that etcd is gone: a page would go on showing "Live" over
a picture that no longer moves. A probe asks etcd for its revision every
PROBE_INTERVAL; when the answer stops coming (or comes back) it tells its
owner, which tells every live page. Coming back counts only once the mirror
has caught up with etcd, so a page that resyncs then shows what is true.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cloudstate.etcd import Etcd, EtcdUnavailable
from cloudstate.mirror import Mirror

log = logging.getLogger(__name__)

# How often etcd is asked, and how long an answer may take before it counts
# as gone: a banner within about PROBE_INTERVAL + PROBE_TIMEOUT (5 s).
PROBE_INTERVAL = 2.0
PROBE_TIMEOUT = 3.0
# How long the mirror may take to catch up once etcd answers again.
CATCH_UP_TIMEOUT = 10.0


class StoreHealth:
    def __init__(self, etcd: Etcd, mirror: Mirror,
                 on_change: Callable[[bool], Awaitable[None]]):
        self._etcd = etcd
        self._mirror = mirror
        self._on_change = on_change
        self.reachable = True

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            reachable = await self._probe()
            if reachable != self.reachable:
                self.reachable = reachable
                if reachable:
                    log.warning("etcd reachable again; live pages resync")
                else:
                    log.warning("etcd unreachable; live pages show it")
                try:
                    await self._on_change(reachable)
                except Exception:  # noqa: BLE001 - the next change is told all the same
                    log.exception("telling the live pages about etcd failed")
            await asyncio.sleep(PROBE_INTERVAL)

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                revision = await self._etcd.revision()
        except (EtcdUnavailable, TimeoutError):
            return False
        if self.reachable:
            return True
        # Back: reachable once the mirror holds etcd's state as of now.
        try:
            await self._mirror.wait_for_revision(revision, timeout=CATCH_UP_TIMEOUT)
        except (EtcdUnavailable, TimeoutError):
            return False
        return True
