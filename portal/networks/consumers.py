"""Websockets that keep the network pages current: the list (every network
the person may see) and one network's page (its state, its interfaces and
their instances' state, and its event log)."""

from __future__ import annotations

from django.template.loader import render_to_string

from portal.cloud import networks
from portal.cloud.errors import NotFound
from portal.live.hub import hub
from portal.live.pages import LivePage
from portal.networks.views import detail_context, list_context


class NetworksConsumer(LivePage):
    uuid: str | None

    async def admit(self) -> list[str] | None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.uuid = str(kwargs["uuid"]) if "uuid" in kwargs else None
        if self.uuid is not None:
            try:
                await networks.get(self.uuid, self.access.visible)
            except NotFound:
                return None
            self.events_of = ("network", self.uuid)
        return [(await hub()).networks_group]

    async def refresh(self) -> None:
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
        # The list re-reads what its person may see: one range read, and
        # what others' networks do never shows in it.
        if self.uuid is None or event["uuid"] == self.uuid:
            await self.refresh()
