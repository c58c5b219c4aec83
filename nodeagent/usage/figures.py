"""From two readings of counters to the figures a graph shows (see
``cloudstate.usage`` for the metrics and their units).

Counters only ever grow, so a figure is the growth over the time between the
readings; a counter that went backwards (a guest restarted, a disk was
removed) gives no figure for that period rather than a negative one.
"""

from __future__ import annotations

from nodeagent.usage.guests import GuestCounters
from nodeagent.usage.host import HostCounters

Figures = dict[str, float | None]


def rate(now: float | None, before: float | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


def node_figures(now: HostCounters, before: HostCounters | None, seconds: float,
                 guests: int) -> Figures:
    def per_second(field: str) -> float | None:
        return rate(getattr(now, field), getattr(before, field, None), seconds)

    return {
        "cpu": per_second("cpu_busy"),
        "memory": float(now.memory_used),
        "load": now.load[0],
        "disk_read": per_second("disk_read"),
        "disk_write": per_second("disk_written"),
        "net_rx": per_second("net_received"),
        "net_tx": per_second("net_sent"),
        "guests": float(guests),
    }


def guest_figures(now: GuestCounters, before: GuestCounters | None, seconds: float) -> Figures:
    def per_second(field: str) -> float | None:
        return rate(getattr(now, field), getattr(before, field, None), seconds)

    return {
        "cpu": per_second("cpu"),
        "memory": None if now.memory_resident is None else float(now.memory_resident),
        "disk_read": per_second("disk_read"),
        "disk_write": per_second("disk_written"),
        "net_rx": per_second("net_received"),
        "net_tx": per_second("net_sent"),
    }
