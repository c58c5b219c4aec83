"""What this machine offers guests: its capacity, and whether KVM really works.

KVM is probed by running a guest, not by looking at /dev/kvm: on a nested
hypervisor without nested virtualisation /dev/kvm exists, opens, and then
hangs every guest. When the probe fails we fall back to software emulation
(libvirt domain type ``qemu``), which is slow but always works.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
# The longest the KVM probe may hold up an agent's start: a KVM that hangs
# costs this, once, and then the agent runs with software emulation.
PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class Virtualization:
    virt_type: str  # "kvm" or "qemu"
    machine: str
    reason: str


@dataclass(frozen=True)
class Capacity:
    vcpus: int
    memory_mib: int
    disk_total_gb: int
    disk_free_gb: int


def capacity(state_dir: Path) -> Capacity:
    stat = os.statvfs(state_dir)
    return Capacity(
        vcpus=os.cpu_count() or 1,
        memory_mib=_meminfo_kib("MemTotal") // 1024,
        disk_total_gb=stat.f_blocks * stat.f_frsize // 1024**3,
        disk_free_gb=stat.f_bavail * stat.f_frsize // 1024**3,
    )


def _meminfo_kib(field: str) -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            name, _, rest = line.partition(":")
            if name == field:
                return int(rest.split()[0])
    raise RuntimeError(f"/proc/meminfo has no {field}")


@dataclass(frozen=True)
class ProbeHost:
    """Where the probe looks: this machine's by default; tests give others
    (a KVM device that is a plain file, a CPU with the flags, a QEMU that
    hangs)."""

    kvm_device: Path = Path("/dev/kvm")
    cpuinfo: Path = Path("/proc/cpuinfo")
    qemu_binary: str = QEMU_BINARY  # looked up on PATH
    seconds: float = PROBE_SECONDS


def _cpu_has_virt_flags(cpuinfo: Path) -> bool:
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "vmx" in flags or "svm" in flags
    except OSError:
        pass
    return False


async def probe_virtualization(requested: str = "auto", machine: str = "pc",
                               host: ProbeHost | None = None) -> Virtualization:
    """Decide between KVM and software emulation, saying why.

    ``requested`` is "kvm", "qemu" or "auto" (probe). The probe takes at
    most ``host.seconds`` (PROBE_SECONDS) whatever KVM does.
    """
    host = host or ProbeHost()
    if requested in ("kvm", "qemu"):
        return Virtualization(requested, machine, "set by SFCLOUD_VIRT_TYPE")
    if not os.access(host.kvm_device, os.R_OK | os.W_OK):
        return Virtualization("qemu", machine,
                              f"no usable {host.kvm_device}: using software emulation")
    if not _cpu_has_virt_flags(host.cpuinfo):
        return Virtualization(
            "qemu", machine,
            "the CPU shows no vmx/svm flag (nested virtualisation is off): "
            "using software emulation",
        )
    failure = await _kvm_guest_fails(host)
    if failure is None:
        return Virtualization("kvm", machine, "a KVM test guest ran")
    return Virtualization(
        "qemu", machine,
        f"{host.kvm_device} exists but a KVM test guest {failure}: using software emulation",
    )


async def _kvm_guest_fails(host: ProbeHost) -> str | None:
    """Boot the firmware alone under KVM and wait for it to say anything;
    None if it did, else what went wrong.

    SeaBIOS writes its banner to the debug port 0x402 within milliseconds
    when the CPU really executes guest code; a hung nested KVM writes nothing.
    """
    binary = shutil.which(host.qemu_binary)
    if binary is None:
        return f"could not be started ({host.qemu_binary} is not installed)"
    with tempfile.TemporaryDirectory(prefix="sfcloud-kvm-probe-") as tmp:
        output = Path(tmp) / "firmware.log"
        process = await asyncio.create_subprocess_exec(
            binary, "-accel", "kvm", "-machine", "pc", "-m", "32",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-chardev", f"file,id=firmware,path={output}",
            "-device", "isa-debugcon,iobase=0x402,chardev=firmware",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            deadline = asyncio.get_running_loop().time() + host.seconds
            while asyncio.get_running_loop().time() < deadline:
                if output.exists() and output.stat().st_size > 0:
                    return None
                if process.returncode is not None:
                    return f"exited with status {process.returncode} before running"
                await asyncio.sleep(0.1)
            return f"did not run within {host.seconds:g} s (KVM hangs here)"
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
