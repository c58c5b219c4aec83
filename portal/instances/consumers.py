"""The websocket that keeps an open instance list current.

On connect it sends the whole table once (so nothing that happened between
the page load and the connect, or during a reconnect, is missed), then one
row per change. Messages are HTML fragments that htmx swaps in by id.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from portal.accounts.access import SESSION_KEY
from portal.accounts.models import Membership
from portal.cloud.instances import InstanceRecord
from portal.live.hub import Hub, hub

CLOSE_UNAUTHENTICATED = 4401


@database_sync_to_async
def _memberships(user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(Membership.objects.filter(user=user).values_list("namespace__name", "role"))


class InstanceListConsumer(AsyncWebsocketConsumer):
    hub: Hub
    namespace: str | None
    shown: set[str]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        memberships = await _memberships(user)
        current = self.scope["session"].get(SESSION_KEY)
        self.namespace = current if current in memberships else (
            min(memberships) if memberships else None)
        self.hub = await hub()
        self.shown = set()
        await self.accept()
        if self.namespace is not None:
            await self.channel_layer.group_add(self.hub.namespace_group(self.namespace),
                                               self.channel_name)
        await self._send_table()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "namespace", None) is not None and hasattr(self, "hub"):
            await self.channel_layer.group_discard(self.hub.namespace_group(self.namespace),
                                                   self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The list is read-only: anything a browser sends is ignored."""

    def _visible(self, record: InstanceRecord | None) -> bool:
        return (record is not None and record.spec.namespace == self.namespace
                and record.spec.desired != "deleted")

    async def _send_table(self) -> None:
        records = self.hub.instances(frozenset({self.namespace}) if self.namespace else frozenset())
        self.shown = {record.uuid for record in records}
        await self.send(text_data=render_to_string(
            "instances/_rows.html", {"records": records, "oob": True}
        ))

    async def instance_changed(self, event: dict) -> None:
        uuid = event["uuid"]
        record = self.hub.instance(uuid)
        if self._visible(record):
            assert record is not None
            new = uuid not in self.shown
            self.shown.add(uuid)
            html = render_to_string("instances/_row.html", {"record": record, "oob": not new})
            if new:
                html = f'<tbody hx-swap-oob="beforeend:#instance-rows">{html}</tbody>'
        elif uuid in self.shown:
            self.shown.discard(uuid)
            html = f'<tr id="instance-{uuid}" hx-swap-oob="delete"></tr>'
        else:
            return
        await self.send(text_data=html)
