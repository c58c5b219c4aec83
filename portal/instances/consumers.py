"""The websockets of the instance pages.

The list sends the whole table once, then one row per change. It only ever
sends what the person may see: the instances of the namespace they are
working in (or, for members of ``system`` who chose "All namespaces", every
instance). It also follows the CPU figures of the nodes those instances are
on, and sends each instance's CPU cell as its node samples it. The rest
(sessions, access changes, reconnects) is LivePage's.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from cloudstate import usage as usage_contract
from portal.cloud import usage
from portal.cloud.instances import InstanceRecord, visible
from portal.instances import detail
from portal.live.hub import Hub, hub
from portal.live.pages import LivePage
from portal.usage.feeds import AgentFeeds, Feed


class InstanceListConsumer(LivePage):
    hub: Hub
    scope_namespaces: frozenset[str] | None
    shown: set[str]
    figures: dict[str, dict[str, Any]]  # instance uuid -> its figures now
    feeds: AgentFeeds | None = None

    async def admit(self) -> list[str]:
        current, everything = self.access.current, self.access.all_namespaces
        self.hub = await hub()
        self.shown = set()
        self.figures = {}
        self.feeds = AgentFeeds(self._node_summary)
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

    async def disconnect(self, code: int) -> None:
        if self.feeds is not None:
            await self.feeds.close()
        await super().disconnect(code)

    async def refresh(self) -> None:
        records = self.hub.instances(self.scope_namespaces)
        self.shown = {record.uuid for record in records}
        nodes = {record.spec.node for record in records if record.spec.node}
        if not self.figures and nodes:
            self.figures = usage.instance_figures(await usage.summaries(nodes))
        self._follow(nodes)
        await self.send(text_data=render_to_string(
            "instances/_rows.html",
            {"records": records, "oob": True, "show_namespace": self.show_namespace,
             "can_operate": self.can_operate, "usage": self.figures},
        ))

    def _follow(self, nodes: set[str]) -> None:
        """Follow the figures of exactly these nodes (those of the rows shown)."""
        if self.feeds is not None:
            self.feeds.want({(node, usage_contract.SUMMARY_TOPIC) for node in nodes})

    async def _node_summary(self, feed: Feed, summary: dict[str, Any]) -> None:
        """A node's new figures: the CPU cell of each of its instances shown here."""
        node = feed[0]
        cells = []
        for uuid in sorted(self.shown):
            record = self.hub.instance(uuid)
            if record is None or record.spec.node != node:
                continue
            figures = (summary.get("instances") or {}).get(uuid)
            if figures is None:
                self.figures.pop(uuid, None)
            else:
                self.figures[uuid] = figures
            cells.append(render_to_string("usage/_instance_cpu.html",
                                          {"uuid": uuid, "figures": figures, "oob": True}))
        if cells:
            # htmx parses a message inside a <template>, where a lone <td> keeps its place.
            await self.send(text_data="".join(cells))

    async def instance_changed(self, event: dict) -> None:
        uuid = event["uuid"]
        record = self.hub.instance(uuid)
        if self._visible(record):
            assert record is not None
            new = uuid not in self.shown
            self.shown.add(uuid)
            html = render_to_string("instances/_row.html", {
                "record": record, "oob": not new, "show_namespace": self.show_namespace,
                "can_operate": self.can_operate, "usage": self.figures})
            if new:
                html = f'<tbody hx-swap-oob="beforeend:#instance-rows">{html}</tbody>'
        elif uuid in self.shown:
            self.shown.discard(uuid)
            html = f'<tr id="instance-{uuid}" hx-swap-oob="delete"></tr>'
        else:
            return
        await self.send(text_data=html)
        self._follow({shown.spec.node for shown in map(self.hub.instance, self.shown)
                      if shown is not None and shown.spec.node})


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
        context = await detail.section_context(
            record, can_operate=self.access.can_operate(record.spec.namespace))
        html = "".join(render_to_string(section, {**context, "oob": True})
                       for section in detail.LIVE_SECTIONS)
        await self.send(text_data=html)

    async def instance_changed(self, event: dict) -> None:
        if event["uuid"] == self.uuid:
            await self.refresh()

    async def image_changed(self, event: dict) -> None:
        artifact = self.hub.artifact(event["uuid"])
        if artifact is not None and artifact.instance_uuid == self.uuid:
            await self.refresh()
