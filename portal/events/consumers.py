"""A websocket that pushes one object's new events to its open page (used by
pages whose other content does not change live, such as a node's)."""

from __future__ import annotations

from portal.live.pages import LivePage


class NodeEventsConsumer(LivePage):
    """Nodes carry every namespace's instances: only members of system see
    them, or their events."""

    async def admit(self) -> list[str] | None:
        if not self.access.is_system:
            return None
        self.events_of = ("node", self.scope["url_route"]["kwargs"]["name"])
        return []

    async def refresh(self) -> None:
        """Only the event log is live here."""
