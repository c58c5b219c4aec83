"""The simulated hypervisor (nodeagent.simulated) is refused unless asked
for plainly, and its disks take no space."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.simulated import SimulationRefused, check_mode, make_sparse_disk


def test_the_test_driver_without_the_setting_is_refused() -> None:
    with pytest.raises(SimulationRefused, match="SFCLOUD_SIMULATED_HYPERVISOR=yes"):
        check_mode(simulated=False, libvirt_uri="test:///default")


def test_the_setting_over_a_real_libvirt_is_refused() -> None:
    with pytest.raises(SimulationRefused, match="test:///default"):
        check_mode(simulated=True, libvirt_uri="qemu:///system")


def test_both_agreeing_are_accepted() -> None:
    check_mode(simulated=True, libvirt_uri="test:///default")
    check_mode(simulated=False, libvirt_uri="qemu:///system")


def test_a_simulated_disk_is_sparse(tmp_path: Path) -> None:
    disk = tmp_path / "vda.qcow2"
    make_sparse_disk(disk, 20)
    assert disk.stat().st_size == 20 * 1024**3
    assert disk.stat().st_blocks == 0
    assert [p.name for p in tmp_path.iterdir()] == ["vda.qcow2"]
