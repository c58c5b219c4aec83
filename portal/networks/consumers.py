"""Websockets that keep the network pages current: the list (every network
the person may see) and one network's page (its state, its interfaces and
their instances' state, and its event log)."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from portal.accounts.access import access_for_scope
from portal.accounts.notify import user_group
from portal.cloud import networks
from portal.cloud.errors import NotFound
from portal.events import log as eventlog
from portal.instances.consumers import (
    CLOSE_ACCESS_CHANGED,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    event_row_oob,
    event_rows_oob,
)
from portal.live.hub import hub
from portal.networks.views import detail_context, list_context


class NetworksConsumer(AsyncWebsocketConsumer):
    uuid: str | None
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.access = await access_for_scope(self.scope)
        kwargs = self.scope["url_route"]["kwargs"]
        self.uuid = str(kwargs["uuid"]) if "uuid" in kwargs else None
        groups = [(await hub()).networks_group, user_group(user.pk)]
        if self.uuid is not None:
            try:
                await networks.get(self.uuid, self.access.visible)
            except NotFound:
                await self.close(code=CLOSE_NOT_FOUND)
                return
            groups.append(eventlog.group_name("network", self.uuid))
        await self.accept()
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        # Whatever changed between the page's render and now.
        await self._send()
        if self.uuid is not None:
            await self.send(text_data=await event_rows_oob("network", self.uuid))

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Read-only."""

    async def access_changed(self, event: dict) -> None:
        await self.close(code=CLOSE_ACCESS_CHANGED)

    async def _send(self) -> None:
        if self.uuid is None:
            records = await networks.list_networks(self.access.scope)
            html = render_to_string("networks/_rows.html",
                                    {**list_context(records, self.access), "oob": True})
        else:
            try:
                record = await networks.get(self.uuid, self.access.visible)
            except NotFound:
                return
            context = {**await detail_context(record), "oob": True}
            html = render_to_string("networks/_overview.html", context) + \
                render_to_string("networks/_interface_rows.html", context)
        await self.send(text_data=html)

    async def network_changed(self, event: dict) -> None:
        # The list shows every network the person may see; re-reading it is
        # one range read, and a person only ever sees their own namespaces'.
        if self.uuid is None or event["uuid"] == self.uuid:
            await self._send()

    async def event_added(self, event: dict) -> None:
        await self.send(text_data=event_row_oob(event["event"]))
