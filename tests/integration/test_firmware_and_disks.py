"""Boot firmware and disk layouts as Shaken Fist's client asks for them:
``--uefi`` and ``--secure-boot`` with Debian's OVMF, and every disk layout
``-d``/``-D`` can express, checked in libvirt's domain and, where the test
guest's kernel has the driver, inside the guest.

The test guest boots under BIOS and UEFI (deploy/guest-image). Its Debian
cloud kernel has virtio, virtio-scsi, NVMe and IDE but no AHCI and no USB:
for sata and usb disks the test shows that libvirt accepts the layout, QEMU
runs it and the guest still boots (from its initramfs), not that the guest
sees those disks.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from cloudstate.model import NodeInfo
from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration
BOOT = 180
LIST_DISKS = "#!/bin/sh\necho \"SFCLOUD-DISKS: $(ls /sys/block | grep -v loop | tr '\\n' ' ')\"\n"


def sf_create(cloud: Cloud, name: str, *args: str) -> dict:
    """Create with Shaken Fist's client; the instance as the API shows it."""
    created = json.loads(cloud.sf("--json", "instance", "create", name, "1", "256",
                                  *args).stdout)
    return cloud.api().get(f"/instances/{created['uuid']}").json()


def domain_xml(uuid: str) -> ET.Element:
    conn = libvirt.open("qemu:///system")
    try:
        return ET.fromstring(conn.lookupByUUIDString(uuid).XMLDesc(0))
    finally:
        conn.close()


def targets(root: ET.Element) -> list[tuple[str, str, str]]:
    """(device, bus, disk|cdrom) of the domain's libvirt disks, in order."""
    return [(disk.find("target").get("dev"), disk.find("target").get("bus"), disk.get("device"))
            for disk in root.findall("devices/disk")]


def delete(cloud: Cloud, uuid: str) -> None:
    cloud.sf("instance", "delete", uuid)
    assert uuid not in cloud.domains()


def user_data() -> str:
    return base64.b64encode(LIST_DISKS.encode()).decode()


# --- UEFI and secure boot ----------------------------------------------------------------------


def test_uefi_boots_the_guest_with_ovmf(cloud: Cloud) -> None:
    created = sf_create(cloud, "uefi", "-d", "1@demo", "--uefi")
    uuid = created["uuid"]
    assert created["uefi"] is True and created["secure_boot"] is False
    assert created["machine_type"] == "pc"
    log = cloud.wait_console(uuid, "SFCLOUD-READY", BOOT)
    # OVMF's boot manager started the disk's EFI loader, which started the guest.
    assert re.search(r'BdsDxe: starting Boot\d+ "UEFI', log), log[:2000]
    assert "SFCLOUD-GUEST-UP" in log
    root = domain_xml(uuid)
    assert root.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE.fd"
    assert root.find("os/loader").get("type") == "pflash"
    assert root.findtext("os/nvram") == str(cloud.instance_dir(uuid) / "nvram")
    assert (cloud.instance_dir(uuid) / "nvram").exists()
    delete(cloud, uuid)


def test_secure_boot_enforces_signatures(cloud: Cloud) -> None:
    created = sf_create(cloud, "secure", "-d", "1@demo", "--uefi", "--secure-boot")
    uuid = created["uuid"]
    assert created["secure_boot"] is True and created["machine_type"] == "q35"
    root = domain_xml(uuid)
    assert "q35" in root.find("os/type").get("machine")
    assert root.find("os/loader").get("secure") == "yes"
    assert root.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE.secboot.fd"
    assert root.find("features/smm").get("state") == "on"
    # Microsoft's keys are enrolled, so the firmware refuses the test image's
    # unsigned loader: secure boot is really on.
    log = cloud.wait_console(uuid, "Access Denied", BOOT)
    assert "SFCLOUD-GUEST-UP" not in log
    delete(cloud, uuid)


def test_secure_boot_needs_uefi(cloud: Cloud) -> None:
    result = cloud.sf("instance", "create", "nosecure", "1", "256", "-d", "1@demo",
                      "--secure-boot", check=False)
    assert result.returncode != 0
    assert "secure boot requires UEFI be enabled" in result.stdout + result.stderr


