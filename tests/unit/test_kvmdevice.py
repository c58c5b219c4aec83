"""/dev/kvm without udev: given Debian's group and mode, never more."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from nodeagent import kvmdevice

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")


def _device(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "kvm"
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(10, 232))
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


def test_root_only_device_gets_the_kvm_group(tmp_path: Path) -> None:
    device = _device(tmp_path, 0o600)
    result = kvmdevice.ensure_access(device)
    assert result.ok and result.changed
    info = device.stat()
    assert info.st_gid == grp.getgrnam("kvm").gr_gid
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_uid == 0
    assert "was crw-------" in result.message


def test_a_device_already_right_is_left_alone(tmp_path: Path) -> None:
    device = _device(tmp_path, 0o660)
    os.chown(device, 0, grp.getgrnam("kvm").gr_gid)
    before = device.stat()
    result = kvmdevice.ensure_access(device)
    assert result.ok and not result.changed
    assert device.stat().st_mtime_ns == before.st_mtime_ns


def test_without_fix_it_only_says_what_to_run(tmp_path: Path) -> None:
    device = _device(tmp_path, 0o600)
    result = kvmdevice.ensure_access(device, fix=False)
    assert not result.ok and not result.changed
    assert "chgrp kvm" in result.message and "chmod 660" in result.message
    assert stat.S_IMODE(device.stat().st_mode) == 0o600


def test_the_mode_becomes_exactly_debians(tmp_path: Path) -> None:
    device = _device(tmp_path, 0o606)
    kvmdevice.ensure_access(device)
    assert stat.S_IMODE(device.stat().st_mode) == 0o660  # others lose access


def test_no_device_is_fine(tmp_path: Path) -> None:
    result = kvmdevice.ensure_access(tmp_path / "absent")
    assert result.ok and not result.changed
