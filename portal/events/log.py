"""Writing and reading the event log, and telling open pages about new events.

The portal records its own events (someone asked for a power action, a
snapshot, a delete) with ``record``; agents' events arrive in batches
through ``store``. Either way each stored event is pushed to the Channels
group of its object, so an open page shows it at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import socket
import time
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Q

from cloudstate.validation import ValidationError
from cloudstate.vocabulary import EventType
from portal.events.models import KINDS, TYPES, Event

log = logging.getLogger(__name__)

EVENT_ADDED = "event.added"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_MESSAGE = 2000
MAX_EXTRA_BYTES = 16 * 1024
PORTAL_FQDN = socket.gethostname()
RESOURCES_RETENTION = 7 * 86400


# Every new event, whatever its object: pages that show the latest events of
# many objects (the dashboard) listen here and keep what their person may see.
LATEST_GROUP = "events.latest"


def group_name(kind: str, object_uuid: str) -> str:
    """The Channels group of one object's event stream. Node names may hold
    characters a group name can't, so the object is named by a digest. No
    hub id in it: an agent's events reach whichever portal process it is
    connected to, and every process's browsers must hear of them."""
    digest = hashlib.sha256(object_uuid.encode()).hexdigest()[:40]
    return f"events.{kind}.{digest}"


async def record(
    kind: str, object_uuid: str, message: str, *, type: str = EventType.AUDIT,
    duration: float | None = None, extra: dict[str, Any] | None = None,
    operation: str | None = None,
) -> Event:
    """Store an event that happened here, in the portal. ``operation`` is
    what was asked for, as the audit trail spells it (create, poweroff...)."""
    event = Event(
        event_id=str(uuidlib.uuid4()), object_kind=str(kind), object_uuid=object_uuid,
        type=str(type), operation=str(operation) if operation else "",
        timestamp=time.time(), fqdn=PORTAL_FQDN, duration=duration, message=message[:MAX_MESSAGE],
        extra=extra,
    )
    await store([event])
    return event


async def store(events: list[Event]) -> None:
    """Store events (ones already stored are skipped) and push them live."""
    if not events:
        return
    ids = [event.event_id for event in events]
    known = {
        event_id async for event_id in
        Event.objects.filter(event_id__in=ids).values_list("event_id", flat=True)
    }
    fresh = [event for event in events if event.event_id not in known]
    await Event.objects.abulk_create(fresh, ignore_conflicts=True)
    layer = get_channel_layer()
    for event in fresh:
        message = {"type": EVENT_ADDED, "kind": event.object_kind, "uuid": event.object_uuid,
                   "event": {**event.as_api(), "id": event.event_id}}
        try:
            await layer.group_send(group_name(event.object_kind, event.object_uuid), message)
            await layer.group_send(LATEST_GROUP, message)
        except Exception:  # noqa: BLE001 - stored is what matters; a page reloads it
            log.exception("could not push event %s to open pages", event.event_id)


def from_agent(raw: Any, *, node: str) -> Event:
    """An event an agent sent, checked; raises ValidationError naming the problem.

    Where it happened is the node the agent proved it is, whatever it says.
    """
    if not isinstance(raw, dict):
        raise ValidationError("event", "must be an object")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not 8 <= len(event_id) <= 64:
        raise ValidationError("event.id", "must be a string of 8 to 64 characters")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValidationError("event.kind", f"must be one of {', '.join(KINDS)}")
    object_uuid = raw.get("uuid")
    if not isinstance(object_uuid, str) or not 1 <= len(object_uuid) <= 255:
        raise ValidationError("event.uuid", "must name the object")
    kind_type = raw.get("type", "mutate")
    if kind_type not in TYPES:
        raise ValidationError("event.type", f"must be one of {', '.join(TYPES)}")
    timestamp = raw.get("timestamp")
    if not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
        raise ValidationError("event.timestamp", "must be seconds since the epoch")
    duration = raw.get("duration")
    if duration is not None and (not isinstance(duration, int | float)
                                 or not math.isfinite(duration)):
        raise ValidationError("event.duration", "must be a number of seconds or null")
    message = raw.get("message")
    if not isinstance(message, str):
        raise ValidationError("event.message", "must be a string")
    extra = raw.get("extra")
    if extra is not None:
        if not isinstance(extra, dict):
            raise ValidationError("event.extra", "must be an object or null")
        if len(json.dumps(extra)) > MAX_EXTRA_BYTES:
            raise ValidationError("event.extra", f"is larger than {MAX_EXTRA_BYTES} bytes")
    return Event(event_id=event_id, object_kind=kind, object_uuid=object_uuid, type=kind_type,
                 timestamp=float(timestamp), fqdn=node, duration=duration,
                 message=message[:MAX_MESSAGE], extra=extra)


ALL = None  # a limit that means "every event"


def parse_limit(value: Any) -> int | None:
    """``limit`` as Shaken Fist's client sends it: an int, or digits as a
    string (its ``-l`` option is untyped). A negative limit means every
    event (None); 0 means none."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value > MAX_LIMIT:
        raise ValidationError("limit", f"must be a whole number up to {MAX_LIMIT} "
                                       "(negative: every event)")
    return ALL if value < 0 else value


def parse_type(value: Any) -> str | None:
    """``event_type``: None for any type. A type this cloud never records is
    not an error (Shaken Fist's client may ask for any): it matches nothing."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError("event_type", f"must be one of {', '.join(TYPES)}")
    return value


async def list_events(kind: str, object_uuid: str, *, limit: int | None = DEFAULT_LIMIT,
                      event_type: str | None = None,
                      before: tuple[float, int] | None = None) -> list[Event]:
    """An object's events, newest first (``limit`` None: all of them); with
    ``before`` (an event's timestamp and id), only those listed after it."""
    if event_type is not None and event_type not in TYPES:
        return []
    query = Event.objects.filter(object_kind=kind, object_uuid=object_uuid)
    if event_type is not None:
        query = query.filter(type=event_type)
    if before is not None:
        timestamp, event_id = before
        query = query.filter(Q(timestamp__lt=timestamp) | Q(timestamp=timestamp, id__lt=event_id))
    query = query.order_by("-timestamp", "-id")
    if limit is not None:
        query = query[:limit]
    return [event async for event in query]


async def latest(objects: list[str] | None, limit: int, *,
                 exclude_types: Iterable[str] = ()) -> list[Event]:
    """The newest events of the objects named (by uuid; a node by its name),
    or of everything (None), newest first, leaving out ``exclude_types``."""
    query = Event.objects.exclude(type__in=[str(t) for t in exclude_types])
    if objects is not None:
        query = query.filter(object_uuid__in=objects)
    return [event async for event in query.order_by("-timestamp", "-id")[:limit]]


async def prune() -> int:
    """Forget events older than the retention period, and nodes' resources
    events (one per node every five minutes) after a week, as Shaken Fist
    does; returns how many went."""
    now = time.time()
    deleted, _ = await Event.objects.filter(
        timestamp__lt=now - settings.EVENT_RETENTION_DAYS * 86400).adelete()
    resources, _ = await Event.objects.filter(
        type=EventType.RESOURCES, timestamp__lt=now - RESOURCES_RETENTION).adelete()
    return deleted + resources
