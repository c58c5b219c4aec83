"""The host's own counters, read from /proc and /sys.

Only what a sample needs, read the cheap way: a few small files, no
subprocess. Disks and network interfaces are the physical ones (those with a
``device`` link in /sys), so the bridges, taps and VXLAN links the cloud
makes and the device-mapper layers over a disk are not counted twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the disk's own


@dataclass(frozen=True)
class HostCounters:
    cpus: int
    cpu_busy: float  # seconds of CPU spent on anything but idle and iowait, all cores
    memory_total: int  # bytes
    memory_available: int
    load: tuple[float, float, float]
    disk_read: int  # bytes since boot, physical disks
    disk_written: int
    net_received: int  # bytes since boot, physical interfaces
    net_sent: int

    @property
    def memory_used(self) -> int:
        return self.memory_total - self.memory_available


class HostReader:
    """Reads HostCounters; the roots are parameters so tests can give fakes."""

    def __init__(self, proc: Path = Path("/proc"), sys: Path = Path("/sys")):
        self.proc = proc
        self.sys = sys
        self._ticks = os.sysconf("SC_CLK_TCK")

    def read(self) -> HostCounters:
        memory = self._meminfo()
        disk_read, disk_written = self._disks()
        received, sent = self._interfaces()
        return HostCounters(
            cpus=os.cpu_count() or 1,
            cpu_busy=self._cpu_busy(),
            memory_total=memory["MemTotal"],
            memory_available=memory.get("MemAvailable", memory.get("MemFree", 0)),
            load=self._load(),
            disk_read=disk_read, disk_written=disk_written,
            net_received=received, net_sent=sent,
        )

    def _cpu_busy(self) -> float:
        with open(self.proc / "stat") as stat:
            fields = stat.readline().split()
        # cpu user nice system idle iowait irq softirq steal (guest time is in user)
        ticks = [int(value) for value in fields[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / self._ticks

    def _meminfo(self) -> dict[str, int]:
        found = {}
        with open(self.proc / "meminfo") as meminfo:
            for line in meminfo:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable", "MemFree"):
                    found[name] = int(rest.split()[0]) * 1024
        return found

    def _load(self) -> tuple[float, float, float]:
        one, five, fifteen = (self.proc / "loadavg").read_text().split()[:3]
        return float(one), float(five), float(fifteen)

    def _disks(self) -> tuple[int, int]:
        read = written = 0
        with open(self.proc / "diskstats") as stats:
            for line in stats:
                fields = line.split()
                if len(fields) < 10 or not (self.sys / "block" / fields[2] / "device").exists():
                    continue
                read += int(fields[5]) * SECTOR
                written += int(fields[9]) * SECTOR
        return read, written

    def _interfaces(self) -> tuple[int, int]:
        received = sent = 0
        with open(self.proc / "net" / "dev") as dev:
            for line in dev:
                name, colon, rest = line.partition(":")
                name = name.strip()
                if not colon or not (self.sys / "class" / "net" / name / "device").exists():
                    continue
                fields = rest.split()
                received += int(fields[0])
                sent += int(fields[8])
        return received, sent
