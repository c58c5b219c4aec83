from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent import domainxml
from nodeagent.domainxml import DomainDisk, DomainOwner, DomainXMLError

OWNER = DomainOwner(cluster="c1", node="n1")
UUID = "0f8e2c1a-0000-4000-8000-000000000001"


def render(template: Path | None = None, **changes: object) -> str:
    args: dict = dict(
        template_path=template, owner=OWNER, uuid=UUID, domain_name=f"sfcloud-{UUID}",
        name="vm<&>", namespace="system", cpus=2, memory_mib=512, virt_type="qemu",
        machine="pc", disks=[DomainDisk(device="vda", path=Path("/d/vda.qcow2"))],
        interfaces=[], console_log=Path("/d/console.log"), video_model="cirrus",
    )
    args.update(changes)
    return domainxml.render(**args)


def test_default_template_marks_the_domain_as_ours_and_escapes() -> None:
    xml = render()
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert domainxml.read_owner(root) == OWNER
    assert root.findtext("title") == "vm<&>"  # escaped in the XML, intact when parsed
    assert root.find("devices/graphics/listen").get("type") == "socket"
    assert root.find("devices/serial/log").get("file") == "/d/console.log"
    # No VNC or console port may listen on an address.
    assert "port=" not in xml.split("<graphics", 1)[1].split("</graphics>", 1)[0]


def test_kvm_adds_host_cpu() -> None:
    assert "host-passthrough" in render(virt_type="kvm")
    assert "host-passthrough" not in render()


def test_unknown_video_model_falls_back() -> None:
    assert "<model type='cirrus'/>" in render(video_model="<script>")


def test_operator_template_must_keep_our_mark(tmp_path: Path) -> None:
    template = tmp_path / "mine.xml.j2"
    template.write_text("<domain type='qemu'><name>{{ domain_name }}</name>"
                        "<uuid>{{ uuid }}</uuid></domain>")
    with pytest.raises(DomainXMLError, match="metadata"):
        render(template)


def test_operator_template_must_produce_xml(tmp_path: Path) -> None:
    template = tmp_path / "broken.xml.j2"
    template.write_text("<domain>")
    with pytest.raises(DomainXMLError, match="valid XML"):
        render(template)


def test_the_first_disk_boots_and_scsi_gets_its_controller() -> None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(render(disks=[
        DomainDisk(device="sda", path=Path("/d/sda.qcow2"), bus="scsi", boot_order=1),
        DomainDisk(device="sdb", path=Path("/d/config.iso"), bus="scsi", format="raw",
                   readonly=True),
        DomainDisk(device="sdc", path=Path("/d/cd.qcow2"), bus="usb", type="cdrom",
                   readonly=True),
    ]))
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["sda", "sdb", "sdc"]
    assert [d.find("boot") is not None for d in disks] == [True, False, False]
    assert disks[0].find("boot").get("order") == "1"
    assert disks[2].get("device") == "cdrom" and disks[2].find("target").get("bus") == "usb"
    assert root.find("devices/controller[@type='scsi']").get("model") == "virtio-scsi"
    assert root.find("os/boot") is None  # boot order is per device
    assert root.find("os/loader") is None  # BIOS


def test_nvme_disks_are_qemu_arguments() -> None:
    qemu = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    import xml.etree.ElementTree as ET

    root = ET.fromstring(render(disks=[
        DomainDisk(device="nvme0", path=Path("/d/x,y/nvme0.qcow2"), bus="nvme", boot_order=1),
        DomainDisk(device="nvme1", path=Path("/d/config.iso"), bus="nvme", format="raw",
                   readonly=True),
    ]))
    assert root.findall("devices/disk") == []
    args = [a.get("value") for a in root.findall(f"{qemu}commandline/{qemu}arg")]
    assert args == [
        "-drive", "file=/d/x,,y/nvme0.qcow2,format=qcow2,if=none,id=nvme0",
        "-device", "nvme,drive=nvme0,serial=sfcloud-nvme0,bus=pci.0,addr=0x1f,bootindex=1",
        "-drive", "file=/d/config.iso,format=raw,if=none,id=nvme1,readonly=on",
        "-device", "nvme,drive=nvme1,serial=sfcloud-nvme1,bus=pci.0,addr=0x1e",
    ]


def test_uefi_and_secure_boot(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from nodeagent import firmware

    for name in ("OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF_CODE.secboot.fd", "OVMF_VARS.ms.fd"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    assert firmware.offered(tmp_path) == ["uefi", "secure-boot"]
    plain = firmware.loader(Path("/i/u1"), secure_boot=False, own_template=False,
                            directory=tmp_path)
    root = ET.fromstring(render(firmware=plain))
    assert root.findtext("os/loader") == str(tmp_path / "OVMF_CODE.fd")
    assert root.find("os/loader").get("secure") is None
    assert root.find("os/nvram").get("template") == str(tmp_path / "OVMF_VARS.fd")
    assert root.findtext("os/nvram") == "/i/u1/nvram"
    assert root.find("features/smm") is None

    secure = firmware.loader(Path("/i/u1"), secure_boot=True, own_template=True,
                             directory=tmp_path)
    root = ET.fromstring(render(firmware=secure, machine="q35"))
    assert root.find("os/type").get("machine") == "q35"
    assert root.find("os/loader").get("secure") == "yes"
    assert root.findtext("os/loader") == str(tmp_path / "OVMF_CODE.secboot.fd")
    assert root.find("os/nvram").get("template") is None  # the instance brought its own
    assert root.find("features/smm").get("state") == "on"

    (tmp_path / "OVMF_CODE.secboot.fd").unlink()
    assert firmware.offered(tmp_path) == ["uefi"]
    with pytest.raises(firmware.FirmwareMissing, match="no secure boot firmware"):
        firmware.loader(Path("/i/u1"), secure_boot=True, own_template=False,
                        directory=tmp_path)


def test_a_variable_store_linked_out_of_its_instance_is_refused(tmp_path: Path) -> None:
    from nodeagent import firmware, records

    for name in ("OVMF_CODE.fd", "OVMF_VARS.fd"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    instance = tmp_path / "instances" / "u1"
    instance.mkdir(parents=True)
    (instance / firmware.NVRAM_FILE).symlink_to("/etc/shadow")
    with pytest.raises(records.BadRecord, match="leads outside"):
        firmware.loader(instance, secure_boot=False, own_template=True, directory=tmp_path)


def test_an_nvme_first_disk_boots_and_a_libvirt_disk_comes_second() -> None:
    from nodeagent.instances import boot_order

    ordered = boot_order([DomainDisk(device="nvme0", path=Path("/d/a"), bus="nvme"),
                          DomainDisk(device="nvme1", path=Path("/d/b"), bus="nvme"),
                          DomainDisk(device="vdc", path=Path("/d/c"))])
    assert [d.boot_order for d in ordered] == [1, None, 2]
    assert [d.boot_order for d in boot_order([DomainDisk(device="vda", path=Path("/d/a")),
                                               DomainDisk(device="vdb", path=Path("/d/b"))])] \
        == [1, None]
