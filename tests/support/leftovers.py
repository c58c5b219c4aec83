"""Guests left behind by test clouds that died without cleaning up.

A test run that is killed (a CI timeout, a machine restart) cannot undefine its
domains, and libvirt keeps them defined for ever. Every test cloud and scratch guest
keeps its disks under its own ``/var/tmp/sfcloud-test-*`` directory, which goes with
it; a domain whose disks all name such a directory that no longer exists belongs to
a test that is gone, and is removed at the start of the next session. A domain with
any disk elsewhere, or under a directory that still exists (a run going on beside
this one), is never touched: other work shares this libvirtd.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt

TEST_ROOT = Path("/var/tmp")
TEST_DIR_PREFIX = "sfcloud-test-"


def owning_test_dir(path: str) -> Path | None:
    """The test's own directory a disk path lies under, or None when it is no test's."""
    try:
        parts = Path(path).relative_to(TEST_ROOT).parts
    except ValueError:
        return None
    if len(parts) < 2 or not parts[0].startswith(TEST_DIR_PREFIX):
        return None
    return TEST_ROOT / parts[0]


def is_orphan(domain_name: str, disk_paths: list[str]) -> bool:
    if not domain_name.startswith("sfcloud-") or not disk_paths:
        return False
    dirs = [owning_test_dir(path) for path in disk_paths]
    return all(d is not None and not d.exists() for d in dirs)


def remove_orphaned_domains(uri: str = "qemu:///system") -> list[str]:
    """Destroy and undefine the orphans; the names removed."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return []  # no libvirtd yet: nothing of ours can be defined either
    removed = []
    try:
        for domain in conn.listAllDomains():
            try:
                tree = ET.fromstring(domain.XMLDesc())
                disks = [source.get("file", "") for source in tree.findall("devices/disk/source")]
                if not is_orphan(domain.name(), disks):
                    continue
                if domain.isActive():
                    domain.destroy()
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                                     | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                     | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                removed.append(domain.name())
            except libvirt.libvirtError:
                continue  # gone meanwhile, or someone else's business
    finally:
        conn.close()
    return removed
