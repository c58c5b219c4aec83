"""A guest's counters, from one record of libvirt's bulk domain statistics.

``virConnectGetAllDomainStats`` answers for every running domain in one call,
as a flat dict of typed fields (``cpu.time``, ``block.0.rd.bytes``, ...);
this turns one such dict into the few totals a sample needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NS_PER_SECOND = 1e9


@dataclass(frozen=True)
class GuestCounters:
    uuid: str
    cpu: float  # seconds of CPU the guest has used since it started
    vcpus: int
    memory_resident: int  # bytes of host memory the guest's QEMU holds
    memory_max: int  # bytes the guest was given
    disk_read: int  # bytes since it started, every disk
    disk_written: int
    net_received: int  # bytes since it started, every interface (as the guest sees them)
    net_sent: int


def _total(stats: dict[str, Any], group: str, field: str) -> int:
    return sum(int(stats.get(f"{group}.{i}.{field}", 0))
               for i in range(int(stats.get(f"{group}.count", 0))))


def guest_counters(uuid: str, stats: dict[str, Any]) -> GuestCounters:
    return GuestCounters(
        uuid=uuid,
        cpu=int(stats.get("cpu.time", 0)) / NS_PER_SECOND,
        vcpus=int(stats.get("vcpu.current", 0)),
        memory_resident=int(stats.get("balloon.rss", 0)) * 1024,
        memory_max=int(stats.get("balloon.maximum", 0)) * 1024,
        disk_read=_total(stats, "block", "rd.bytes"),
        disk_written=_total(stats, "block", "wr.bytes"),
        # libvirt turns a tap's counters round: rx is what the guest received.
        net_received=_total(stats, "net", "rx.bytes"),
        net_sent=_total(stats, "net", "tx.bytes"),
    )
