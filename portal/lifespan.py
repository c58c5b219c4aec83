"""ASGI lifespan: start the live hub with the server, stop it cleanly."""

from __future__ import annotations

import logging
from typing import Any

from portal.live.hub import hub

log = logging.getLogger(__name__)


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    started = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                started = await hub()
            except Exception as exc:  # noqa: BLE001 - the portal still serves without it
                # Pages start the hub on demand; etcd may simply not be up yet.
                log.warning("live hub not started yet: %s", exc)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if started is not None:
                await started.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
