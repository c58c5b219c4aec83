"""The namespace page's quotas, live: the table again whenever what the
namespace holds of a kind of quota, or its limits, changed (the hub's quota
group of that namespace). Anyone who may read the namespace may follow it."""

from __future__ import annotations

import asyncio

from django.template.loader import render_to_string

from portal.cloud import quotas
from portal.live.hub import Hub, hub
from portal.live.pages import LivePage

SETTLE = 0.2  # seconds a refresh waits for the rest of a burst of changes (a create's keys)


class QuotaConsumer(LivePage):
    hub: Hub
    namespace: str
    _pending: asyncio.Task[None] | None = None

    async def admit(self) -> list[str] | None:
        self.namespace = self.scope["url_route"]["kwargs"]["namespace"]
        if not self.access.can_read(self.namespace):
            return None
        self.hub = await hub()
        return [self.hub.quota_group(self.namespace)]

    async def disconnect(self, code: int) -> None:
        if self._pending is not None:
            self._pending.cancel()
        await super().disconnect(code)

    async def refresh(self) -> None:
        lines = quotas.from_mirror(self.hub.mirror, self.hub.keys, self.namespace)
        await self.send(text_data=render_to_string("quotas/_live.html", {
            "namespace": self.namespace, "quota_lines": lines, "oob": True}))

    async def quota_changed(self, event: dict) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._settle_then_refresh())

    async def _settle_then_refresh(self) -> None:
        await asyncio.sleep(SETTLE)
        await self.refresh()
