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
_PROBE_SECONDS = 5.0


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


def _cpu_has_virt_flags() -> bool:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "vmx" in flags or "svm" in flags
    except OSError:
        pass
    return False


async def probe_virtualization(requested: str = "auto", machine: str = "pc") -> Virtualization:
    """Decide between KVM and software emulation.

    ``requested`` is "kvm", "qemu" or "auto" (probe).
    """
    if requested in ("kvm", "qemu"):
        return Virtualization(requested, machine, "set by SFCLOUD_VIRT_TYPE")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Virtualization("qemu", machine, "no usable /dev/kvm: using software emulation")
    if not _cpu_has_virt_flags():
        return Virtualization(
            "qemu", machine,
            "the CPU shows no vmx/svm flag (nested virtualisation is off): "
            "using software emulation",
        )
    if await _kvm_guest_runs():
        return Virtualization("kvm", machine, "a KVM test guest ran")
    return Virtualization(
        "qemu", machine,
        "/dev/kvm exists but a KVM test guest did not run: using software emulation",
    )


async def _kvm_guest_runs() -> bool:
    """Boot the firmware alone under KVM and wait for it to say anything.

    SeaBIOS writes its banner to the debug port 0x402 within milliseconds
    when the CPU really executes guest code; a hung nested KVM writes nothing.
    """
    if shutil.which(QEMU_BINARY) is None:
        return False
    with tempfile.TemporaryDirectory(prefix="sfcloud-kvm-probe-") as tmp:
        output = Path(tmp) / "firmware.log"
        process = await asyncio.create_subprocess_exec(
            QEMU_BINARY, "-accel", "kvm", "-machine", "pc", "-m", "32",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-chardev", f"file,id=firmware,path={output}",
            "-device", "isa-debugcon,iobase=0x402,chardev=firmware",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            deadline = asyncio.get_running_loop().time() + _PROBE_SECONDS
            while asyncio.get_running_loop().time() < deadline:
                if output.exists() and output.stat().st_size > 0:
                    return True
                if process.returncode is not None:
                    return False
                await asyncio.sleep(0.1)
            return False
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
