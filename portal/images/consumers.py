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
            records = await artifacts.list_records(self.access.scope)
            context = page_context(records, self.access)
            html = render_to_string("images/_rows.html", {**context, "oob": True})
        else:
            try:
                record = await self.find(self.uuid)
            except NotFound:
                return
            html = render_to_string("images/_nodes.html", {
                "record": record, "nodes": record.hypervisors, "oob": True})
        await self.send(text_data=html)

    async def image_changed(self, event: dict) -> None:
        await self.member_changed(event["uuid"])
