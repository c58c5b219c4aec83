"""A websocket that pushes one object's new events to its open page (used by
pages whose other content does not change live, such as a node's)."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from portal.events import log as eventlog
from portal.instances.consumers import CLOSE_UNAUTHENTICATED, event_row_oob


class NodeEventsConsumer(AsyncWebsocketConsumer):
    """Anyone logged in may see the nodes page, so its events too."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = eventlog.group_name("node", self.scope["url_route"]["kwargs"]["name"])
        await self.accept()
        await self.channel_layer.group_add(self.group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Read-only."""

    async def event_added(self, event: dict) -> None:
        await self.send(text_data=event_row_oob(event["event"]))
