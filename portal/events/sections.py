"""An object's event log as its page shows it: the section's context when
the page is rendered, and the fragments its websocket sends afterwards.

The section shows the newest events, or one type of them, a page at a
time: ``events_type`` and ``events_before`` (a timestamp: the page older
than it) are in the page's address and in its websocket's, so the live
rows that arrive are those of what is shown (none on an older page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.template.loader import render_to_string

from portal.events import log as eventlog
from portal.events.models import TYPES

EVENTS_SHOWN = 50


@dataclass(frozen=True)
class EventsQuery:
    type: str | None = None
    # The page older than this event (its timestamp and id: events at the same instant
    # are still told apart).
    before: tuple[float, int] | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def urlencode(self, **changes: Any) -> str:
        values = {"events_type": self.type, "events_before": self.before, **changes}
        if isinstance(values["events_before"], tuple):
            timestamp, event_id = values["events_before"]
            values["events_before"] = f"{timestamp!r}:{event_id}"
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})

    def shows_new(self, event_type: str) -> bool:
        """Whether a new event of this type belongs on the page shown."""
        return self.before is None and self.type in (None, event_type)


def events_query(params: Any) -> EventsQuery:
    """The query in a page's (or a websocket's) parameters; a value that
    makes no sense is reported and left out."""
    errors = {}
    kind = params.get("events_type") or None
    if kind is not None and kind not in TYPES:
        errors["events_type"] = "That is not a type of event; every type is shown."
        kind = None
    before_text = params.get("events_before") or ""
    before = None
    if before_text:
        timestamp_text, _, id_text = before_text.partition(":")
        try:
            before = (float(timestamp_text), int(id_text or 0))
        except ValueError:
            before = None
        if before is None or not math.isfinite(before[0]) or before[0] <= 0:
            errors["events_before"] = "That is not a time; the newest events are shown."
            before = None
    return EventsQuery(type=kind, before=before, errors=errors)


async def events_context(kind: str, uuid: str, query: EventsQuery | None = None,
                         here: str = "") -> dict[str, Any]:
    """The section's context; ``here`` is the address the section's links
    and filter go to (the page, or its events tab)."""
    query = query or EventsQuery()
    found = await eventlog.list_events(kind, uuid, limit=EVENTS_SHOWN + 1,
                                       event_type=query.type, before=query.before)
    last = found[EVENTS_SHOWN - 1] if len(found) > EVENTS_SHOWN else None
    older = (last.timestamp, last.id) if last is not None else None
    return {"events": found[:EVENTS_SHOWN], "event_kind": kind, "event_uuid": uuid,
            "events_filter": query, "event_types": TYPES, "events_here": here,
            "events_older": f"{here}?{query.urlencode(events_before=older)}" if older else "",
            "events_newest": f"{here}?{query.urlencode(events_before=None)}"
            if query.before is not None else ""}


def event_row_oob(event: dict) -> str:
    """One new event, put on top of the page's table."""
    row = render_to_string("events/_row.html", {"event": event})
    return f'<tbody hx-swap-oob="afterbegin:#event-rows">{row}</tbody>'


async def event_rows_oob(kind: str, uuid: str, query: EventsQuery | None = None) -> str:
    """The event table body of the page shown, replacing the page's."""
    query = query or EventsQuery()
    found = await eventlog.list_events(kind, uuid, limit=EVENTS_SHOWN, event_type=query.type,
                                       before=query.before)
    rows = "".join(render_to_string("events/_row.html", {"event": event.as_api()})
                   for event in found)
    return f'<tbody id="event-rows" hx-swap-oob="true">{rows}</tbody>'
