"""Websockets that keep the images pages current: the list (every artifact
the person may see, with each node's progress) and one artifact's page (its
versions, its nodes and its event log)."""

from __future__ import annotations

from django.template.loader import render_to_string

from portal.cloud import artifacts
from portal.cloud.catalogue import ArtifactRecord
from portal.cloud.errors import NotFound
from portal.images.views import page_context
from portal.live.hub import hub
from portal.live.pages import CollectionPage


class ImagesConsumer(CollectionPage):
    member_kind = "image"

    async def group(self) -> str:
        return (await hub()).images_group

    async def find(self, uuid: str) -> ArtifactRecord:
        return await artifacts.get(uuid, self.access.visible)

    async def refresh(self) -> None:
        if self.uuid is None:
            # The page the person looks at (its query is the socket's), read again.
            records = await artifacts.list_records(self.access.scope)
            await self.send_list_page("images/_rows.html", "images/_empty.html",
                                      page_context(records, self.access, self.params))
            return
        try:
            record = await self.find(self.uuid)
        except NotFound:
            return
        await self.send(text_data=render_to_string("images/_nodes.html", {
            "record": record, "nodes": record.hypervisors, "oob": True,
            "used_by": record.used_by_in(self.access.visible)}))

    async def image_changed(self, event: dict) -> None:
        await self.member_changed(event["uuid"])
