"""The websockets of the instance pages.

The list sends the whole table once, then one row per change. It only ever
sends what the person may see: the instances of the namespace they are
working in (or, for members of ``system`` who chose "All namespaces", every
instance). The rest (sessions, access changes, reconnects) is LivePage's.
"""

from __future__ import annotations

from django.template.loader import render_to_string

from cloudstate.model import Image
from portal.cloud.instances import InstanceRecord, visible
from portal.instances import detail
from portal.live.hub import Hub, hub
from portal.live.pages import LivePage
from portal.networks.views import interfaces_context


class InstanceListConsumer(LivePage):
    hub: Hub
    scope_namespaces: frozenset[str] | None
    shown: set[str]

    async def admit(self) -> list[str]:
        current, everything = self.access.current, self.access.all_namespaces
        self.hub = await hub()
        self.shown = set()
        self.show_namespace = everything
        # Viewers get rows without action buttons.
        self.can_operate = self.access.can_operate_here
        if everything:
            self.scope_namespaces = None
            return [self.hub.everything_group]
        if current is not None:
            self.scope_namespaces = frozenset({current})
            return [self.hub.namespace_group(current)]
        self.scope_namespaces = frozenset()
        return []

    def _visible(self, record: InstanceRecord | None) -> bool:
        return (record is not None and visible(record.spec.namespace, self.scope_namespaces)
                and record.spec.desired != "deleted")

    async def refresh(self) -> None:
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


class InstanceDetailConsumer(LivePage):
    """Keeps an open instance page current: its live sections when the
    instance (or one of its snapshots) changes, and its event log as events
    arrive. Someone who may not see the instance is refused, exactly as a
    missing instance is."""

    hub: Hub
    uuid: str

    async def admit(self) -> list[str] | None:
        self.uuid = str(self.scope["url_route"]["kwargs"]["uuid"])
        self.hub = await hub()
        record = self.hub.instance(self.uuid)
        if record is None or not visible(record.spec.namespace, self.access.visible):
            return None
        self.events_of = ("instance", self.uuid)
        return [self.hub.namespace_group(record.spec.namespace), self.hub.images_group]

    async def refresh(self) -> None:
        record = self.hub.instance(self.uuid)
        if record is None:
            return
        can_operate = self.access.can_operate(record.spec.namespace)
        context = await detail.section_context(record, can_operate=can_operate)
        html = "".join(render_to_string(section, {**context, "oob": True})
                       for section in detail.LIVE_SECTIONS)
        await self.send(text_data=html)
        # Its interfaces: their groups and what their hypervisor has in force.
        await self.send(text_data=render_to_string(
            "networks/_instance_interfaces.html",
            {**await interfaces_context(record, can_operate), "oob": True}))

    async def instance_changed(self, event: dict) -> None:
        if event["uuid"] == self.uuid:
            await self.refresh()

    async def image_changed(self, event: dict) -> None:
        image = self.hub.mirror.get(self.hub.keys.image(event["uuid"]))
        if image is not None and Image.from_json(image.value).instance_uuid == self.uuid:
            await self.refresh()
