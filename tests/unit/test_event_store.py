from __future__ import annotations

import time

import pytest

from portal.events import log as eventlog
from portal.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


def event(n: int, *, age: float = 0.0, kind: str = "instance", type: str = "mutate") -> Event:
    return Event(event_id=f"event-{n:08d}", object_kind=kind, object_uuid="u-1", type=type,
                 timestamp=time.time() - age + n / 1000, fqdn="node", message=f"m{n}")


async def test_store_is_idempotent_and_lists_newest_first() -> None:
    await eventlog.store([event(1), event(2, type="status"), event(3)])
    await eventlog.store([event(2, type="status"), event(4)])  # 2 sent again
    assert await Event.objects.acount() == 4
    found = await eventlog.list_events("instance", "u-1")
    assert [e.message for e in found] == ["m4", "m3", "m2", "m1"]
    assert [e.message for e in await eventlog.list_events("instance", "u-1", limit=2)] == \
        ["m4", "m3"]
    assert [e.message for e in await eventlog.list_events("instance", "u-1",
                                                          event_type="status")] == ["m2"]
    assert await eventlog.list_events("node", "u-1") == []
    assert len(await eventlog.list_events("instance", "u-1", limit=None)) == 4
    # A type no event can have matches nothing (Shaken Fist's client may ask for any).
    assert await eventlog.list_events("instance", "u-1", event_type="no-such-type") == []


async def test_record_and_prune(settings) -> None:  # type: ignore[no-untyped-def]
    settings.EVENT_RETENTION_DAYS = 1
    await eventlog.store([event(1, age=3 * 86400), event(2)])
    recorded = await eventlog.record("image", "img-1", "asked", extra={"actor": "me"},
                                     operation="cache")
    assert recorded.fqdn == eventlog.PORTAL_FQDN and recorded.type == "audit"
    assert recorded.as_api()["operation"] == "cache"
    assert event(9).as_api()["operation"] is None
    assert await eventlog.prune() == 1
    assert sorted([e.message async for e in Event.objects.all()]) == ["asked", "m2"]
