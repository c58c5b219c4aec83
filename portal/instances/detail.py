"""What the instance page's own sections need, computed the same way for the
page and for its websocket (which re-renders the live ones on a change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloudstate import power
from portal.cloud import snapshots
from portal.cloud.instances import InstanceRecord

# Sections whose root element has a stable id and takes ``oob``, so the
# page's websocket can replace them when the instance changes. Forms are
# kept out of them: a change arriving while someone types must not wipe it.
LIVE_SECTIONS = [
    "instances/_section_power.html",
    "instances/_section_overview.html",
    "instances/_section_metadata.html",
    "instances/_section_snapshots.html",
]


@dataclass(frozen=True)
class Tab:
    """One part of the instance page, at its own address
    (/instances/<uuid>/<name>/; the summary is also /instances/<uuid>/)."""

    name: str
    label: str
    icon: str
    sections: tuple[str, ...]


TABS: dict[str, Tab] = {tab.name: tab for tab in (
    Tab("summary", "Summary", "info", ("instances/_section_overview.html",
                                       "instances/_tags.html")),
    Tab("console", "Console", "terminal", ("consoles/_section_console.html",)),
    Tab("networking", "Networking", "network", ("instances/_section_interfaces.html",)),
    Tab("snapshots", "Snapshots", "disk", ("instances/_snapshots.html",)),
    Tab("graphs", "Graphs", "monitor", ("usage/_section_instance_graphs.html",)),
    Tab("events", "Events", "refresh", ("events/_section.html",)),
)}
DEFAULT_TAB = "summary"
_ICONS = {"on": "play", "unpause": "play", "pause": "pause", "rebootsoft": "refresh",
          "reboothard": "refresh", "off": "power"}
# Actions that can lose the guest's unwritten work: the pages ask first, naming the instance.
CONFIRMED = frozenset({"off", "reboothard"})


def power_buttons(record: InstanceRecord) -> list[dict[str, str]]:
    """The power actions to offer now: none while the instance isn't built,
    or while the agent is still applying the last one."""
    if record.state != "created" or power_pending(record):
        return []
    return [{"action": action, "label": power.LABELS[action], "icon": _ICONS[action],
             "confirm": action in CONFIRMED}
            for action in power.available(record.power_state)]


def power_pending(record: InstanceRecord) -> str | None:
    observed = record.observed
    if observed is None or observed.applied_power_generation >= record.spec.power.generation:
        return None
    return power.LABELS.get(record.spec.power.action, record.spec.power.action)


def snapshot_devices(record: InstanceRecord) -> list[str]:
    return [disk.device for disk in record.spec.disks if disk.type == "disk"]


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
    # Imported here: the listing reads the live hub, which imports the services this uses.
    from portal.instances.listing import InstanceRow
    from portal.live.hub import hub

    return {
        "record": record,
        "row": InstanceRow(record, await hub()),
        "can_operate": can_operate,
        "power_buttons": power_buttons(record) if can_operate else [],
        "power_pending": power_pending(record),
        "snapshots": await snapshot_rows(record),
        "metadata_items": sorted(record.spec.metadata.items()),
    }
