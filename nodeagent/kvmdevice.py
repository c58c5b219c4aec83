"""Make /dev/kvm usable by libvirt's QEMU user, as udev would have.

Where no udev runs (containers, some VMs, a fresh machine without an init
system) /dev/kvm stays ``crw------- root root``. libvirt then probes QEMU
as root, where KVM works, and finds at every later lookup that its QEMU
user cannot open /dev/kvm: it marks its capability cache stale and probes
QEMU again at *every* domain define (about 40 s each on a 2-core machine),
even for guests under software emulation. Debian's own udev rule gives the
device group ``kvm`` and mode 0660; this module applies the same, once, when
it is missing, and says so. Nobody outside that group keeps access.
"""

from __future__ import annotations

import grp
import os
import stat
from dataclasses import dataclass
from pathlib import Path

KVM_DEVICE = Path("/dev/kvm")
KVM_GROUP = "kvm"
KVM_MODE = 0o660


@dataclass(frozen=True)
class KvmDeviceCheck:
    """What was found, and what (if anything) was done about it."""

    ok: bool
    changed: bool
    message: str


def _describe(mode: int, gid: int) -> str:
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{stat.filemode(mode)} group {group}"


def ensure_access(device: Path = KVM_DEVICE, *, fix: bool = True) -> KvmDeviceCheck:
    """Give ``device`` group ``kvm`` and mode 0660 when it lacks them.

    Returns ok=True when there is nothing to do (no device at all is fine:
    guests then run under software emulation). Without ``fix``, or without
    the privilege to fix it, the message says what an operator must run.
    """
    try:
        info = device.stat()
    except FileNotFoundError:
        return KvmDeviceCheck(ok=True, changed=False, message=f"{device} does not exist")
    if not stat.S_ISCHR(info.st_mode):
        return KvmDeviceCheck(ok=False, changed=False,
                              message=f"{device} is not a character device; left alone")
    try:
        kvm_gid = grp.getgrnam(KVM_GROUP).gr_gid
    except KeyError:
        return KvmDeviceCheck(
            ok=False, changed=False,
            message=f"there is no {KVM_GROUP!r} group (is qemu-system-x86 installed?)")
    group_rw = stat.S_IRGRP | stat.S_IWGRP
    if info.st_gid == kvm_gid and info.st_mode & group_rw == group_rw:
        return KvmDeviceCheck(ok=True, changed=False,
                              message=f"{device} is {_describe(info.st_mode, info.st_gid)}")
    before = _describe(info.st_mode, info.st_gid)
    advice = (f"{device} is {before}: libvirt will re-probe QEMU at every domain define "
              f"(tens of seconds each). Fix: chgrp {KVM_GROUP} {device}; "
              f"chmod {KVM_MODE:o} {device} (what Debian's udev rule does)")
    if not fix or os.geteuid() != 0:
        return KvmDeviceCheck(ok=False, changed=False, message=advice)
    # Keep the owner; the group and mode become exactly Debian's.
    os.chown(device, -1, kvm_gid)
    os.chmod(device, KVM_MODE)
    after = device.stat()
    return KvmDeviceCheck(
        ok=True, changed=True,
        message=f"{device} was {before}, now {_describe(after.st_mode, after.st_gid)} "
                f"(no udev here: applied Debian's rule so libvirt stops re-probing QEMU)")
