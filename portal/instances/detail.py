"""What the instance page's own sections need, computed the same way for the
page and for its websocket (which re-renders the live ones on a change)."""

from __future__ import annotations

from typing import Any

from cloudstate import power
from portal.cloud import snapshots
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


async def snapshot_rows(record: InstanceRecord) -> list[dict[str, Any]]:
    """Each snapshot taken of the instance, newest first."""
    rows = []
    for artifact, version in reversed(await snapshots.versions_of(record)):
        blob = artifact.blobs[version.blob_uuid]
        rows.append({
            "artifact": artifact, "blob": blob, "index": version.index,
            "device": artifact.spec.device, "state": blob.state, "error": blob.error,
            "size": blob.facts.size, "created": blob.spec.created_at,
            "progress": blob.progress(blob.spec.node or ""),
        })
    return rows


async def section_context(record: InstanceRecord, *, can_operate: bool) -> dict[str, Any]:
    return {
        "record": record,
        "can_operate": can_operate,
        "power_buttons": power_buttons(record) if can_operate else [],
        "power_pending": power_pending(record),
        "snapshots": await snapshot_rows(record),
        "snapshot_devices": [d.device for d in record.spec.disks if d.type == "disk"],
        "metadata_items": sorted(record.spec.metadata.items()),
    }
