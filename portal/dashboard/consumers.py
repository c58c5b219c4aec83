"""The dashboard's websocket: its sections again whenever an instance the
person sees, a node or the floating addresses change or an event they may
see arrives, and each node's CPU figure as its agent samples it.

Changes come in bursts (a create touches several keys, an agent sends
events in batches), so a refresh waits a moment for the rest of the burst
and renders once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.template.loader import render_to_string

from cloudstate import usage
from portal.dashboard import sections
from portal.events.log import LATEST_GROUP
from portal.live.hub import Hub, hub
from portal.live.pages import LivePage
from portal.usage.feeds import AgentFeeds, Feed

SETTLE = 0.2  # seconds a refresh waits for the rest of a burst of changes


class DashboardConsumer(LivePage):
    hub: Hub
    feeds: AgentFeeds | None = None
    node_figures: dict[str, Any]
    node_cpus: dict[str, int]
    _pending: asyncio.Task[None] | None = None

    async def admit(self) -> list[str]:
        self.hub = await hub()
        self.node_figures = {}
        self.node_cpus = {}
        if self.access.is_system:
            self.feeds = AgentFeeds(self._node_sample)
        scope = self.access.scope
        groups = [self.hub.cloud_group, LATEST_GROUP]
        if not self.access.all_namespaces and self.access.current:
            groups.append(self.hub.quota_group(self.access.current))
        if scope is None:
            groups.append(self.hub.everything_group)
        else:
            groups.extend(self.hub.namespace_group(namespace) for namespace in sorted(scope))
        return groups

    async def disconnect(self, code: int) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self.feeds is not None:
            await self.feeds.close()
        await super().disconnect(code)

    async def refresh(self) -> None:
        # The figures followed so far, if any; else the agents are asked.
        context = await sections.context(self.hub, self.access, self.node_figures or None)
        self.node_figures = context["node_figures"]
        nodes = context["overview"].nodes
        self.node_cpus = {row.name: row.load.info.vcpus for row in nodes or ()}
        if self.feeds is not None and nodes is not None:
            self.feeds.want({(row.name, usage.SUMMARY_TOPIC) for row in nodes if row.load.alive})
        await self.send(text_data="".join(
            render_to_string(section, {**context, "oob": True})
            for section in sections.LIVE_SECTIONS))

    # --- what makes it refresh ------------------------------------------------------------

    def _soon(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._settle_then_refresh())

    async def _settle_then_refresh(self) -> None:
        await asyncio.sleep(SETTLE)
        await self.refresh()

    async def instance_changed(self, event: dict) -> None:
        self._soon()

    async def cloud_changed(self, event: dict) -> None:
        self._soon()

    async def quota_changed(self, event: dict) -> None:
        self._soon()

    async def event_added(self, event: dict) -> None:
        if sections.sees_event(self.hub, self.access, event):
            self._soon()

    # --- each node's CPU, live ---------------------------------------------------------------

    async def _node_sample(self, feed: Feed, summary: dict[str, Any]) -> None:
        node = feed[0]
        figures = summary.get("node")
        if figures is None:
            return
        self.node_figures[node] = figures
        await self.send(text_data=render_to_string("dashboard/_node_cpu.html", {
            "name": node, "figures": figures, "cpus": self.node_cpus.get(node, 1), "oob": True}))
