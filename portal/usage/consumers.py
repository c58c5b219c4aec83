"""The websockets of the graphs: an instance's or a node's new samples, as
JSON, while its page is open.

``{"type": "sample", "t": ..., "values": {...}}`` for each sample, and
``{"type": "state", "live": false, "reason": "..."}`` when the node's agent
can't be followed (``"live": true`` once it can again).
"""

from __future__ import annotations

import json
from typing import Any

from cloudstate import usage
from portal.cloud.instances import visible
from portal.live.hub import hub
from portal.live.pages import LivePage
from portal.usage.feeds import AgentFeeds, Feed


class GraphFeed(LivePage):
    feed: Feed
    feeds: AgentFeeds | None = None

    async def refresh(self) -> None:
        if self.feeds is None:
            self.feeds = AgentFeeds(self._sample, self._state)
            self.feeds.want({self.feed})

    async def disconnect(self, code: int) -> None:
        if self.feeds is not None:
            await self.feeds.close()
        await super().disconnect(code)

    async def _sample(self, feed: Feed, sample: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "sample", **sample}))

    async def _state(self, feed: Feed, reason: str | None) -> None:
        await self.send(text_data=json.dumps({"type": "state", "live": reason is None,
                                              "reason": reason}))


class InstanceGraphConsumer(GraphFeed):
    """Someone who may not see the instance is refused as if it did not exist."""

    async def admit(self) -> list[str] | None:
        uuid = str(self.scope["url_route"]["kwargs"]["uuid"])
        record = (await hub()).instance(uuid)
        if record is None or not visible(record.spec.namespace, self.access.visible):
            return None
        self.feed = (record.spec.node, usage.instance_topic(uuid))
        return []


class NodeGraphConsumer(GraphFeed):
    """Nodes carry every namespace's instances: members of system only."""

    async def admit(self) -> list[str] | None:
        name = self.scope["url_route"]["kwargs"]["name"]
        live = await hub()
        if not self.access.is_system or live.mirror.get(live.keys.node(name)) is None:
            return None
        self.feed = (name, usage.NODE_TOPIC)
        return []
