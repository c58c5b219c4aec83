"""What the node agent accepts from etcd: every record the portal writes
passes, and a record with a field that would become a path outside the
agent's directories, a device libvirt reads otherwise, a command argument or
a kernel object it should not be, is refused with the field named."""

from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import (
    AddressReservation,
    Disk,
    DiskSource,
    Image,
    ImageObserved,
    InstanceSpec,
    InterfaceSpec,
    NetworkSpec,
    NodeInfo,
)
from nodeagent.records import BadRecord, RecordGate, claimed_node, contained

KEYS = Keys("/t")
GATE = RecordGate(KEYS)
UUID = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01"
OTHER = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a02"


def instance(**changes: Any) -> dict[str, Any]:
    spec = InstanceSpec(
        uuid=UUID, name="web-1", namespace="shop", cpus=2, memory=512, node="node-a",
        disks=[Disk(device="vda", size_gb=8, base="demo",
                    source=DiskSource(url="file:///var/lib/sfcloud/demo.qcow2",
                                      image_uuid=OTHER)),
               Disk(device="vdc", size_gb=2),
               Disk(device="hdc", size_gb=1, base="https://example.org/x.iso", type="cdrom",
                    bus="ide", source=DiskSource(url="https://example.org/x.iso"))],
        ssh_key="ssh-ed25519 AAAA x", user_data="I2Nsb3VkLWNvbmZpZwo=", interfaces=[OTHER],
    ).to_dict()
    spec.update(changes)
    return spec


def refusal(key: str, record: Any) -> str | None:
    value = record if isinstance(record, bytes) else json.dumps(record).encode()
    return GATE(key, value)


def test_what_the_portal_writes_passes() -> None:
    assert refusal(KEYS.instance(UUID), instance()) is None
    snapshot = Image(uuid=UUID, name="web-1-vda-20261207", namespace="shop",
                     source_url=f"sf://instance/{OTHER}/vda", kind="snapshot", node="node-a",
                     instance_uuid=OTHER, device="vda").to_dict()
    assert refusal(KEYS.image(UUID), snapshot) is None
    assert refusal(KEYS.image(UUID), Image(
        uuid=UUID, name="https://example.org/debian-12-genericcloud-amd64.qcow2",
        namespace="system", source_url="https://example.org/debian.qcow2",
        precache=True).to_dict()) is None
    assert refusal(KEYS.interface(UUID), InterfaceSpec(
        uuid=UUID, network_uuid=OTHER, instance_uuid=OTHER, namespace="shop", order=0,
        macaddr="02:00:00:12:34:56", ipv4="10.0.0.5", floating="192.0.2.9").to_dict()) is None
    assert refusal(KEYS.network(UUID), NetworkSpec(
        uuid=UUID, name="web", namespace="shop", netblock="10.0.0.0/24", vxid=4242,
        floating_gateway="192.0.2.2").to_dict()) is None
    assert refusal(KEYS.node("node-a"), NodeInfo(
        name="node-a", ip="10.0.0.11", vcpus=4, memory_mib=8192, disk_total_gb=100,
        disk_free_gb=50, virt_type="kvm", machine="pc", agent_port=13001).to_dict()) is None
    assert refusal(KEYS.observed_image("node-a", UUID), ImageObserved(
        state="ready", size=10, sha256="a" * 64).to_dict()) is None
    assert refusal(KEYS.address(FLOATING_POOL, "192.0.2.9"), AddressReservation(
        address="192.0.2.9", type="floating", user=["interface", UUID],
        network_uuid=OTHER).to_dict()) is None
    assert GATE(KEYS.network_node_role, b"node-a") is None
    # Keys the agent does not act on are not its business.
    assert GATE(KEYS.console_session("x"), b"anything") is None


def _disk0(**changes: Any) -> dict[str, Any]:
    disks = instance()["disks"]
    disks[0] = {**disks[0], **changes}
    return instance(disks=disks)


