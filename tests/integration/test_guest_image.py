"""Boot the project's own guest image under libvirt (TCG) and check what its init promises.

Only libvirt-python, qemu-img and pycdlib are involved, so these tests pin down the image itself.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.guestvm import (
    Guest,
    GuestSpec,
    guest_timings,
    make_config_drive,
    make_scratch_dir,
    open_libvirt,
    remove_scratch_dir,
)
from tests.support.httpserve import HTTPTestServer
from tests.support.socketdhcp import SocketDhcpServer

pytest_plugins = ["tests.support.fixtures_images"]
pytestmark = pytest.mark.integration

HOSTNAME = "sfcloud-vm-7"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3x4n0t4r3alK3yF0rT3st1ng+/sfcloud test@sfcloud"
USERDATA_MARKER = "USERDATA-SAYS-42"


@pytest.fixture(scope="module")
def conn(libvirt_daemon: None) -> Iterator[libvirt.virConnect]:
    connection = open_libvirt()
    yield connection
    connection.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = make_scratch_dir()
    yield path
    remove_scratch_dir(path)


@pytest.fixture
def disk_image(guest_image_dir: Path) -> Path:
    return guest_image_dir / "disk.qcow2"


def _marker_lines(guest: Guest) -> list[str]:
    return [line for line in guest.serial.lines() if line.startswith("SFCLOUD-")]


def test_config_drive_user_data_and_acpi_poweroff(
    conn: libvirt.virConnect, workdir: Path, disk_image: Path
) -> None:
    iso = workdir / "config-2.iso"
    make_config_drive(
        iso,
        hostname=HOSTNAME,
        public_keys={"mykey": KEY},
        user_data=f"#!/bin/sh\necho {USERDATA_MARKER}\nexit 0\n".encode(),
    )
    spec = GuestSpec(disk_image=disk_image, workdir=workdir, config_drive=iso)
    with Guest(conn, spec) as guest:
        guest.serial.wait_for_line("SFCLOUD-READY")
        lines = guest.serial.lines()
        for expected in (
            "SFCLOUD-GUEST-UP",
            f"SFCLOUD-HOSTNAME: {HOSTNAME}",
            f"SFCLOUD-KEY: {KEY}",
            USERDATA_MARKER,
            "SFCLOUD-USERDATA: ran rc=0",
        ):
            assert expected in lines, f"{expected!r} missing from {_marker_lines(guest)}"
        # A guest without NICs prints no address lines at all.
        assert not [line for line in lines if line.startswith("SFCLOUD-IP:")]

        # The console is a shell whose prompt carries the hostname from the config drive.
        guest.console_type("echo CONSOLE-$((6*7))\n")
        guest.serial.wait_for_line("CONSOLE-42", timeout=30)
        assert any(line.startswith(f"root@{HOSTNAME}:") for line in guest.serial.lines())

        assert guest.dom is not None
        guest.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        guest.wait_stopped(timeout=60)
        state, reason = guest.dom.state()
        assert state == libvirt.VIR_DOMAIN_SHUTOFF
        assert reason == libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN  # the guest, not a destroy
        assert "SFCLOUD-SHUTDOWN" in guest.serial.lines()


def test_no_nic_no_config_drive_is_ready_quickly(
    conn: libvirt.virConnect, workdir: Path, disk_image: Path
) -> None:
    spec = GuestSpec(disk_image=disk_image, workdir=workdir)
    with Guest(conn, spec) as guest:
        guest.serial.wait_for_line("SFCLOUD-READY")
        lines = guest.serial.lines()
        assert "SFCLOUD-HOSTNAME: none" in lines
        assert "SFCLOUD-USERDATA: none" in lines
        assert not [line for line in lines if line.startswith(("SFCLOUD-IP:", "SFCLOUD-KEY:"))]
        # Measured on the guest's own clock, so host load slows both ends alike: without a NIC
        # and a drive, init has nothing to wait for (about 2.2 s on an idle host, mostly
        # loading modules under TCG).
        timings = guest_timings(lines)
        assert timings["ready"] - timings["up"] < 6.0, timings
        assert timings["network-done"] - timings["network-start"] < 1.0, timings


def test_two_nics_one_with_dhcp_and_indented_json_on_virtio_drive(
    conn: libvirt.virConnect, workdir: Path, disk_image: Path
) -> None:
    iso = workdir / "config-2.iso"
    keys = {"first": KEY, "second.key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ second@host"}
    make_config_drive(
        iso,
        hostname="vm-on-virtio",
        public_keys=keys,
        user_data=b"#cloud-config\r\npackages: []\n",
        indent=4,
    )
    spec = GuestSpec(
        disk_image=disk_image, workdir=workdir, config_drive=iso, config_drive_bus="virtio", nics=2
    )
    with Guest(conn, spec) as guest:
        # Only the first NIC has a DHCP server (on the far end of its QEMU socket).
        dhcp = SocketDhcpServer(port=guest.nics[0].port, address="10.99.0.42", prefix=24)
        dhcp.start()
        try:
            guest.serial.wait_for_line("SFCLOUD-READY")
            lines = guest.serial.lines()
            assert "SFCLOUD-HOSTNAME: vm-on-virtio" in lines
            assert [line for line in lines if line.startswith("SFCLOUD-KEY:")] == [
                f"SFCLOUD-KEY: {key}" for key in keys.values()
            ]
            assert "SFCLOUD-USERDATA: #cloud-config" in lines
            assert "SFCLOUD-IP: eth0 10.99.0.42/24" in lines
            assert "SFCLOUD-IP: eth1 none" in lines
            assert dhcp.acked == [guest.nics[0].mac]
            # Both NICs ask in parallel: the silent one costs about 3 s, not 3 s plus the other.
            timings = guest_timings(lines)
            assert timings["network-done"] - timings["network-start"] < 5.0, timings

            # The lease's router and MTU were applied, not just the address.
            guest.console_type("echo MTU=$(cat /sys/class/net/eth0/mtu); ip route show default\n")
            guest.serial.wait_for_line("MTU=1450", timeout=30)
            guest.serial.wait_for(
                lambda lines: any(
                    line.startswith("default via 10.99.0.1 dev eth0") for line in lines
                ),
                "default route via the DHCP router",
                timeout=30,
            )
        finally:
            dhcp.stop()


def test_ctrl_alt_del_reboots_and_shell_poweroff_stops(
    conn: libvirt.virConnect, workdir: Path, disk_image: Path
) -> None:
    spec = GuestSpec(disk_image=disk_image, workdir=workdir)
    with Guest(conn, spec) as guest:
        guest.serial.wait_for_line("SFCLOUD-READY")
        guest.send_ctrl_alt_del()
        guest.serial.wait_for_line("SFCLOUD-GUEST-UP", count=2)
        guest.serial.wait_for_line("SFCLOUD-READY", count=2)
        assert guest.is_active()  # on_reboot=restart: same domain, booted again

        guest.console_type("poweroff\n")
        guest.wait_stopped(timeout=60)
        assert guest.dom is not None
        assert guest.dom.state() == [
            libvirt.VIR_DOMAIN_SHUTOFF,
            libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN,
        ]


def test_direct_kernel_boot_of_vmlinuz_and_initrd(
    conn: libvirt.virConnect, workdir: Path, disk_image: Path
) -> None:
    iso = workdir / "config-2.iso"
    make_config_drive(iso, hostname="direct-boot", user_data=None)
    spec = GuestSpec(disk_image=disk_image, workdir=workdir, config_drive=iso, direct_kernel=True)
    with Guest(conn, spec) as guest:
        guest.serial.wait_for_line("SFCLOUD-READY")
        lines = guest.serial.lines()
        assert "SFCLOUD-HOSTNAME: direct-boot" in lines
        assert "SFCLOUD-USERDATA: none" in lines
        assert not any(line.startswith("SYSLINUX") for line in lines)  # no boot loader ran


def test_image_server_serves_the_disk(image_server: HTTPTestServer, disk_image: Path) -> None:
    before = image_server.count("/demo.qcow2")
    digest = hashlib.sha256()
    with urllib.request.urlopen(image_server.url("/demo.qcow2"), timeout=30) as response:
        assert response.headers["Content-Length"] == str(disk_image.stat().st_size)
        while chunk := response.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(disk_image.read_bytes()).hexdigest()
    assert image_server.count("/demo.qcow2") == before + 1
