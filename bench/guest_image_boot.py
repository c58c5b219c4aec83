"""How long the project's guest image takes to boot under libvirt/TCG, and to power off.

    /work/venv/bin/python bench/guest_image_boot.py [--runs 3]

Each run boots a fresh overlay with a config drive (IDE cdrom) and no NIC, alternating the
real path (SeaBIOS -> syslinux -> kernel from the disk) with the baseline (QEMU loads the same
vmlinuz + initrd.gz directly), so the difference is the cost of firmware and boot loader.
Times are from dom.create() to the marker appearing in the serial log (polled every 10 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import libvirt  # noqa: E402

from deploy.guestimage import ensure_guest_image, image_info  # noqa: E402
from tests.support.fixtures_images import guest_image_cache_root  # noqa: E402
from tests.support.guestvm import (  # noqa: E402
    Guest,
    GuestSpec,
    guest_timings,
    make_config_drive,
    make_scratch_dir,
    open_libvirt,
    remove_scratch_dir,
)


def boot_once(
    conn: libvirt.virConnect, workdir: Path, disk: Path, direct: bool
) -> dict[str, float]:
    iso = workdir / "config-2.iso"
    make_config_drive(
        iso,
        hostname="bench-vm",
        public_keys={"k": "ssh-ed25519 AAAA bench"},
        user_data=b"#!/bin/sh\necho hello\n",
    )
    with Guest(
        conn, GuestSpec(disk_image=disk, workdir=workdir, config_drive=iso, direct_kernel=direct)
    ) as guest:
        up = guest.serial.wait_for_line("SFCLOUD-GUEST-UP", poll=0.01)
        ready = up + guest.serial.wait_for_line("SFCLOUD-READY", poll=0.01)
        timings = guest_timings(guest.serial.lines())
        assert guest.dom is not None
        pressed = time.monotonic()
        guest.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        guest.wait_stopped()
        return {
            "create->UP": up,
            "create->READY": ready,
            "guest uptime at READY": timings["ready"],
            "ACPI button->stopped": time.monotonic() - pressed,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    started = time.monotonic()
    image_dir = ensure_guest_image(guest_image_cache_root())
    ensure_s = time.monotonic() - started
    info = image_info(image_dir)
    print(
        f"image {image_dir} (kernel {info['kernel_version']}), ensure_guest_image {ensure_s:.3f} s"
    )
    print(f"disk.qcow2 {(image_dir / 'disk.qcow2').stat().st_size / 2**20:.1f} MiB")

    conn = open_libvirt()
    results: dict[str, list[dict[str, float]]] = {"disk (syslinux)": [], "direct kernel": []}
    workdir = make_scratch_dir()
    try:
        for _ in range(args.runs):
            for label, direct in (("disk (syslinux)", False), ("direct kernel", True)):
                results[label].append(boot_once(conn, workdir, image_dir / "disk.qcow2", direct))
    finally:
        remove_scratch_dir(workdir)
        conn.close()

    metrics = list(next(iter(results.values()))[0])
    print(f"\n{'median of ' + str(args.runs):24} " + " ".join(f"{m:>22}" for m in metrics))
    for label, runs in results.items():
        cells = []
        for metric in metrics:
            values = [run[metric] for run in runs]
            cells.append(
                f"{statistics.median(values):6.2f} s ({min(values):.2f}-{max(values):.2f})"
            )
        print(f"{label:24} " + " ".join(f"{c:>22}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
