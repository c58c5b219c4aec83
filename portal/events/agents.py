"""The websocket node agents send their events to.

An agent is not a browser: it has no session and sends no Origin. It proves
which node it is with a short-lived token signed with the cluster secret
(cloudstate.signing), sent as a bearer token in the handshake. It then sends
batches of events; each batch is stored before it is acknowledged, by id, so
an agent deletes its copy only once the portal has it, and a batch sent
again after a lost acknowledgement is stored once.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from cloudstate import signing
from cloudstate.validation import ValidationError
from portal.events import log as eventlog

log = logging.getLogger(__name__)

PURPOSE = "agent-events"
PATH = "ws/agent/events/"
MAX_BATCH = 500
CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_MESSAGE = 4400


@functools.cache
def cluster_secret() -> bytes:
    return signing.load_secret(settings.CLOUD.state_dir)


def bearer(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class AgentEventsConsumer(AsyncJsonWebsocketConsumer):
    node: str

    async def connect(self) -> None:
        try:
            claims = signing.verify(cluster_secret(), PURPOSE, bearer(self.scope))
        except (signing.BadSignature, RuntimeError) as exc:
            log.warning("refused an agent event stream: %s", exc)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        node = claims.get("node")
        if not isinstance(node, str) or not node:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.node = node
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        batch = content.get("events") if isinstance(content, dict) else None
        if not isinstance(batch, list) or len(batch) > MAX_BATCH:
            await self.close(code=CLOSE_BAD_MESSAGE)
            return
        events, acked = [], []
        for raw in batch:
            try:
                events.append(eventlog.from_agent(raw, node=self.node))
            except ValidationError as exc:
                # Acknowledged all the same: sending it again would not make
                # it valid, and it must not block the events behind it.
                log.warning("dropped an event from %s: %s", self.node, exc)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                acked.append(raw["id"])
        await eventlog.store(events)
        await self.send_json({"ack": acked})
