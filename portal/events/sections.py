"""An object's event log as its page shows it: the section's context when
the page is rendered, and the fragments its websocket sends afterwards."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from portal.events import log as eventlog

EVENTS_SHOWN = 50


async def events_context(kind: str, uuid: str) -> dict[str, Any]:
    return {"events": await eventlog.list_events(kind, uuid, limit=EVENTS_SHOWN),
            "event_kind": kind, "event_uuid": uuid}


def event_row_oob(event: dict) -> str:
    """One new event, put on top of the page's table."""
    row = render_to_string("events/_row.html", {"event": event})
    return f'<tbody hx-swap-oob="afterbegin:#event-rows">{row}</tbody>'


async def event_rows_oob(kind: str, uuid: str) -> str:
    """The whole event table body, replacing the page's."""
    found = await eventlog.list_events(kind, uuid, limit=EVENTS_SHOWN)
    rows = "".join(render_to_string("events/_row.html", {"event": event.as_api()})
                   for event in found)
    return f'<tbody id="event-rows" hx-swap-oob="true">{rows}</tbody>'
