"""Shaken Fist's disk layout: device names by one running index, the config
drive second on the first disk's bus, cdroms never on virtio or IDE."""

from __future__ import annotations

import pytest

from cloudstate import disklayout
from cloudstate.disklayout import Placed
from cloudstate.validation import ValidationError


def names(disks: list[tuple[str, str]], config_drive: bool = True) -> list[tuple[str, str]]:
    return [(p.device, p.bus) for p in disklayout.lay_out(disks, config_drive=config_drive)]


def test_the_config_drive_takes_index_one() -> None:
    assert names([("virtio", "disk"), ("virtio", "disk")]) == [("vda", "virtio"),
                                                               ("vdc", "virtio")]
    assert names([("virtio", "disk"), ("virtio", "disk")], config_drive=False) == \
        [("vda", "virtio"), ("vdb", "virtio")]
    assert disklayout.config_drive(Placed("vda", "virtio")) == Placed("vdb", "virtio")
    assert disklayout.config_drive(Placed("sda", "sata")) == Placed("sdb", "sata")
    assert disklayout.config_drive(Placed("nvme0", "nvme")) == Placed("nvme1", "nvme")
    # Laid out before these rules: a cdrom first, on IDE; the config drive was vdb.
    assert disklayout.config_drive(Placed("hdc", "ide", "cdrom")) == Placed("vdb", "virtio")


def test_each_disk_is_named_by_its_own_bus() -> None:
    # Shaken Fist's example: -d 8@debian:11 -D size=1,bus=sata
    assert names([("virtio", "disk"), ("sata", "disk")]) == [("vda", "virtio"), ("sdc", "sata")]
    assert names([("nvme", "disk"), ("scsi", "disk"), ("usb", "disk")]) == \
        [("nvme0", "nvme"), ("sdc", "scsi"), ("sdd", "usb")]


def test_a_cdrom_on_virtio_goes_to_usb_keeping_its_letter() -> None:
    # The third disk a cdrom: on IDE by index this was hde, which a pc machine's one
    # IDE controller can't have ("Only 1 IDE controller is supported").
    assert names([("virtio", "disk"), ("virtio", "disk"), ("virtio", "cdrom")]) == \
        [("vda", "virtio"), ("vdc", "virtio"), ("sdd", "usb")]
    assert names([("virtio", "cdrom")]) == [("sda", "usb")]
    assert disklayout.config_drive(Placed("sda", "usb", "cdrom")) == Placed("sdb", "usb")
    assert names([("virtio", "disk"), ("scsi", "cdrom")]) == [("vda", "virtio"), ("sdc", "scsi")]


@pytest.mark.parametrize("bus", [None, "", "virtio", "sata", "scsi", "usb", "nvme"])
def test_buses_offered(bus: str | None) -> None:
    assert disklayout.bus(bus) == (bus or "virtio")


@pytest.mark.parametrize("bus,message", [("ide", "invalid disk bus ide.*dropped IDE"),
                                         ("floppy", "invalid disk bus floppy")])
def test_other_buses_are_refused(bus: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        disklayout.bus(bus)
    with pytest.raises(ValidationError, match="invalid disk type"):
        disklayout.disk_type("floppy")
