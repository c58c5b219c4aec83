"""The websockets of the instance pages.

The list's socket is opened with the page's own query (its search, filters,
order and page: portal.listing), and only ever sends what that page shows,
of what the person may see: the instances of the namespace they work in
(or, for members of ``system`` who chose "All namespaces", every instance).
A change to a row on the page is that row; an instance coming into the page
or leaving it (created, deleted, no longer matching, moved in the order) is
the page again: its rows, its count and its pager. Other changes are
dropped here, at the cost of a look at the changed row alone: the whole
list is only gone over again when the order or what matches may have
changed. The socket also follows the CPU figures of the nodes of the rows
shown, and sends each instance's CPU cell as its node samples it.
The rest (sessions, access changes, reconnects) is LivePage's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from django.template.loader import render_to_string

from cloudstate import usage as usage_contract
from portal.cloud import usage
from portal.cloud.instances import InstanceRecord, visible
from portal.instances import detail
from portal.instances.listing import InstanceRow, listing_for, ordered
from portal.listing import Listing, Page, Query
from portal.live.hub import Hub, hub
from portal.live.pages import LivePage
from portal.networks.views import interfaces_context
from portal.usage.feeds import AgentFeeds, Feed

# Several changes in a burst (a bulk action) are one new page, not one each.
REPAGE_DELAY = 0.05


class RowRenderings:
    """A changed row rendered once for every list that shows it alike.

    One change reaches every open list of its namespace; fifty people
    watching the same row would otherwise render it fifty times, one after
    another in the portal's one event loop (~10 ms each). Kept for the
    latest change only: the hub's message names the mirror's revision, and
    lists handling an older message render for themselves."""

    def __init__(self) -> None:
        self._revision = -1
        self._rows: dict[tuple[Any, ...], str] = {}

    def get(self, revision: int, key: tuple[Any, ...], render: Callable[[], str]) -> str:
        if revision != self._revision:
            if revision < self._revision:
                return render()
            self._revision, self._rows = revision, {}
        if (html := self._rows.get(key)) is None:
            html = self._rows[key] = render()
        return html


_renderings = RowRenderings()


class InstanceListConsumer(LivePage):
    hub: Hub
    listing: Listing[InstanceRow]
    query: Query
    scope_namespaces: frozenset[str] | None
    # The instances that match the query (uuid -> their sort key), and the page's rows.
    matching: dict[str, Any]
    shown: list[str]
    figures: dict[str, dict[str, Any]]  # instance uuid -> its figures now
    summarised: set[str]  # the nodes whose figures were asked for once
    feeds: AgentFeeds | None = None
    repaging: asyncio.Task[None] | None = None

    async def admit(self) -> list[str]:
        current, everything = self.access.current, self.access.all_namespaces
        self.hub = await hub()
        self.listing = listing_for(everything)
        self.query = self.listing.read(self.params)
        self.matching, self.shown, self.figures, self.summarised = {}, [], {}, set()
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

    def _in_scope(self, record: InstanceRecord | None) -> bool:
        return (record is not None and visible(record.spec.namespace, self.scope_namespaces)
                and record.spec.desired != "deleted")

    async def disconnect(self, code: int) -> None:
        if self.repaging is not None:
            self.repaging.cancel()
        if self.feeds is not None:
            await self.feeds.close()
        await super().disconnect(code)

    def _context(self, **more: Any) -> dict[str, Any]:
        return {"show_namespace": self.show_namespace, "can_operate": self.can_operate,
                "usage": self.figures, **more}

    async def refresh(self) -> None:
        """The page as it is now: its rows, then its count, pager and empty state."""
        found = ordered(self.hub, self.scope_namespaces, self.show_namespace, self.query)
        self.matching = {row.uuid: self.listing.sort_key(row, self.query) for row in found.rows}
        page: Page[InstanceRow] = self.listing.cut(found.rows, found.in_scope, self.query)
        self.shown = [row.uuid for row in page.rows]
        nodes = {row.record.spec.node for row in page.rows if row.record.spec.node}
        if missing := nodes - self.summarised:
            # Figures until each node's next sample arrives (then _node_summary's).
            self.summarised |= missing
            self.figures.update(usage.instance_figures(await usage.summaries(missing)))
        self._follow(nodes)
        await self.send_list_page("instances/_rows.html", "instances/_empty.html", self._context(
            **self.listing.page_context(page), list_label="instances"))

    def _follow(self, nodes: set[str]) -> None:
        """Follow the figures of exactly these nodes (those of the rows shown)."""
        if self.feeds is not None:
            self.feeds.want({(node, usage_contract.SUMMARY_TOPIC) for node in nodes})

    async def _node_summary(self, feed: Feed, summary: dict[str, Any]) -> None:
        """A node's new figures: the CPU cell of each of its instances shown here."""
        node = feed[0]
        cells = []
        for uuid in self.shown:
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
        row = InstanceRow(record, self.hub) if record is not None and self._in_scope(record) \
            else None
        matches = row is not None and self.listing.matches(row, self.query)
        was = uuid in self.matching
        if not was and not matches:
            return  # neither on this page nor able to move it
        if was and matches and row is not None \
                and self.matching[uuid] == self.listing.sort_key(row, self.query):
            if uuid in self.shown:
                # Alike: the same row, shown with the same columns, buttons and figures.
                key = (uuid, self.show_namespace, self.can_operate,
                       repr(self.figures.get(uuid)))
                html = _renderings.get(event.get("revision", -1), key, lambda: render_to_string(
                    "instances/_row.html", self._context(row=row, oob=True)))
                await self.send(text_data=html)
            return
        self._repage()

    def _repage(self) -> None:
        """Send the page again soon (once for a burst of changes)."""
        if self.repaging is None or self.repaging.done():
            self.repaging = asyncio.get_running_loop().create_task(self._repage_later())

    async def _repage_later(self) -> None:
        await asyncio.sleep(REPAGE_DELAY)
        await self.refresh()


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
        artifact = self.hub.artifact(event["uuid"])
        if artifact is not None and artifact.instance_uuid == self.uuid:
            await self.refresh()
