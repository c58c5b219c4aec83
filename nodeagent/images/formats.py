"""What a downloaded file is, decided from its header in Python, before
qemu-img ever sees it.

qemu-img left to guess a format, or given a format whose metadata names
other files (a VMDK descriptor's extents, a qcow2 backing or data file, a
VMDK's parent), opens those files: a hostile image could make the agent
read /etc/shadow into a guest's disk, or tell whether a path exists from
the error (the class of OpenStack's CVE-2022-47951). So the format is read
here from the bytes, everything that refers to another file is refused
here, and qemu-img is then always told the format (``-f``).

The checks follow what QEMU 7.2's drivers read from each header.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from nodeagent.images.errors import ImageError

HEAD_BYTES = 64 * 1024
SECTOR = 512
MAX_DESCRIPTOR = 64 * 1024

SUPPORTED = "use qcow2, a raw disk, VMDK (monolithicSparse or streamOptimized), VDI, VHD or VHDX"

# Formats QEMU knows that we do not take (each brings its own risks, and
# none is usual for cloud images), by the magic at the start of the file.
_REFUSED_MAGIC = (
    (b"LUKS\xba\xbe", "LUKS-encrypted"),
    (b"QED\x00", "QED"),
    (b"Bochs Virtual HD Image", "Bochs"),
    (b"WithoutFreeSpace", "Parallels"),
    (b"WithouFreSpacExt", "Parallels"),
    (b"#!/bin/sh\n#V2.0 Format", "cloop"),
    (b"COWD", "VMware 3 (COWD)"),
)
# A VMDK descriptor is text: QEMU's probe looks for these lines.
_VMDK_DESCRIPTOR = re.compile(
    rb"^\s*(?:#\s*Disk DescriptorFile|createType\s*=|version\s*=\s*[123]\s*$)", re.MULTILINE)

_QCOW2_INCOMPAT_CORRUPT = 1 << 1
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2
_QCOW2_KNOWN_INCOMPAT = 0b11111
_VMDK_SELF_CONTAINED = (b"monolithicSparse", b"streamOptimized")
_VDI_SIGNATURE = 0xBEDA107F
_VDI_TYPES = {1: "dynamic", 2: "fixed"}  # undo and differencing images name a parent
_VHD_DIFFERENCING = 4


@dataclass(frozen=True)
class Sniffed:
    """The format qemu-img must be told (its driver's name)."""

    format: str


def sniff(path: Path) -> Sniffed:
    """The file's format, or ImageError saying why it is refused."""
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
        if head.startswith(b"QFI\xfb"):
            return _qcow(head)
        if head.startswith(b"KDMV"):
            return _vmdk_sparse(f, head)
    if head.startswith(b"vhdxfile"):
        return Sniffed("vhdx")
    if head.startswith(b"conectix"):
        return _vhd(head)
    if len(head) >= 80 and struct.unpack_from("<I", head, 64)[0] == _VDI_SIGNATURE:
        return _vdi(head)
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise ImageError(f"{name} images are not supported; {SUPPORTED}")
    if _VMDK_DESCRIPTOR.search(head[:4096]):
        raise ImageError("the file is a VMDK descriptor, which names other files for its "
                         "data; upload a single-file (monolithicSparse or streamOptimized) VMDK")
    return Sniffed("raw")


def _qcow(head: bytes) -> Sniffed:
    if len(head) < 72:
        raise ImageError("the qcow2 image's header is cut short")
    version, backing_offset = struct.unpack_from(">IQ", head, 4)
    if version == 1:
        if backing_offset:
            raise _backing("qcow")
        if len(head) < 40 or struct.unpack_from(">I", head, 36)[0]:
            raise ImageError("the qcow image is encrypted; upload an unencrypted image")
        return Sniffed("qcow")
    if version not in (2, 3):
        raise ImageError(f"qcow2 version {version} is not supported; {SUPPORTED}")
    if backing_offset:
        raise _backing("qcow2")
    if struct.unpack_from(">I", head, 32)[0]:
        raise ImageError("the qcow2 image is encrypted; upload an unencrypted image")
    if version == 3:
        if len(head) < 104:
            raise ImageError("the qcow2 image's header is cut short")
        (incompatible,) = struct.unpack_from(">Q", head, 72)
        if incompatible & _QCOW2_INCOMPAT_DATA_FILE:
            raise ImageError("the qcow2 image keeps its data in a separate file; "
                             "upload a standalone image")
        if incompatible & _QCOW2_INCOMPAT_CORRUPT:
            raise ImageError("the qcow2 image is marked corrupt")
        if incompatible & ~_QCOW2_KNOWN_INCOMPAT:
            raise ImageError("the qcow2 image uses features this node does not know")
    return Sniffed("qcow2")


def _backing(fmt: str) -> ImageError:
    return ImageError(f"the {fmt} image refers to a backing file; upload a standalone image "
                      "(qemu-img convert makes one)")


def _vmdk_sparse(f: object, head: bytes) -> Sniffed:
    """A hosted sparse VMDK keeps its data in itself, unless its header
    points QEMU at an embedded descriptor (capacity 0) or a parent."""
    if len(head) < 512:
        raise ImageError("the VMDK image's header is cut short")
    capacity, _granularity, desc_sector, desc_sectors = struct.unpack_from("<QQQQ", head, 12)
    if capacity == 0:
        # QEMU then reads the embedded descriptor as a descriptor file, extents and all.
        raise ImageError("the VMDK image defers to an embedded descriptor naming other "
                         "files; upload a monolithicSparse or streamOptimized VMDK")
    descriptor = b""
    if desc_sector and desc_sectors:
        length = min(desc_sectors * SECTOR, MAX_DESCRIPTOR)
        f.seek(desc_sector * SECTOR)  # type: ignore[attr-defined]
        descriptor = f.read(length)  # type: ignore[attr-defined]
    descriptor = descriptor.split(b"\0", 1)[0]
    kind = re.search(rb'^\s*createType\s*=\s*"?([A-Za-z]+)', descriptor, re.MULTILINE)
    if kind is not None and kind.group(1) not in _VMDK_SELF_CONTAINED:
        raise ImageError(f"VMDK images of type {kind.group(1).decode()} refer to other files; "
                         "upload a monolithicSparse or streamOptimized VMDK")
    if re.search(rb"^\s*parentFileNameHint\s*=", descriptor, re.MULTILINE):
        raise ImageError("the VMDK image refers to a parent image; upload a standalone VMDK")
    return Sniffed("vmdk")


def _vdi(head: bytes) -> Sniffed:
    (image_type,) = struct.unpack_from("<I", head, 76)
    if image_type not in _VDI_TYPES:
        raise ImageError("the VDI image is an undo or differencing image, which refers to a "
                         "parent; upload a standalone VDI")
    return Sniffed("vdi")


def _vhd(head: bytes) -> Sniffed:
    if len(head) < 64:
        raise ImageError("the VHD image's footer is cut short")
    if struct.unpack_from(">I", head, 60)[0] == _VHD_DIFFERENCING:
        raise ImageError("the VHD image is a differencing image, which refers to a parent; "
                         "upload a standalone VHD")
    return Sniffed("vpc")
