"""A guest's counters, from one record of libvirt's bulk domain statistics.

``virConnectGetAllDomainStats`` answers for every running domain in one call,
as a flat dict of typed fields (``cpu.time``, ``block.0.rd.bytes``, ...);
this turns one such dict into the few totals a sample needs. A group libvirt
left out (it does not wait for a domain busy with something else) is None,
never 0: a counter that seemed to drop to nothing and come back would make
a spike out of nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NS_PER_SECOND = 1e9


@dataclass(frozen=True)
class GuestCounters:
    uuid: str
    cpu: float | None  # seconds of CPU the guest has used since it started
    vcpus: int | None
    memory_resident: int | None  # bytes of host memory the guest's QEMU holds
    memory_max: int | None  # bytes the guest was given
    disk_read: int | None  # bytes since it started, every disk
    disk_written: int | None
    net_received: int | None  # bytes since it started, every interface (as the guest sees them)
    net_sent: int | None


def _field(stats: dict[str, Any], name: str, scale: float = 1) -> Any:
    return None if name not in stats else int(stats[name]) * scale


def _total(stats: dict[str, Any], group: str, field: str) -> int | None:
    count = stats.get(f"{group}.count")
    if count is None:
        return None
    values = [stats.get(f"{group}.{i}.{field}") for i in range(int(count))]
    return None if None in values else sum(int(v) for v in values)


def guest_counters(uuid: str, stats: dict[str, Any]) -> GuestCounters:
    cpu = _field(stats, "cpu.time")
    return GuestCounters(
        uuid=uuid,
        cpu=None if cpu is None else cpu / NS_PER_SECOND,
        vcpus=_field(stats, "vcpu.current"),
        memory_resident=_field(stats, "balloon.rss", 1024),
        memory_max=_field(stats, "balloon.maximum", 1024),
        disk_read=_total(stats, "block", "rd.bytes"),
        disk_written=_total(stats, "block", "wr.bytes"),
        # libvirt turns a tap's counters round: rx is what the guest received.
        net_received=_total(stats, "net", "rx.bytes"),
        net_sent=_total(stats, "net", "tx.bytes"),
    )
