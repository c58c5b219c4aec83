"""ASGI lifespan: start the live hub, the agents' events listener and the
housekeeping with the server (pruning old history, purging long-deleted
objects, giving interfaces from before security groups their default group),
stop them cleanly."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloudstate.tls import TlsError
from portal import health
from portal.accounts import audit
from portal.cloud import filtering
from portal.events import agents
from portal.events import log as eventlog
from portal.live import janitor
from portal.live.hub import hub, stop_hub
from portal.nodes import joinlistener

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 24 * 3600.0


async def prune_history() -> None:
    """Forget events and audit records past their retention, at start and
    then daily."""
    while True:
        for what, prune in (("events", eventlog.prune), ("audit records", audit.prune)):
            try:
                if deleted := await prune():
                    log.info("pruned %d %s older than the retention period", deleted, what)
            except Exception:  # noqa: BLE001 - try again tomorrow rather than stop the portal
                log.exception("pruning old %s failed", what)
        await asyncio.sleep(PRUNE_INTERVAL)


async def adopt_unfiltered_interfaces() -> None:
    """Interfaces from before security groups get their namespace's default."""
    try:
        if adopted := await filtering.adopt_unfiltered():
            log.info("gave %d interface(s) that named no security group their "
                     "namespace's default", adopted)
    except Exception:  # noqa: BLE001 - the next start tries again
        log.exception("could not give interfaces their default security group")


async def _start_joins() -> joinlistener.JoinListener | None:
    """New machines' door; the portal serves without it (no joins then)."""
    try:
        joins = joinlistener.listener()
        await joins.start()
    except (TlsError, OSError) as exc:
        log.warning("the join listener can't start (no machine can join with a token): %s",
                    exc)
        return None
    return joins


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    started = None
    listener: agents.AgentsListener | None = None
    joins: joinlistener.JoinListener | None = None
    housekeeping: list[asyncio.Task[None]] = []
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                # Without its certificate or its port the portal would lose
                # every event quietly: refuse to start instead, saying why.
                listener = agents.listener()
                await listener.start()
            except (TlsError, OSError) as exc:
                await send({"type": "lifespan.startup.failed",
                            "message": f"the agents' events listener can't start: {exc}"})
                return
            joins = await _start_joins()
            housekeeping = [asyncio.create_task(prune_history(), name="prune-history"),
                            asyncio.create_task(janitor.run(), name="janitor"),
                            asyncio.create_task(adopt_unfiltered_interfaces(),
                                                name="adopt-unfiltered")]
            try:
                started = await hub()
            except Exception as exc:  # noqa: BLE001 - the portal still serves without it
                # Pages start the hub on demand; etcd may simply not be up yet.
                log.warning("live hub not started yet: %s", exc)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            health.drain()
            for task in housekeeping:
                task.cancel()
            await asyncio.gather(*housekeeping, return_exceptions=True)
            if started is not None:
                await stop_hub()
            if listener is not None:
                await listener.stop()
            if joins is not None:
                await joins.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