def test_a_node_without_ovmf_is_refused_clearly(cloud: Cloud) -> None:
    assert set(cloud.api().get(f"/nodes/{cloud.node}").json()["firmware"]) == \
        {"bios", "uefi", "secure-boot"}
    bare = f"bare-{secrets.token_hex(3)}"
    info = NodeInfo(name=bare, ip="192.0.2.98", vcpus=4, memory_mib=8192, disk_total_gb=50,
                    disk_free_gb=40, virt_type="qemu", machine="pc", firmware=[])

    async def register(etcd):  # type: ignore[no-untyped-def]
        await etcd.put(cloud.keys.node(bare), info.to_json())
        await etcd.put(cloud.keys.node_alive(bare), b"1")

    async def forget(etcd):  # type: ignore[no-untyped-def]
        await etcd.delete(cloud.keys.node_alive(bare))
        await etcd.delete(cloud.keys.node(bare))

    cloud.etcd_call(register)
    try:
        response = cloud.api().post("/instances", {
            "name": "firmware", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
            "uefi": True, "placed_on": bare})
        assert response.status_code == 507, response.text
        assert f"{bare} has no UEFI firmware (Debian's ovmf package)" in response.json()["error"]
    finally:
        cloud.etcd_call(forget)


# --- disk layouts ------------------------------------------------------------------------------

