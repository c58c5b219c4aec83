"""Render an instance's libvirt domain XML from a Jinja2 template, and check it.

As in Shaken Fist, the template is a plain file an operator may replace.
The agent then relies on a few things being in the result (the name, the
uuid, our metadata block), so those are verified before anything is defined;
libvirt validates the rest against its schema when the domain is defined.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from cloudstate.validation import VIDEO_MODELS  # one list, checked when the portal creates
from nodeagent.firmware import Loader

METADATA_NS = "https://sfcloud.dev/xmlns/domain/1"
DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "domain.xml.j2"


class DomainXMLError(Exception):
    """The template produced something the agent can't safely define."""


@dataclass(frozen=True)
class DomainDisk:
    device: str
    path: Path
    bus: str = "virtio"
    type: str = "disk"  # disk or cdrom
    format: str = "qcow2"
    readonly: bool = False
    # 1 for the disk the firmware boots from; None for no place in the boot order.
    boot_order: int | None = None


@dataclass(frozen=True)
class DomainInterface:
    """A NIC. With a bridge, libvirt puts the tap into it; without one (an
    agent in another network namespace than libvirtd), libvirt only makes
    the tap and the agent moves it into its own namespace's bridge."""

    bridge: str | None
    mac: str
    model: str = "virtio"
    mtu: int | None = None
    tap: str | None = None  # the tap's name, so the agent can find it


@dataclass(frozen=True)
class DomainOwner:
    """What marks a domain as ours: the cloud's name and the node's."""

    cluster: str
    node: str


def _environment(template_path: Path) -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_path.parent)),
        autoescape=True,  # every value lands in XML text or attributes
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(template_path.name)


def render(
    *,
    template_path: Path | None,
    owner: DomainOwner,
    uuid: str,
    domain_name: str,
    name: str,
    namespace: str,
    cpus: int,
    memory_mib: int,
    virt_type: str,
    machine: str,
    disks: list[DomainDisk],
    interfaces: list[DomainInterface],
    console_log: Path,
    video_model: str,
    vnc_password: str | None = None,
    firmware: Loader | None = None,
) -> str:
    """The domain XML; ``firmware`` is a UEFI guest's (None: BIOS)."""
    if video_model not in VIDEO_MODELS:
        video_model = "cirrus"
    context: dict[str, Any] = {
        "metadata_ns": METADATA_NS,
        "cluster": owner.cluster,
        "node": owner.node,
        "uuid": uuid,
        "domain_name": domain_name,
        "name": name,
        "namespace": namespace,
        "cpus": cpus,
        "memory": memory_mib,
        "virt_type": virt_type,
        "machine": machine,
        "disks": disks,
        "interfaces": interfaces,
        "console_log": console_log,
        "video_model": video_model,
        "vnc_password": vnc_password,
        "firmware": firmware,
    }
    xml = _environment(template_path or DEFAULT_TEMPLATE).render(**context)
    check(xml, owner=owner, uuid=uuid, domain_name=domain_name)
    return xml


def interface_xml(nic: DomainInterface) -> str:
    """One NIC's <interface> element, as the default template writes it, to
    plug into (or unplug from) a defined domain."""
    element = ET.Element("interface", type="bridge" if nic.bridge else "ethernet")
    if nic.bridge:
        ET.SubElement(element, "source", bridge=nic.bridge)
    if nic.tap:
        ET.SubElement(element, "target", dev=nic.tap)
    ET.SubElement(element, "mac", address=nic.mac)
    ET.SubElement(element, "model", type=nic.model)
    if nic.mtu:
        ET.SubElement(element, "mtu", size=str(nic.mtu))
    return ET.tostring(element, encoding="unicode")


def interface_macs(xml: str) -> dict[str, str]:
    """MAC -> <interface> element (as XML) of each NIC a domain's XML has."""
    found = {}
    for element in ET.fromstring(xml).findall("devices/interface"):
        mac = element.find("mac")
        if mac is not None and mac.get("address"):
            found[mac.get("address", "").lower()] = ET.tostring(element, encoding="unicode")
    return found


def check(xml: str, *, owner: DomainOwner, uuid: str, domain_name: str) -> None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DomainXMLError(f"the domain template did not produce valid XML: {exc}") from exc
    if root.tag != "domain":
        raise DomainXMLError(f"the domain template's root element is <{root.tag}>, not <domain>")
    if (root.findtext("name") or "").strip() != domain_name:
        raise DomainXMLError("the domain template must keep <name>{{ domain_name }}</name>")
    if (root.findtext("uuid") or "").strip().lower() != uuid.lower():
        raise DomainXMLError("the domain template must keep <uuid>{{ uuid }}</uuid>")
    found = read_owner(root)
    if found != owner:
        raise DomainXMLError("the domain template must keep the sfcloud metadata block")


def read_owner(root: ET.Element) -> DomainOwner | None:
    """The owner recorded in a domain's XML, or None if it isn't ours."""
    block = root.find(f"metadata/{{{METADATA_NS}}}instance")
    if block is None:
        return None
    cluster = block.findtext(f"{{{METADATA_NS}}}cluster")
    node = block.findtext(f"{{{METADATA_NS}}}node")
    if not cluster or not node:
        return None
    return DomainOwner(cluster=cluster.strip(), node=node.strip())
