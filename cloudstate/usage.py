"""What the node agents and the portal agree on about usage history (graphs).

Each agent samples its node and its guests at a fixed interval (the setting
SFCLOUD_USAGE_INTERVAL) and keeps the history itself, on the node's disk, in
files of fixed size: like an RRD, the same few series at a few fixed
resolutions (``TIERS``), each a ring that overwrites its oldest slot. Nothing
of it goes to etcd (which holds the present only) nor to the portal's
database: the portal asks the agent of the object's node when someone looks
at a graph, so graphs survive a portal restart and cost the portal nothing
while nobody looks. The agent's server answers these routes under the same
signed, single-use grants as its console routes.

Figures are rates and levels, never raw counters:

    cpu         CPU in use, in cores (1.0 = one core busy all the time)
    memory      bytes: a guest's resident memory on the host (QEMU included),
                a node's memory in use (total less available)
    disk_read, disk_write, net_rx, net_tx   bytes per second
    load        a node's 1-minute load average
    guests      a node's running guests
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cloudstate.validation import ValidationError

INSTANCE_METRICS: tuple[str, ...] = (
    "cpu", "memory", "disk_read", "disk_write", "net_rx", "net_tx")
NODE_METRICS: tuple[str, ...] = (
    "cpu", "memory", "load", "disk_read", "disk_write", "net_rx", "net_tx", "guests")


@dataclass(frozen=True)
class Tier:
    """One resolution of the history: ``slots`` consecutive periods of
    ``step`` seconds, each the mean of the samples taken in it."""

    range: str  # the range a graph asks for, which this tier answers
    step: int
    slots: int

    @property
    def span(self) -> int:
        return self.step * self.slots


# An hour at 10 s, a day at 5 min, a week at 1 h: 816 slots per series in all.
TIERS: tuple[Tier, ...] = (Tier("hour", 10, 360), Tier("day", 300, 288), Tier("week", 3600, 168))
RANGES: tuple[str, ...] = tuple(tier.range for tier in TIERS)
# A list's sparkline: the last hour, as one-minute means (6 slots of the finest tier each).
SPARK_POINTS = 60


def tier_for(range_name: Any) -> Tier:
    """The tier answering a graph's range; ValidationError naming the choices."""
    for tier in TIERS:
        if range_name == tier.range:
            return tier
    raise ValidationError("range", f"must be one of {', '.join(RANGES)}")


# --- the agent's routes -----------------------------------------------------------------

def instance_path(uuid: str) -> str:
    """GET: an instance's history (``?range=hour|day|week``)."""
    return f"/usage/instances/{uuid}"


NODE_PATH = "/usage/node"  # GET: the node's own history (``?range=``)
SUMMARY_PATH = "/usage/summary"  # GET: every guest's figures now, with a sparkline


def live_path(topic: str) -> str:
    """A websocket that sends each new sample of ``topic`` as it is taken."""
    return f"/usage/live/{topic}"


def instance_topic(uuid: str) -> str:
    return f"instances/{uuid}"


NODE_TOPIC = "node"
SUMMARY_TOPIC = "summary"


# --- shapes ---------------------------------------------------------------------------------

def clean(value: float | None) -> float | None:
    """A figure as JSON can carry it: NaN and infinities are "no figure"."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, 4)


def sparkline(values: list[float | None], points: int = SPARK_POINTS) -> list[float | None]:
    """``values`` (oldest first) as ``points`` means of equal runs, gaps kept."""
    run = max(1, len(values) // points)
    tail = values[-run * points:]
    out: list[float | None] = []
    for start in range(0, len(tail), run):
        chunk = [v for v in tail[start:start + run] if v is not None]
        out.append(clean(sum(chunk) / len(chunk)) if chunk else None)
    return out
