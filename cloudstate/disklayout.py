"""Where an instance's disks go: their buses and device names, as Shaken Fist
lays them out, so a disk spec written for Shaken Fist gets the same guest.

One running index over every disk names the devices: the first disk is
index 0, the config drive (when there is one) index 1 on the first disk's
bus, and the other disks follow. A device is named by its own bus's prefix
and the index: ``vd`` + letter for virtio, ``sd`` + letter for sata, scsi and
usb, ``nvme`` + digit for nvme (``-d 8@img -D size=1,bus=sata`` gives vda,
vdb for the config drive, sdc).

A cdrom can't be on virtio (QEMU has no removable media there) and a ``pc``
machine has a single IDE controller (two buses of two units: more than four
IDE devices, or a device placed by a global index, makes libvirt refuse with
"Only 1 IDE controller is supported"). So, as in Shaken Fist, a cdrom asked
for on virtio goes on usb, keeping its letter (vdc becomes sdc), and IDE is
not offered at all.

The portal lays the disks out at create time and stores the result; the
node agent places the config drive by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloudstate.validation import ValidationError

BUSES = ("virtio", "sata", "scsi", "usb", "nvme")
TYPES = ("disk", "cdrom")
DEFAULT_BUS = "virtio"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_PREFIXES = {"virtio": ("vd", _LETTERS), "sata": ("sd", _LETTERS), "scsi": ("sd", _LETTERS),
             "usb": ("sd", _LETTERS), "nvme": ("nvme", _DIGITS)}
# The most disks a layout can name: nvme counts in digits.
MAX_INDEX = len(_DIGITS) - 1


def bus(value: Any, field: str = "bus") -> str:
    """A bus a disk may ask for (absent or null: virtio)."""
    if value in (None, ""):
        return DEFAULT_BUS
    if value not in BUSES:
        hint = " (Shaken Fist dropped IDE in v0.7: a pc machine has one IDE controller)" \
            if value == "ide" else ""
        raise ValidationError(field, f"invalid disk bus {value}: use one of "
                                     f"{', '.join(BUSES)}{hint}")
    return str(value)


def disk_type(value: Any, field: str = "type") -> str:
    if value in (None, ""):
        return "disk"
    if value not in TYPES:
        raise ValidationError(field, f"invalid disk type {value}: use disk or cdrom")
    return str(value)


def device_name(bus: str, index: int) -> str:
    prefix, scheme = _PREFIXES[bus]
    if not 0 <= index < len(scheme):
        raise ValidationError("disk", f"too many disks: a {bus} disk can't be number {index}")
    return prefix + scheme[index]


def presented_bus(bus: str, kind: str) -> str:
    """The bus a disk is really attached to: a cdrom on virtio goes on usb."""
    return "usb" if kind == "cdrom" and bus == "virtio" else bus


@dataclass(frozen=True)
class Placed:
    """A disk's place in the guest."""

    device: str
    bus: str
    type: str = "disk"


def lay_out(disks: list[tuple[str, str]], *, config_drive: bool) -> list[Placed]:
    """The place of each disk, given as (bus asked for, type), in order."""
    placed = []
    for position, (asked, kind) in enumerate(disks):
        index = position if position == 0 or not config_drive else position + 1
        actual = presented_bus(asked, kind)
        placed.append(Placed(device=device_name(actual, index), bus=actual, type=kind))
    return placed


def config_drive(first: Placed) -> Placed:
    """The config drive: index 1, on the first disk's bus (a cdrom's usb too).
    An instance laid out before these rules (its first disk on IDE) kept
    Shaken Fist's old place for it, vdb on virtio."""
    if first.bus not in BUSES:
        return Placed(device="vdb", bus="virtio")
    return Placed(device=device_name(first.bus, 1), bus=first.bus)
