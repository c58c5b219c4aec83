"""What every live page's websocket shares.

Each is read-only (actions go through ordinary htmx requests), authenticated
by the session (the Origin was checked before it got here), and closed when
its person's access changes: the page reconnects and what it may see is
worked out again. On connect it sends the page's live parts once, so nothing
that happened between the page's render and the connect (or a reconnect) is
missed; an object's page also follows that object's event log. Every
page also hears whether etcd is reachable: while it is not, a banner says
so (what the page shows has stopped moving); once it is back, the banner
goes and the page's live parts are sent again.

Messages are HTML fragments that htmx swaps in by id.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from portal.accounts.access import Access, access_for_scope
from portal.accounts.notify import user_group
from portal.cloud.errors import NotFound
from portal.events import log as eventlog
from portal.events.sections import EventsQuery, event_row_oob, event_rows_oob, events_query
from portal.live.hub import hub

CLOSE_UNAUTHENTICATED = 4401
CLOSE_ACCESS_CHANGED = 4403
CLOSE_NOT_FOUND = 4404


class LivePage(AsyncWebsocketConsumer):
    access: Access
    groups_joined: list[str]
    # (kind, id) of the object whose event log the page shows, set by admit().
    events_of: tuple[str, str] | None = None
    # Which of its events the page shows (its address's events_type, events_before).
    events_shown: EventsQuery

    @property
    def params(self) -> dict[str, str]:
        """The query string the page opened its websocket with (the page's own)."""
        raw = self.scope.get("query_string", b"").decode("latin-1")
        return dict(parse_qsl(raw, keep_blank_values=True))

    async def admit(self) -> list[str] | None:
        """The Channels groups this page listens to, or None to refuse it
        exactly as a missing object is refused."""
        raise NotImplementedError

    async def refresh(self) -> None:
        """Send the page's live parts as they are now."""
        raise NotImplementedError

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.access = await access_for_scope(self.scope)
        self.events_shown = events_query(self.params)
        groups = await self.admit()
        if groups is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()
        live = await hub()
        if self.events_of is not None:
            groups.append(eventlog.group_name(*self.events_of))
        for group in [*groups, user_group(user.pk), live.store_group]:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        if not live.store.reachable:
            await self.send(text_data=store_banner(reachable=False))
        await self.refresh()
        if self.events_of is not None:
            await self.send(text_data=await event_rows_oob(*self.events_of, self.events_shown))

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Read-only: anything a browser sends is ignored."""

    async def send_list_page(self, rows_template: str, empty_template: str,
                             context: dict) -> None:
        """A list page again (portal.listing): its rows, its count and pager
        (above and below the table) and its empty state. Separate messages:
        htmx reads a message that starts with a <tbody> in a table's context,
        which a <nav> after it would not survive."""
        context = {**context, "oob": True}
        await self.send(text_data=render_to_string(rows_template, context))
        for pager in ("pager", "pager-end"):
            await self.send(text_data=render_to_string("components/pager.html",
                                                       {**context, "id": pager}))
        await self.send(text_data=render_to_string(empty_template, context))

    async def access_changed(self, event: dict) -> None:
        await self.close(code=CLOSE_ACCESS_CHANGED)

    async def event_added(self, event: dict) -> None:
        if self.events_shown.shows_new(event["event"].get("type", "")):
            await self.send(text_data=event_row_oob(event["event"]))

    async def store_changed(self, event: dict) -> None:
        """etcd became unreachable, or reachable again (the hub's mirror has
        caught up): the banner, and then the page's live parts again."""
        reachable = (await hub()).store.reachable
        await self.send(text_data=store_banner(reachable=reachable))
        if reachable:
            await self.refresh()


def store_banner(*, reachable: bool) -> str:
    return render_to_string("live/_store_banner.html", {"reachable": reachable, "oob": True})


class CollectionPage(LivePage):
    """The socket of a collection's list (no UUID in its route) or of one of
    its members' pages (with one: refused unless the person may see it)."""

    member_kind: str  # the event kind of one member, e.g. "image"
    uuid: str | None

    async def group(self) -> str:
        """The hub group that hears of every change to the collection."""
        raise NotImplementedError

    async def find(self, uuid: str) -> object:
        """The member, if this person may see it; NotFound otherwise."""
        raise NotImplementedError

    async def admit(self) -> list[str] | None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.uuid = str(kwargs["uuid"]) if "uuid" in kwargs else None
        if self.uuid is not None:
            try:
                await self.find(self.uuid)
            except NotFound:
                return None
            self.events_of = (self.member_kind, self.uuid)
        return [await self.group()]

    async def member_changed(self, uuid: str) -> None:
        if self.uuid is None or uuid == self.uuid:
            await self.refresh()
