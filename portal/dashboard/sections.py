"""What the dashboard shows, worked out the same way for the page and for its
websocket (which re-renders its live sections when something changes).

Everyone sees the instances of the namespace they work in (or of all, for
members of system who chose so) by state, their namespace's use of what a
quota would limit, and the latest events of what they may see. Members of
system also see the nodes: online or offline, the capacity used and free on
each and in all, each one's CPU now, and the floating addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from cloudstate import usage as usage_contract
from cloudstate.model import Artifact, NetworkSpec
from cloudstate.vocabulary import EventType, ObjectKind
from portal.accounts.access import Access
from portal.cloud import usage
from portal.cloud.overview import overview
from portal.cloud.refs import visible
from portal.events import log as eventlog
from portal.events.models import Event
from portal.live.hub import Hub

# Root elements with stable ids, each taking ``oob``.
LIVE_SECTIONS = [
    "dashboard/_summary.html",
    "dashboard/_use.html",
    "dashboard/_nodes.html",
    "dashboard/_events.html",
]
EVENTS_SHOWN = 10
# Every node logs its resources every five minutes: figures, not news.
QUIET_TYPES = frozenset({EventType.RESOURCES})


@dataclass(frozen=True)
class LatestEvent:
    event: Event
    kind: str
    label: str
    url: str | None


def _names(live: Hub, access: Access) -> dict[str, tuple[str, str, str | None]]:
    """uuid (or node name) -> (kind, name, page) of what this person may see
    that keeps an event log."""
    scope = access.scope
    found: dict[str, tuple[str, str, str | None]] = {}
    for record in live.instances(scope):
        found[record.uuid] = (ObjectKind.INSTANCE, record.spec.name,
                              reverse("instance-detail", args=[record.uuid]))
    for kv in live.mirror.items(live.keys.networks):
        network = NetworkSpec.from_json(kv.value)
        if visible(network.namespace, scope):
            found[network.uuid] = (ObjectKind.NETWORK, network.name,
                                   reverse("network-detail", args=[network.uuid]))
    # Artifacts (images, snapshots, labels): their events are the image page's.
    for kv in live.mirror.items(live.keys.artifacts):
        artifact = Artifact.from_json(kv.value)
        if visible(artifact.namespace, scope):
            found[artifact.uuid] = (ObjectKind.IMAGE, artifact.name,
                                    reverse("image-detail", args=[artifact.uuid]))
    if access.is_system:
        for kv in live.mirror.items(live.keys.nodes):
            name = kv.key.rsplit("/", 1)[-1]
            found[name] = (ObjectKind.NODE, name, reverse("node-detail", args=[name]))
    return found


async def latest_events(live: Hub, access: Access) -> list[LatestEvent]:
    names = _names(live, access)
    # Members of system working in all namespaces see everything, objects
    # long gone included; everyone else the events of what they see now.
    objects = None if access.is_system and access.scope is None else list(names)
    found = await eventlog.latest(objects, EVENTS_SHOWN, exclude_types=QUIET_TYPES)
    shown = []
    for event in found:
        kind, label, url = names.get(event.object_uuid,
                                     (event.object_kind, event.object_uuid, None))
        shown.append(LatestEvent(event, kind, label, url))
    return shown


def sees_event(live: Hub, access: Access, event: dict[str, Any]) -> bool:
    """Whether a new event (as the event log pushes it) belongs on this
    person's dashboard."""
    if event.get("event", {}).get("type") in QUIET_TYPES:
        return False
    if access.is_system and access.scope is None:
        return True
    return event.get("uuid") in _names(live, access)


def node_figures_of(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each node's own figures, from the agents' summaries."""
    return {name: summary["node"] for name, summary in summaries.items()
            if summary.get("node") is not None}


async def context(live: Hub, access: Access,
                  node_figures: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dashboard's context. ``node_figures``: each node's figures now, if
    the caller follows them already; else they are asked of the agents."""
    found = overview(live.mirror, live.keys, live.instances(access.scope),
                     scope=access.scope, sees_nodes=access.is_system,
                     namespace=None if access.all_namespaces else access.current)
    if node_figures is None and found.nodes:
        node_figures = node_figures_of(await usage.summaries(
            row.name for row in found.nodes if row.load.alive))
    return {
        "overview": found,
        "latest": await latest_events(live, access),
        "node_figures": node_figures or {},
        "spark_points": usage_contract.SPARK_POINTS,
    }
