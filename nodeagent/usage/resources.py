"""Shaken Fist's ``resources`` events, from the same readings as the graphs.

Shaken Fist's nodes log one event of type ``resources`` every five minutes,
whose ``extra`` is a flat dict of figures; ``sf-client node resources`` shows
the newest and ``sf-client node cpuhogs`` reads its ``process_cpu_fraction_*``
keys. The agent logs one when it starts and then every five minutes, named
and shaped as Shaken Fist's (the figures sfcloud has no counterpart for, such
as etcd or event log roles, say so rather than being left out).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloudstate.vocabulary import EventType, ObjectKind
from nodeagent.events import EventLog
from nodeagent.usage.sampler import Sample, UsageSampler

log = logging.getLogger(__name__)

INTERVAL = 300.0
MESSAGE = "updated node resources and package versions"
MIB = 1024 * 1024
PROCESS = "sfcloud-nodeagent"


@dataclass(frozen=True)
class NodeFacts:
    """What the agent knows of its node beyond the sample."""

    is_network_node: bool
    disks: dict[str, str]  # Shaken Fist's name for a path ("sfroot", "instances", ...) -> path
    queue_waiting: int
    queue_processing: int


def process_key(name: str) -> str:
    """Shaken Fist names a process's figures with anything not alphanumeric as ``_``."""
    return re.sub(r"[^a-zA-Z0-9]", "_", name)


def resources_extra(sample: Sample, facts: NodeFacts,
                    cpu_fraction: float | None) -> dict[str, Any]:
    host = sample.host
    extra: dict[str, Any] = {
        "is_etcd_master": False,
        "is_hypervisor": True,
        "is_network_node": facts.is_network_node,
        "is_eventlog_node": False,
        "cpu_max": host.cpus,
        "cpu_available": host.cpus,
        "cpu_max_per_instance": host.cpus,
        "cpu_load_1": host.load[0],
        "cpu_load_5": host.load[1],
        "cpu_load_15": host.load[2],
        "memory_max": host.memory_total // MIB,
        "memory_available": host.memory_available // MIB,
    }
    extra.update(_disks(facts.disks))
    extra.update({
        "disk_read_bytes": host.disk_read,
        "disk_write_bytes": host.disk_written,
        "network_read_bytes": host.net_received,
        "network_write_bytes": host.net_sent,
    })
    extra.update(_guests(sample))
    extra.update({
        "node_queue_processing": facts.queue_processing,
        "node_queue_waiting": facts.queue_waiting,
        "node_queue_deferred": 0,
    })
    if cpu_fraction is not None:
        extra[f"process_cpu_fraction_{process_key(PROCESS)}"] = round(cpu_fraction, 4)
    return extra


def _disks(disks: dict[str, str]) -> dict[str, int]:
    """Free bytes under each path, and the totals of their filesystems (each once)."""
    found: dict[str, int] = {}
    seen: set[int] = set()
    total = used = 0
    free_least: int | None = None
    for name, path in disks.items():
        try:
            stat = os.statvfs(path)
        except OSError:
            continue
        free = stat.f_bavail * stat.f_frsize
        found[f"disk_free_{name}"] = free
        if stat.f_fsid not in seen:
            seen.add(stat.f_fsid)
            total += stat.f_blocks * stat.f_frsize
            used += (stat.f_blocks - stat.f_bfree) * stat.f_frsize
            free_least = free if free_least is None else min(free_least, free)
    return {**found, "disk_total": total, "disk_free": free_least or 0, "disk_used": used}


def _guests(sample: Sample) -> dict[str, int]:
    """The running guests' totals (a figure libvirt left out of a guest counts as none)."""
    def total(field: str) -> float:
        return sum(value for guest in sample.guests.values()
                   if (value := getattr(guest, field)) is not None)

    return {
        "cpu_total_instance_vcpus": int(total("vcpus")),
        "cpu_total_instance_cpu_time": int(total("cpu") * 1e9),
        "memory_total_instance_max": int(total("memory_max")) // MIB,
        "memory_total_instance_actual": int(total("memory_resident")) // MIB,
        "instances_total": len(sample.guests),
        "instances_active": len(sample.guests),
    }


class ProcessCpu:
    """This process's share of one core since the last time it was asked;
    none over less than a minute (as Shaken Fist, which skips processes
    younger than that: starting up is busy, not a hog)."""

    MIN_WINDOW = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._since = (clock(), self._used())

    @staticmethod
    def _used() -> float:
        times = os.times()
        return times.user + times.system

    def fraction(self) -> float | None:
        now, used = self._clock(), self._used()
        before, used_before = self._since
        if now - before < self.MIN_WINDOW:
            return None
        self._since = (now, used)
        return (used - used_before) / (now - before)


class ResourcesReporter:
    """Logs the node's resources event at start, then every INTERVAL seconds."""

    def __init__(self, *, node: str, sampler: UsageSampler, events: EventLog,
                 facts: Callable[[], NodeFacts], interval: float = INTERVAL):
        self.node = node
        self.sampler = sampler
        self.events = events
        self.facts = facts
        self.interval = interval
        self._cpu = ProcessCpu()

    async def run(self) -> None:
        while True:
            try:
                await self.report()
            except Exception:  # noqa: BLE001 - a missed report is not worth the agent's life
                log.exception("the node's resources event failed")
            await asyncio.sleep(self.interval)

    async def report(self) -> None:
        sample = await self.sampler.current()
        extra = resources_extra(sample, self.facts(), self._cpu.fraction())
        self.events.emit(ObjectKind.NODE, self.node, MESSAGE, type=EventType.RESOURCES,
                         extra=extra)
