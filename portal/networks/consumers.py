"""Websockets that keep the network pages current: the list (every network
the person may see) and one network's page (its state, its interfaces and
their instances' state, and its event log)."""

from __future__ import annotations

from django.template.loader import render_to_string

from portal.cloud import networks
from portal.cloud.errors import NotFound
from portal.live.hub import hub
from portal.live.pages import CollectionPage
from portal.networks.views import detail_context, list_context


class NetworksConsumer(CollectionPage):
    member_kind = "network"

    async def group(self) -> str:
        return (await hub()).networks_group

    async def find(self, uuid: str) -> networks.NetworkRecord:
        return await networks.get(uuid, self.access.visible)

    async def refresh(self) -> None:
        if self.uuid is None:
            # Re-read what this person may see: one range read, and what
            # other namespaces' networks do never shows in it; then the page
            # they look at (its query is the socket's).
            records = await networks.list_networks(self.access.scope)
            await self.send_list_page("networks/_rows.html", "networks/_empty.html",
                                      list_context(records, self.access, self.params))
            return
        try:
            record = await self.find(self.uuid)
        except NotFound:
            return
        context = {**await detail_context(record), "oob": True}
        # Two messages: htmx parses a message that starts with a <div> as
        # such, and a <tbody> after it would lose its table context.
        await self.send(text_data=render_to_string("networks/_overview.html", context))
        await self.send(text_data=render_to_string("networks/_interface_rows.html", context))

    async def network_changed(self, event: dict) -> None:
        await self.member_changed(event["uuid"])
