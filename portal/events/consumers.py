"""A websocket that pushes one object's new events to its open page (used by
pages whose other content does not change live, such as a node's)."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from portal.accounts.access import access_for_scope
from portal.accounts.notify import user_group
from portal.events import log as eventlog
from portal.instances.consumers import (
    CLOSE_ACCESS_CHANGED,
    CLOSE_UNAUTHENTICATED,
    event_row_oob,
    event_rows_oob,
)


class NodeEventsConsumer(AsyncWebsocketConsumer):
    """Nodes carry every namespace's instances: only members of system see
    them, or their events."""

    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated \
                or not (await access_for_scope(self.scope)).is_system:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        name = self.scope["url_route"]["kwargs"]["name"]
        await self.accept()
        for group in (eventlog.group_name("node", name), user_group(user.pk)):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.send(text_data=await event_rows_oob("node", name))

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Read-only."""

    async def access_changed(self, event: dict) -> None:
        await self.close(code=CLOSE_ACCESS_CHANGED)

    async def event_added(self, event: dict) -> None:
        await self.send(text_data=event_row_oob(event["event"]))