@pytest.mark.parametrize("record, reason", [
    (_disk0(device="../../etc/x"), "disks[0].device '../../etc/x' is not a disk device name"),
    (_disk0(device="vda/../../x"), "is not a disk device name"),
    (_disk0(device="vdc\n"), "is not a disk device name"),
    (_disk0(device="vdb"), "disks[0].device vdb is the config drive's"),
    (_disk0(size_gb=10**9), "disks[0].size_gb 1000000000 is not a whole number from 1 to"),
    (_disk0(size_gb="8; rm -rf /"), "disks[0].size_gb"),
    (_disk0(bus="virtio'/><disk"), "disks[0].bus"),
    (_disk0(source={"url": "file:///etc/shadow"}),
     "disks[0].source.url 'file:///etc/shadow': only http and https URLs are fetched"),
    (_disk0(source={"url": "file:///var/lib/../../etc/shadow", "image_uuid": OTHER}),
     "is not a plain absolute file path"),
    (_disk0(source={"url": "gopher://x/", "image_uuid": OTHER}), "only http and https"),
    (_disk0(source={"url": "https://example.org/x", "image_uuid": "../x"}),
     "disks[0].source.image_uuid '../x' is not a uuid"),
    (instance(uuid=OTHER), "is not the '0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01' its key names"),
    (instance(name="evil\ndhcp-host=x"), "name: "),
    (instance(name="a" * 64), "is not a valid hostname"),
    (instance(namespace="../x"), "namespace: "),
    (instance(node="../../node"), "node '../../node' is not a node name"),
    (instance(node="n1\n"), "is not a node name"),  # a whole match: ``$`` lets "\n" by
    (instance(cpus=10**6), "cpus 1000000 is not a whole number"),
    (instance(memory=True), "memory True is not a whole number"),
    (instance(disks="vda"), "disks must be a list"),
    (instance(disks=[]), "disks must be a list of 1 to"),
    (instance(interfaces=["../../x"]), "interfaces[0] '../../x' is not a uuid"),
    (instance(power={"generation": 2, "action": "format"}), "power.action 'format'"),
    (instance(configdrive="/dev/sda"), "configdrive"),
    (instance(ssh_key=["a"]), "ssh_key"),
    ([1, 2], "the instance record is not a JSON object"),
    (b"{not json", "the record is not JSON"),
])
def test_hostile_instances_are_refused(record: Any, reason: str) -> None:
    found = refusal(KEYS.instance(UUID), record)
    assert found is not None and reason in found, found


def test_an_instance_key_that_is_not_a_uuid_is_refused() -> None:
    assert "is not a uuid" in (refusal(KEYS.instance("..x"), instance(uuid="..x")) or "")
    # A key deeper than the family's records would be listed with them.
    found = refusal(KEYS.instance("../../x"), instance(uuid="../../x"))
    assert "is not where a record is kept" in (found or "")


def _iface(**changes: Any) -> dict[str, Any]:
    record = InterfaceSpec(uuid=UUID, network_uuid=OTHER, instance_uuid=OTHER, namespace="shop",
                           order=0, macaddr="02:00:00:12:34:56", ipv4="10.0.0.5").to_dict()
    record.update(changes)
    return record


def _net(**changes: Any) -> dict[str, Any]:
    record = NetworkSpec(uuid=UUID, name="web", namespace="shop", netblock="10.0.0.0/24",
                         vxid=4242).to_dict()
    record.update(changes)
    return record


