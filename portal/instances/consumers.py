"""The websocket that keeps an open instance list current.

On connect it sends the whole table once (so nothing that happened between
the page load and the connect, or during a reconnect, is missed), then one
row per change. Messages are HTML fragments that htmx swaps in by id.

It only ever sends what the person may see: the instances of the namespace
they are working in (or, for members of ``system`` who chose "All
namespaces", every instance). When their access changes (a role, a
membership, their account) the socket is closed; the page reconnects and
what it may see is worked out again.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from cloudstate.model import Image
from portal.accounts.access import access_for_scope
from portal.accounts.notify import user_group
from portal.cloud.instances import InstanceRecord, visible
from portal.events import log as eventlog
from portal.instances import detail
from portal.live.hub import Hub, hub

CLOSE_UNAUTHENTICATED = 4401
CLOSE_ACCESS_CHANGED = 4403
CLOSE_NOT_FOUND = 4404


class InstanceListConsumer(AsyncWebsocketConsumer):
    hub: Hub
    scope_namespaces: frozenset[str] | None
    shown: set[str]
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        access = await access_for_scope(self.scope)
        current, everything = access.current, access.all_namespaces
        self.hub = await hub()
        self.shown = set()
        self.show_namespace = everything
        # Viewers get rows without action buttons.
        self.can_operate = access.can_operate_here
        await self.accept()
        if everything:
            self.scope_namespaces = None
            self.groups_joined.append(self.hub.everything_group)
        elif current is not None:
            self.scope_namespaces = frozenset({current})
            self.groups_joined.append(self.hub.namespace_group(current))
        else:
            self.scope_namespaces = frozenset()
        self.groups_joined.append(user_group(user.pk))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self._send_table()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The list is read-only: anything a browser sends is ignored."""

    async def access_changed(self, event: dict) -> None:
        await self.close(code=CLOSE_ACCESS_CHANGED)

    def _visible(self, record: InstanceRecord | None) -> bool:
        return (record is not None and visible(record.spec.namespace, self.scope_namespaces)
                and record.spec.desired != "deleted")

    async def _send_table(self) -> None:
        records = self.hub.instances(self.scope_namespaces)
        self.shown = {record.uuid for record in records}
        await self.send(text_data=render_to_string(
            "instances/_rows.html",
            {"records": records, "oob": True, "show_namespace": self.show_namespace,
             "can_operate": self.can_operate},
        ))

    async def instance_changed(self, event: dict) -> None:
        uuid = event["uuid"]
        record = self.hub.instance(uuid)
        if self._visible(record):
            assert record is not None
            new = uuid not in self.shown
            self.shown.add(uuid)
            html = render_to_string("instances/_row.html", {
                "record": record, "oob": not new, "show_namespace": self.show_namespace,
                "can_operate": self.can_operate})
            if new:
                html = f'<tbody hx-swap-oob="beforeend:#instance-rows">{html}</tbody>'
        elif uuid in self.shown:
            self.shown.discard(uuid)
            html = f'<tr id="instance-{uuid}" hx-swap-oob="delete"></tr>'
        else:
            return
        await self.send(text_data=html)


class InstanceDetailConsumer(AsyncWebsocketConsumer):
    """Keeps an open instance page current: its live sections when the
    instance (or one of its snapshots) changes, and its event log as events
    arrive. Someone who may not see the instance is refused, exactly as a
    missing instance is."""

    hub: Hub
    uuid: str
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.uuid = str(self.scope["url_route"]["kwargs"]["uuid"])
        self.hub = await hub()
        record = self.hub.instance(self.uuid)
        self.access = await access_for_scope(self.scope)
        if record is None or not visible(record.spec.namespace, self.access.visible):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()
        for group in (self.hub.namespace_group(record.spec.namespace), self.hub.images_group,
                      eventlog.group_name("instance", self.uuid), user_group(user.pk)):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self._send_sections()
        # Events since the page was rendered are not missed.
        await self.send(text_data=await event_rows_oob("instance", self.uuid))

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Read-only: actions go through ordinary (htmx) requests."""

    async def access_changed(self, event: dict) -> None:
        await self.close(code=CLOSE_ACCESS_CHANGED)

    async def _send_sections(self) -> None:
        record = self.hub.instance(self.uuid)
        if record is None:
            return
        context = await detail.section_context(
            record, can_operate=self.access.can_operate(record.spec.namespace))
        html = "".join(render_to_string(section, {**context, "oob": True})
                       for section in detail.LIVE_SECTIONS)
        await self.send(text_data=html)

    async def instance_changed(self, event: dict) -> None:
        if event["uuid"] == self.uuid:
            await self._send_sections()

    async def image_changed(self, event: dict) -> None:
        image = self.hub.mirror.get(self.hub.keys.image(event["uuid"]))
        if image is not None and Image.from_json(image.value).instance_uuid == self.uuid:
            await self._send_sections()

    async def event_added(self, event: dict) -> None:
        await self.send(text_data=event_row_oob(event["event"]))


def event_row_oob(event: dict) -> str:
    row = render_to_string("events/_row.html", {"event": event})
    return f'<tbody hx-swap-oob="afterbegin:#event-rows">{row}</tbody>'


async def event_rows_oob(kind: str, uuid: str) -> str:
    """The whole event table body, replacing the page's."""
    found = await eventlog.list_events(kind, uuid, limit=detail.EVENTS_SHOWN)
    rows = "".join(render_to_string("events/_row.html", {"event": event.as_api()})
                   for event in found)
    return f'<tbody id="event-rows" hx-swap-oob="true">{rows}</tbody>'
