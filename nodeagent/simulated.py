"""A simulated hypervisor: the real agent over libvirt's test driver.

To measure what the control plane costs with a hundred nodes and ten thousand
instances on one machine, agents run against ``test:///default``, libvirt's
own in-memory driver: the same API (define, start, destroy, lifecycle events,
metadata), no guest. Everything above the hypervisor is the real agent; below
it only three things differ, each at one place:

- libvirt: the test driver (one per agent process: it lives in the connection);
- disks: a sparse file of the disk's size instead of a qcow2 overlay on a
  downloaded image (nothing is fetched or converted);
- kernel networking: none (no bridge, namespace, dnsmasq or nftables), and a
  simulated node never takes the network node's role.

A node that runs no guests must never be mistaken for a real one, so the mode
needs two explicit signals that agree (``SFCLOUD_SIMULATED_HYPERVISOR`` and a
test driver URI), its node record says ``simulated``, and the portal places
instances only on nodes whose kind matches its own setting.
"""

from __future__ import annotations

import os
from pathlib import Path

from nodeagent.hostfacts import Capacity, Virtualization

TEST_DRIVER_SCHEME = "test://"
# Each simulated node offers this much: enough for hundreds of small
# instances, whatever the machine measuring them has.
CAPACITY = Capacity(vcpus=64, memory_mib=256 * 1024, disk_total_gb=10_000,
                    disk_free_gb=10_000)
VIRTUALIZATION = Virtualization(
    "test", "pc", "simulated hypervisor: libvirt's test driver, no guest runs here")


class SimulationRefused(Exception):
    """The agent was not asked plainly enough to simulate (or to run for real)."""


def check_mode(*, simulated: bool, libvirt_uri: str) -> None:
    """Refuse a half-asked mode: a test driver without the setting (a node
    that would look real and run nothing), or the setting over a real libvirt."""
    on_test_driver = libvirt_uri.startswith(TEST_DRIVER_SCHEME)
    if on_test_driver and not simulated:
        raise SimulationRefused(
            f"SFCLOUD_LIBVIRT_URI is {libvirt_uri}, libvirt's test driver, which runs no "
            "guests: set SFCLOUD_SIMULATED_HYPERVISOR=yes to run a simulated node")
    if simulated and not on_test_driver:
        raise SimulationRefused(
            "SFCLOUD_SIMULATED_HYPERVISOR is on, but SFCLOUD_LIBVIRT_URI is "
            f"{libvirt_uri}: a simulated node drives libvirt's test driver "
            "(test:///default) only")


def make_sparse_disk(path: Path, size_gb: int) -> None:
    """The disk step of a simulated instance: a file of the disk's size that
    takes no space (written to a temporary name, then renamed, as a real
    overlay is, so a killed pass leaves no half-made disk)."""
    partial = path.with_name(f".{path.name}.tmp")
    with open(partial, "wb") as disk:
        disk.truncate(size_gb * 1024**3)
    os.replace(partial, path)