@pytest.mark.parametrize("key, record, reason", [
    (KEYS.interface(UUID), _iface(macaddr="02:00:00:12:34:56\ndhcp-range=x"), "macaddr"),
    (KEYS.interface(UUID), _iface(macaddr="02-00-00-12-34-56"), "as the portal writes one"),
    (KEYS.interface(UUID), _iface(ipv4="10.0.0.5,set:x"), "ipv4 '10.0.0.5,set:x' is not an IPv4"),
    (KEYS.interface(UUID), _iface(model="virtio'/>"), "model: "),
    (KEYS.interface(UUID), _iface(floating="0x7f.1"), "floating '0x7f.1' is not an IPv4"),
    (KEYS.interface(UUID), _iface(network_uuid="../x"), "network_uuid '../x' is not a uuid"),
    (KEYS.network(UUID), _net(vxid=-1), "vxid -1 is not a whole number from 1 to 16777215"),
    (KEYS.network(UUID), _net(netblock="10.0.0.1/24"), "is not a network as the portal writes"),
    (KEYS.network(UUID), _net(netblock="127.0.0.0/8"), "netblock: '127.0.0.0/8' overlaps"),
    (KEYS.network(UUID), _net(mtu=100000), "mtu 100000"),
    (KEYS.network(UUID), _net(name="x; reboot"), "name: "),
    (KEYS.network(UUID), _net(provide_nat="yes"), "provide_nat 'yes' is not true or false"),
    (KEYS.image(UUID), {**Image(uuid=UUID, name="s", namespace="shop", source_url="sf://x",
                                kind="snapshot", device="../../../etc/passwd").to_dict()},
     "device '../../../etc/passwd' is not a disk device name"),
    (KEYS.image(UUID), Image(uuid=UUID, name="s", namespace="shop",
                             source_url="file:///a/../../etc/shadow").to_dict(),
     "is not a plain absolute file path"),
    (KEYS.image(UUID), Image(uuid=UUID, name="s", namespace="shop", source_url="https://x/",
                             instance_uuid="x/../y").to_dict(), "instance_uuid"),
    (KEYS.node("node-b"), NodeInfo(name="node-b", ip="10.0.0.12; x", vcpus=1, memory_mib=1,
                                   disk_total_gb=1, disk_free_gb=1, virt_type="kvm",
                                   machine="pc").to_dict(), "ip '10.0.0.12; x' is not an IP"),
    (KEYS.node("node-b"), NodeInfo(name="node-c", ip="10.0.0.12", vcpus=1, memory_mib=1,
                                   disk_total_gb=1, disk_free_gb=1, virt_type="kvm",
                                   machine="pc").to_dict(), "name 'node-c' is not the 'node-b'"),
    (KEYS.observed_image("node-b", UUID), {"state": "ready", "sha256": "x"}, "sha256 'x'"),
    (KEYS.address(FLOATING_POOL, "192.0.2.9"),
     {"address": "192.0.2.10", "type": "floating", "user": [], "network_uuid": OTHER},
     "address '192.0.2.10' is not the '192.0.2.9' its key names"),
])
def test_hostile_records_of_other_kinds_are_refused(key: str, record: Any, reason: str) -> None:
    found = refusal(key, record)
    assert found is not None and reason in found, found


def test_a_hostile_network_node_name_is_refused() -> None:
    assert "is not a node name" in (GATE(KEYS.network_node_role, b"../x") or "")


def test_the_node_a_refused_record_names() -> None:
    assert claimed_node(json.dumps(instance(disks="x")).encode()) == "node-a"
    assert claimed_node(b"[1]") is None and claimed_node(b"{") is None
    assert claimed_node(json.dumps({"node": 5}).encode()) is None


def test_uuids_must_be_canonical() -> None:
    upper = str(uuidlib.UUID(UUID)).upper()
    assert "is not a uuid" in (refusal(KEYS.instance(upper), instance(uuid=upper)) or "")


def test_paths_made_of_record_fields_stay_in_their_directory(tmp_path: Path) -> None:
    directory = tmp_path / "instances" / UUID
    directory.mkdir(parents=True)
    assert contained(directory, "vda.qcow2") == directory / "vda.qcow2"
    for name in ("../vda.qcow2", "..", "", "a/../../b", "/etc/passwd"):
        with pytest.raises(BadRecord):
            contained(directory, name)
    # A symlink already there that points out of the directory.
    (directory / "vdc.qcow2").symlink_to("/etc/passwd")
    with pytest.raises(BadRecord, match="leads outside"):
        contained(directory, "vdc.qcow2")
