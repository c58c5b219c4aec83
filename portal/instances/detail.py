"""What the instance page's own sections need, computed the same way for the
page and for its websocket (which re-renders the live ones on a change)."""

from __future__ import annotations

from typing import Any

from cloudstate import power
from portal.cloud import artifacts
from portal.cloud.instances import InstanceRecord

# Sections whose root element has a stable id and takes ``oob``, so the
# page's websocket can replace them when the instance changes.
LIVE_SECTIONS = [
    "instances/_section_power.html",
    "instances/_section_overview.html",
    "instances/_section_metadata.html",
    "instances/_section_snapshots.html",
]
_ICONS = {"on": "play", "unpause": "play", "pause": "pause", "rebootsoft": "refresh",
          "reboothard": "refresh", "off": "power"}


def power_buttons(record: InstanceRecord) -> list[dict[str, str]]:
    """The power actions to offer now: none while the instance isn't built,
    or while the agent is still applying the last one."""
    if record.state != "created" or power_pending(record):
        return []
    return [{"action": action, "label": power.LABELS[action], "icon": _ICONS[action]}
            for action in power.available(record.power_state)]


def power_pending(record: InstanceRecord) -> str | None:
    observed = record.observed
    if observed is None or observed.applied_power_generation >= record.spec.power.generation:
        return None
    return power.LABELS.get(record.spec.power.action, record.spec.power.action)


async def section_context(record: InstanceRecord, *, can_operate: bool) -> dict[str, Any]:
    snapshots = await artifacts.list_records(None, kind="snapshot", instance_uuid=record.uuid)
    return {
        "record": record,
        "can_operate": can_operate,
        "power_buttons": power_buttons(record) if can_operate else [],
        "power_pending": power_pending(record),
        "snapshots": sorted(snapshots, key=lambda r: r.image.created_at, reverse=True),
        "snapshot_devices": [d.device for d in record.spec.disks if d.type == "disk"],
        "metadata_items": sorted(record.spec.metadata.items()),
    }
