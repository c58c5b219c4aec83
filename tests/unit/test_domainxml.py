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