# (disk arguments, the domain's disks, the block devices the guest sees: None when its
# kernel has no driver for one of them, or NO_BOOT when the guest can't boot at all, where
# QEMU running the layout is what is shown).
NO_BOOT = "no boot"
USB_BOOT = "Loading /vmlinuz"
LAYOUTS = [
    pytest.param(["-d", "1@demo"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk")], "vda vdb",
                 id="one-disk"),
    pytest.param(["-d", "1@demo", "-d", "1"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("vdc", "virtio", "disk")], "vda vdb vdc", id="blank-second-disk"),
    pytest.param(["--configdrive", "none", "-d", "1@demo", "-d", "1"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk")], None,
                 id="no-config-drive"),
    # Issue 19 #11: a cdrom as the third disk no longer asks for a second IDE controller.
    pytest.param(["-d", "1@demo", "-d", "1", "-D", "type=cdrom,base=demo"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("vdc", "virtio", "disk"), ("sdd", "usb", "cdrom")], None,
                 id="cdrom-third-on-usb"),
    pytest.param(["-d", "1@demo", "-D", "type=cdrom,base=demo,bus=scsi"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("sdc", "scsi", "cdrom")], "sr0 vda vdb", id="cdrom-on-scsi"),
    pytest.param(["-d", "1@demo", "-D", "size=1,bus=scsi"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("sdc", "scsi", "disk")], "sda vda vdb", id="scsi-disk"),
    pytest.param(["-D", "size=1,base=demo,bus=scsi"],
                 [("sda", "scsi", "disk"), ("sdb", "scsi", "disk")], "sda sdb",
                 id="scsi-root"),
    # The client sends every -d before any -D.
    pytest.param(["-D", "size=1,base=demo,bus=nvme", "-D", "size=1"],
                 [("vdc", "virtio", "disk")], "nvme0n1 nvme1n1 vda", id="nvme-root"),
    pytest.param(["-d", "1@demo", "-D", "size=1,bus=sata"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("sdc", "sata", "disk")], None, id="sata-disk"),
    pytest.param(["-D", "size=1,base=demo,bus=sata"],
                 [("sda", "sata", "disk"), ("sdb", "sata", "disk")], None, id="sata-root"),
    pytest.param(["-d", "1@demo", "-D", "size=1,bus=usb"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("sdc", "usb", "disk")], None, id="usb-disk"),
    # Booting from USB 1.1 storage under emulation takes minutes: the firmware starting
    # the disk's boot loader (SYSLINUX, reading the kernel) is the evidence here.
    pytest.param(["-D", "size=1,base=demo,bus=usb"],
                 [("sda", "usb", "disk"), ("sdb", "usb", "disk")], USB_BOOT, id="usb-root"),
    # A cdrom first (the demo image is no ISO, so nothing boots from it).
    pytest.param(["-D", "type=cdrom,base=demo"],
                 [("sda", "usb", "cdrom"), ("sdb", "usb", "disk")], NO_BOOT, id="cdrom-first"),
    # Secure boot's q35 has an AHCI controller of its own (and refuses the unsigned loader).
    pytest.param(["--uefi", "--secure-boot", "-d", "1@demo", "-D", "size=1,bus=sata",
                  "-D", "type=cdrom,base=demo"],
                 [("vda", "virtio", "disk"), ("vdb", "virtio", "disk"),
                  ("sdc", "sata", "disk"), ("sdd", "usb", "cdrom")], NO_BOOT,
                 id="secure-boot-sata-and-cdrom"),
]


@pytest.mark.parametrize("args,disks,seen", LAYOUTS)
def test_disk_layouts(cloud: Cloud, args: list[str], disks: list, seen: str | None) -> None:
    name = f"layout-{secrets.token_hex(2)}"
    result = cloud.sf("--json", "instance", "create", name, "1", "256", *args, "-U",
                      user_data())
    created = json.loads(result.stdout)
    uuid = created["uuid"]
    assert created["state"] == "created", \
        cloud.api().get(f"/instances/{uuid}").json()["error_message"]
    try:
        assert targets(domain_xml(uuid)) == disks
        assert cloud.domains()[uuid] == libvirt.VIR_DOMAIN_RUNNING  # QEMU runs the layout
        if seen == NO_BOOT:
            return
        if seen == USB_BOOT:
            cloud.wait_console(uuid, USB_BOOT, BOOT)
            return
        # The guest boots (from its initramfs, whatever it sees).
        log = cloud.wait_console(uuid, "SFCLOUD-READY", BOOT)
        if seen is not None:
            found = re.search(r"SFCLOUD-DISKS: ([^\r\n]*)", log)
            assert found, log[-2000:]
            assert found.group(1).split() == seen.split()
        # The API names each disk as the domain does (nvme ones are QEMU arguments).
        shown = cloud.api().get(f"/instances/{uuid}").json()
        for disk in shown["disks"]:
            if disk["bus"] != "nvme":
                assert (disk["device"], disk["bus"], disk["type"]) in disks, disk
    finally:
        delete(cloud, uuid)


def test_nvme_disks_are_qemu_arguments(cloud: Cloud) -> None:
    created = sf_create(cloud, "nvme", "-D", "size=1,base=demo,bus=nvme")
    uuid = created["uuid"]
    qemu = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    args = [a.get("value") for a in domain_xml(uuid).findall(f"{qemu}commandline/{qemu}arg")]
    assert any(a.startswith("nvme,drive=nvme0,") and "bootindex=1" in a for a in args), args
    assert [d["device"] for d in created["disks"]] == ["nvme0"]
    wait_for(lambda: "SFCLOUD-HOSTNAME: nvme" in cloud.console_log(uuid), BOOT,
             "the guest to read its config drive on nvme")
    delete(cloud, uuid)


def test_an_nvram_template_starts_the_guests_uefi_variables(
        cloud: Cloud, image_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # OVMF's empty variable store, as a qcow2 image (what an image URL is expected to be).
    template = tmp_path / "nvram.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                    "/usr/share/OVMF/OVMF_VARS.fd", str(template)], check=True)
    image_server.serve_file("/nvram-template.qcow2", template)
    url = image_server.url("/nvram-template.qcow2")
    created = sf_create(cloud, "nvram", "-d", "1@demo", "--uefi", "--nvram-template", url)
    uuid = created["uuid"]
    assert created["nvram_template"] == url
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] != "creating"
             and cloud.api().get(f"/instances/{uuid}").json()["state"] != "initial", BOOT,
             "the instance to be built")
    shown = cloud.api().get(f"/instances/{uuid}").json()
    assert shown["state"] == "created", shown["error_message"]
    cloud.wait_console(uuid, "SFCLOUD-READY", BOOT)
    root = domain_xml(uuid)
    # The instance's own store was copied in; libvirt was given no template of its own.
    assert root.find("os/nvram").get("template") is None
    nvram = cloud.instance_dir(uuid) / "nvram"
    assert nvram.stat().st_size == 131072
    delete(cloud, uuid)
    # A template that is not a variable store for this firmware: the instance says why.
    image_server.serve_file("/not-nvram.qcow2", cloud.demo_image,
                            content_type="application/octet-stream")
    bad = sf_create(cloud, "badnvram", "-d", "1@demo", "--uefi", "--nvram-template",
                    image_server.url("/not-nvram.qcow2"))
    wait_for(lambda: cloud.api().get(f"/instances/{bad['uuid']}").json()["state"] == "error",
             120, "the instance to fail")
    assert "NVRAM template" in cloud.api().get(f"/instances/{bad['uuid']}").json()[
        "error_message"]
    delete(cloud, bad["uuid"])
