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

from cloudstate import secgroups
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import (
    AddressReservation,
    AddressSet,
    Artifact,
    Blob,
    BlobObserved,
    Disk,
    DiskSource,
    InstanceObserved,
    InstanceSpec,
    InterfaceObserved,
    InterfaceSpec,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
    NodeSpec,
    SecurityGroup,
    SecurityRule,
    Upload,
)
from nodeagent.records import BadRecord, RecordGate, claimed_node, contained

KEYS = Keys("/t")
GATE = RecordGate(KEYS)
UUID = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01"
OTHER = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a02"
BLOB = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a03"


def instance(**changes: Any) -> dict[str, Any]:
    spec = InstanceSpec(
        uuid=UUID, name="web-1", namespace="shop", cpus=2, memory=512, node="node-a",
        disks=[Disk(device="vda", size_gb=8, base="demo",
                    source=DiskSource(blob_uuid=BLOB, url="demo", artifact_uuid=OTHER)),
               Disk(device="vdc", size_gb=2),
               Disk(device="hdc", size_gb=1, base="https://example.org/x.iso", type="cdrom",
                    bus="ide", source=DiskSource(blob_uuid=BLOB, url="https://example.org/x.iso",
                                                 artifact_uuid=OTHER))],
        ssh_key="ssh-ed25519 AAAA x", user_data="I2Nsb3VkLWNvbmZpZwo=", interfaces=[OTHER],
    ).to_dict()
    spec.update(changes)
    return spec


def refusal(key: str, record: Any) -> str | None:
    value = record if isinstance(record, bytes) else json.dumps(record).encode()
    return GATE(key, value)


# Every form of base portal.cloud.bases resolves, as it keeps it beside the blob.
BASES = ["demo", OTHER, "label:stable", "sf://label/shop/stable", f"sf://snapshot/{OTHER}",
         f"sf://artifact/{OTHER}", f"sf://image/{OTHER}", "sf://upload/shop/my disk.img",
         f"sf://blob/{BLOB}", f"sf://instance/{OTHER}/vda", "https://example.org/x.qcow2",
         "Debian 12 (nightly)"]


def _with_base(base: str) -> dict[str, Any]:
    return _disk0(base=base, source=DiskSource(blob_uuid=BLOB, url=base,
                                               artifact_uuid=OTHER).to_dict())


def test_what_the_portal_writes_passes() -> None:
    assert refusal(KEYS.instance(UUID), instance()) is None
    for base in BASES:
        assert refusal(KEYS.instance(UUID), _with_base(base)) is None, base
    # A disk from a release before blobs: an image by uuid and the URL it came from.
    for url in ("file:///var/lib/sfcloud/demo.qcow2", "sf://instance/x/vda",
                "https://example.org/x.iso"):
        assert refusal(KEYS.instance(UUID), _disk0(source={"url": url, "image_uuid": OTHER})) \
            is None, url
    assert refusal(KEYS.instance(UUID), _disk0(source={"url": "https://example.org/x.iso"})) \
        is None
    artifact = Artifact(uuid=UUID, name="debian-12-genericcloud-amd64.qcow2", namespace="system",
                        source_url="https://example.org/debian.qcow2", precache=True)
    artifact = artifact.with_version(BLOB).with_version(OTHER)
    assert refusal(KEYS.artifact(UUID), artifact.replace(
        versions={"2": OTHER}).to_dict()) is None
    assert refusal(KEYS.artifact(UUID), Artifact(
        uuid=UUID, name="web-1-vda", namespace="shop", source_url=f"sf://instance/{OTHER}/vda",
        type="snapshot", instance_uuid=OTHER, device="vda").with_version(BLOB).to_dict()) is None
    assert refusal(KEYS.artifact(UUID), Artifact(
        uuid=UUID, name="stable", namespace="shop", source_url="sf://label/shop/stable",
        type="label").to_dict()) is None
    for blob in (
        Blob(uuid=BLOB, namespace="shop", origin="fetch", node="node-a",
             source_url="https://example.org/debian.qcow2", replaces=OTHER),
        Blob(uuid=BLOB, namespace="shop", origin="snapshot", node="node-a",
             source_url=f"sf://instance/{OTHER}/vda", instance_uuid=OTHER, device="vda"),
        Blob(uuid=BLOB, namespace="shop", origin="upload", node="node-a", size=10,
             sha512="c" * 128),
        Blob(uuid=BLOB, namespace="system", origin="file", node=None,
             source_url="file:///var/lib/sfcloud/cache/demo%20image.qcow2"),
    ):
        assert refusal(KEYS.blob(BLOB), blob.to_dict()) is None, blob
    assert refusal(KEYS.observed_blob("node-a", BLOB), BlobObserved(
        state="ready", size=10, sha512="a" * 128, done=10, total=10, format="qcow2",
        virtual_size=2**30, modified=1700000000.5).to_dict()) is None
    assert refusal(KEYS.observed_blob("node-a", BLOB), BlobObserved(
        state="error", error="qemu-img said:\nno").to_dict()) is None
    assert refusal(KEYS.upload(UUID), Upload(uuid=UUID, namespace="shop",
                                             node="node-a").to_dict()) is None
    assert refusal(KEYS.interface(UUID), InterfaceSpec(
        uuid=UUID, network_uuid=OTHER, instance_uuid=OTHER, namespace="shop", order=0,
        macaddr="02:00:00:12:34:56", ipv4="10.0.0.5", floating="192.0.2.9").to_dict()) is None
    assert refusal(KEYS.network(UUID), NetworkSpec(
        uuid=UUID, name="web", namespace="shop", netblock="10.0.0.0/24", vxid=4242,
        floating_gateway="192.0.2.2").to_dict()) is None
    assert refusal(KEYS.node("node-a"), NodeInfo(
        name="node-a", ip="10.0.0.11", vcpus=4, memory_mib=8192, disk_total_gb=100,
        disk_free_gb=50, virt_type="kvm", machine="pc", agent_port=13001).to_dict()) is None
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
    (_disk0(source={"blob_uuid": "../../etc/shadow", "url": "demo"}),
     "disks[0].source.blob_uuid '../../etc/shadow' is not a uuid"),
    (_disk0(source={"blob_uuid": BLOB.upper(), "url": "demo"}), "is not a uuid"),
    (_disk0(source={"blob_uuid": BLOB, "url": "demo", "artifact_uuid": "x/../y"}),
     "disks[0].source.artifact_uuid 'x/../y' is not a uuid"),
    # A blob's base is never fetched, but is only ever what the portal writes.
    (_disk0(source={"blob_uuid": BLOB, "url": "file:///etc/shadow"}),
     "disks[0].source.url 'file:///etc/shadow': only http and https URLs are fetched"),
    (_disk0(source={"blob_uuid": BLOB, "url": "gopher://x/"}), "only http and https"),
    (_disk0(source={"blob_uuid": BLOB, "url": "../../etc/shadow"}),
     "is not a base this cloud writes"),
    (_disk0(source={"blob_uuid": BLOB, "url": "demo\n"}), "printable characters"),
    # From before blobs: file:// only for a registered image, and a plain path.
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


def _blob(**changes: Any) -> dict[str, Any]:
    record = Blob(uuid=BLOB, namespace="shop", origin="fetch", node="node-a",
                  source_url="https://example.org/x.qcow2").to_dict()
    record.update(changes)
    return record


def _artifact(**changes: Any) -> dict[str, Any]:
    record = Artifact(uuid=UUID, name="x", namespace="shop",
                      source_url="https://example.org/x.qcow2").to_dict()
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
    (KEYS.network(UUID), _net(netblock="10.0.0.1/24"), "netblock: 10.0.0.1/24 has host bits set"),
    (KEYS.network(UUID), _net(netblock=" 10.0.0.0/24"), "is not a network as the portal writes"),
    (KEYS.network(UUID), _net(netblock="127.0.0.0/8"), "netblock: 127.0.0.0/8 overlaps"),
    (KEYS.network(UUID), _net(mtu=100000), "mtu 100000"),
    (KEYS.network(UUID), _net(name="x; reboot"), "name: "),
    (KEYS.network(UUID), _net(provide_nat="yes"), "provide_nat 'yes' is not true or false"),
    (KEYS.blob(BLOB), _blob(origin="snapshot", source_url="sf://x", instance_uuid=OTHER,
                            device="../../../etc/passwd"),
     "device '../../../etc/passwd' is not a disk device name"),
    (KEYS.blob(BLOB), _blob(origin="snapshot", source_url=None, instance_uuid=OTHER),
     "device None is not a disk device name"),
    (KEYS.blob(BLOB), _blob(origin="snapshot", source_url=None, device="vda"),
     "instance_uuid None is not a uuid"),
    (KEYS.blob(BLOB), _blob(source_url="file:///etc/shadow"),
     "source_url 'file:///etc/shadow': only http and https URLs are fetched"),
    (KEYS.blob(BLOB), _blob(source_url="https:///x"), "names no host"),
    (KEYS.blob(BLOB), _blob(origin="file", node=None, source_url="file:///a/../../etc/shadow"),
     "is not a plain absolute file path"),
    (KEYS.blob(BLOB), _blob(origin="file", node=None, source_url="https://example.org/x"),
     "is not a file:// URL"),
    (KEYS.blob(BLOB), _blob(origin="file", node=None, source_url="file://elsewhere/x"),
     "is not a plain absolute file path"),
    (KEYS.blob(BLOB), _blob(origin="upload", source_url="file:///etc/shadow"),
     "upload blobs are fetched from nowhere"),
    (KEYS.blob(BLOB), _blob(origin="copy"), "origin 'copy' is not one of"),
    (KEYS.blob(BLOB), _blob(node="../n"), "node '../n' is not a node name"),
    (KEYS.blob(BLOB), _blob(node=None), "node None is not a node name"),
    (KEYS.blob(BLOB), _blob(uuid=OTHER), "is not the"),
    (KEYS.blob(BLOB), _blob(replaces="x/../y"), "replaces"),
    (KEYS.blob(BLOB), _blob(sha512="../x"), "sha512 '../x' is not a sha512"),
    (KEYS.blob(BLOB), _blob(size=-1), "size -1"),
    (KEYS.blob("../x"), _blob(uuid="../x"), "is not"),
    (KEYS.artifact(UUID), _artifact(versions={"1": "../../etc/passwd"}, last_index=1),
     "versions[1] '../../etc/passwd' is not a uuid"),
    (KEYS.artifact(UUID), _artifact(versions={"x": BLOB}, last_index=1),
     "versions has an index 'x'"),
    (KEYS.artifact(UUID), _artifact(versions={"2": BLOB}, last_index=1),
     "versions has an index '2'"),
    (KEYS.artifact(UUID), _artifact(versions=[BLOB]), "the versions record is not"),
    (KEYS.artifact(UUID), _artifact(type="kernel"), "type 'kernel' is not one of"),
    (KEYS.artifact(UUID), _artifact(precache="yes"), "precache 'yes' is not true or false"),
    (KEYS.artifact(UUID), _artifact(device="../x"), "device '../x'"),
    (KEYS.upload(UUID), {"uuid": UUID, "namespace": "shop", "node": "../n"}, "node '../n'"),
    (KEYS.upload(UUID), {"uuid": OTHER, "namespace": "shop", "node": "node-a"}, "is not the"),
    (KEYS.node("node-b"), NodeInfo(name="node-b", ip="10.0.0.12; x", vcpus=1, memory_mib=1,
                                   disk_total_gb=1, disk_free_gb=1, virt_type="kvm",
                                   machine="pc").to_dict(), "ip '10.0.0.12; x' is not an IP"),
    (KEYS.node("node-b"), NodeInfo(name="node-c", ip="10.0.0.12", vcpus=1, memory_mib=1,
                                   disk_total_gb=1, disk_free_gb=1, virt_type="kvm",
                                   machine="pc").to_dict(), "name 'node-c' is not the 'node-b'"),
    (KEYS.observed_blob("node-b", BLOB), {"state": "ready", "sha512": "a" * 64},
     "is not a sha512"),
    (KEYS.observed_blob("node-b", BLOB), {"state": "removed"}, "state 'removed'"),
    (KEYS.observed_blob("node-b", BLOB), {"state": "ready", "size": "1; x"}, "size '1; x'"),
    (KEYS.observed_blob("node-b", BLOB), {"state": "ready", "format": "raw\nx"}, "format"),
    (KEYS.observed_blob("../b", BLOB), {"state": "ready"}, "the key's node"),
    (KEYS.observed_blob("node-b", "x"), {"state": "ready"}, "the key's uuid 'x'"),
    (KEYS.address(FLOATING_POOL, "192.0.2.9"),
     {"address": "192.0.2.10", "type": "floating", "user": [], "network_uuid": OTHER},
     "address '192.0.2.10' is not the '192.0.2.9' its key names"),
])
def test_hostile_records_of_other_kinds_are_refused(key: str, record: Any, reason: str) -> None:
    found = refusal(key, record)
    assert found is not None and reason in found, found


GROUP = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a04"
RULE = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a05"


def _group(*rules: dict[str, Any], **changes: Any) -> dict[str, Any]:
    record = SecurityGroup(uuid=GROUP, name="web", namespace="shop", rules=[
        SecurityRule(uuid=RULE, direction="ingress", protocol="tcp", ports="22,80-90",
                     remote_cidrs=["10.0.0.0/8"])]).to_dict()
    if rules:
        record["rules"] = [{**record["rules"][0], **rule} for rule in rules]
    record.update(changes)
    return record


def _address_set(**changes: Any) -> dict[str, Any]:
    record = AddressSet(uuid=UUID, name="office", namespace="shop",
                        cidrs=["10.1.0.0/16", "192.0.2.7/32"]).to_dict()
    record.update(changes)
    return record


def _observed_iface(**changes: Any) -> dict[str, Any]:
    record = InterfaceObserved(node="node-a", groups={GROUP: 3}).to_dict()
    record.update(changes)
    return record


def test_security_groups_as_the_portal_writes_them_pass() -> None:
    ids = iter(str(uuidlib.uuid4()) for _ in range(10))
    default = SecurityGroup(uuid=GROUP, name=secgroups.DEFAULT_GROUP, namespace="shop",
                            description=secgroups.DEFAULT_DESCRIPTION,
                            rules=secgroups.default_rules(GROUP, lambda: next(ids)),
                            generation=7, metadata={"team": "web"})
    assert refusal(KEYS.security_group(GROUP), default.to_dict()) is None
    assert refusal(KEYS.security_group(GROUP), _group()) is None
    for rule in ({"protocol": "icmp", "ports": None, "icmp_type": 8, "icmp_code": 0},
                 {"protocol": "47", "ports": None, "remote_cidrs": []},
                 {"protocol": "udp", "ports": "53", "remote_cidrs": [],
                  "remote_address_set": OTHER}):
        assert refusal(KEYS.security_group(GROUP), _group(rule)) is None, rule
    assert refusal(KEYS.address_set(UUID), _address_set()) is None
    assert refusal(KEYS.interface(UUID), _iface(
        security_groups=[GROUP, OTHER], allowed_addresses=["10.0.0.0/30"])) is None
    assert refusal(KEYS.interface(UUID), _iface(security_groups=[], port_security=False)) \
        is None
    assert refusal(KEYS.observed_interface(UUID), _observed_iface()) is None
    assert refusal(KEYS.observed_interface(UUID), _observed_iface(
        state="error", error="nft said:\nno", groups={})) is None


@pytest.mark.parametrize("key, record, reason", [
    (KEYS.interface(UUID), _iface(security_groups=["web"]), "security_groups[0] 'web' is not"),
    (KEYS.interface(UUID), _iface(security_groups=GROUP), "security_groups must be a list"),
    (KEYS.interface(UUID), _iface(security_groups=[GROUP] * 9), "at most 8"),
    (KEYS.interface(UUID), _iface(port_security="off"), "port_security 'off' is not true"),
    (KEYS.interface(UUID), _iface(allowed_addresses=["10.0.0.1; flush ruleset"]),
     "is not a CIDR block"),
    (KEYS.interface(UUID), _iface(allowed_addresses=["10.0.0.1/24"]), "as the portal writes"),
    (KEYS.interface(UUID), _iface(allowed_addresses=["::1/128"]), "IPv6"),
    (KEYS.observed_interface(UUID), _observed_iface(groups={"x": 1}), "groups' uuid 'x'"),
    (KEYS.observed_interface(UUID), _observed_iface(groups={GROUP: "1"}), "is not a whole"),
    (KEYS.observed_interface(UUID), _observed_iface(node="../n"), "node '../n'"),
    (KEYS.observed_interface(UUID), _observed_iface(state="gone"), "state 'gone'"),
    (KEYS.observed_interface("x"), _observed_iface(), "the key's uuid 'x'"),
    (KEYS.security_group(GROUP), _group(uuid=OTHER), "is not the"),
    (KEYS.security_group(GROUP), _group(name="web; flush"), "not a valid security group name"),
    (KEYS.security_group(GROUP), _group(generation=0), "generation 0"),
    (KEYS.security_group(GROUP), _group(rules={}), "rules must be a list"),
    (KEYS.security_group(GROUP), _group({"ports": "99999"}), "rules[0]"),
    (KEYS.security_group(GROUP), _group({"ports": "80,22"}), "canonical"),
    (KEYS.security_group(GROUP), _group({"protocol": "tcp; drop"}), "is not a protocol"),
    (KEYS.security_group(GROUP), _group({"direction": "sideways"}), "is not ingress or egress"),
    (KEYS.security_group(GROUP), _group({"remote_cidrs": ["10.0.0.1/8"]}), "canonical"),
    (KEYS.security_group(GROUP), _group({"remote_cidrs": "10.0.0.0/8"}), "remote_cidrs is not"),
    (KEYS.security_group(GROUP), _group({"remote_group": "../x"}), "remote_group '../x'"),
    (KEYS.security_group(GROUP), _group({"remote_address_set": "x"}), "remote_address_set 'x'"),
    (KEYS.security_group(GROUP), _group({"remote_group": OTHER}), "one remote end"),
    (KEYS.security_group(GROUP), _group({"uuid": "r1"}), "rules[0].uuid 'r1'"),
    (KEYS.security_group(GROUP), _group({"ethertype": "ipv6"}), "ipv4"),
    (KEYS.security_group(GROUP), _group({"description": "a\nb"}), "control characters"),
    (KEYS.security_group(GROUP), _group({"icmp_type": "8; x"}), "icmp_type"),
    (KEYS.security_group(GROUP), _group(rules=[{"uuid": RULE}] * 1001), "at most 1000"),
    (KEYS.address_set(UUID), _address_set(cidrs=["nope"]), "is not a CIDR block"),
    (KEYS.address_set(UUID), _address_set(cidrs=["10.1.0.0/16", "10.1.0.0/16"]),
     "each once"),
    (KEYS.address_set(UUID), _address_set(cidrs="10.1.0.0/16"), "is not a list"),
    (KEYS.address_set(UUID), _address_set(name="../x"), "not a valid address set name"),
    (KEYS.address_set(UUID), _address_set(uuid=OTHER), "is not the"),
])
def test_hostile_security_records_are_refused(key: str, record: Any, reason: str) -> None:
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


# --- what this cloud's newer records look like ----------------------------------------


def _laid_out(disks: list[Disk], **changes: Any) -> dict[str, Any]:
    return instance(disks=[d.to_dict() for d in disks], **changes)


SOURCE = DiskSource(blob_uuid=BLOB, url="demo", artifact_uuid=OTHER)
TEMPLATE = DiskSource(blob_uuid=OTHER, url="sf://label/shop/vars", artifact_uuid=UUID)


def test_newer_shapes_the_portal_writes_pass() -> None:
    # Every bus cloudstate.disklayout offers, by its names; cdroms on usb.
    for record in (
        _laid_out([Disk(device="vda", size_gb=8, source=SOURCE),
                   Disk(device="sdc", size_gb=1, bus="sata"),
                   Disk(device="sdd", size_gb=1, bus="scsi"),
                   Disk(device="sde", size_gb=1, bus="usb"),
                   Disk(device="sdf", size_gb=1, bus="usb", type="cdrom", source=SOURCE)]),
        _laid_out([Disk(device="nvme0", size_gb=8, bus="nvme", source=SOURCE),
                   Disk(device="nvme2", size_gb=1, bus="nvme")]),
        _laid_out([Disk(device="sda", size_gb=1, bus="usb", type="cdrom", source=SOURCE),
                   Disk(device="vdc", size_gb=8)]),
        # Without a config drive the second disk takes its index.
        _laid_out([Disk(device="vda", size_gb=8), Disk(device="vdb", size_gb=1)],
                  configdrive="none"),
        # UEFI, secure boot (on q35) and the instance's own variable store.
        instance(uefi=True, secure_boot=True, nvram_template=TEMPLATE.to_dict(),
                 machine_type="q35"),
        instance(uefi=True, machine_type="pc-i440fx-7.2"),
    ):
        assert refusal(KEYS.instance(UUID), record) is None, record
    spec = InstanceSpec.from_dict(instance(uefi=True, nvram_template=TEMPLATE.to_dict()))
    assert spec.blob_uuids == [BLOB, BLOB, OTHER]
    for reference in ("vars", "https://example.org/OVMF_VARS.fd", f"sf://blob/{OTHER}"):
        assert refusal(KEYS.instance(UUID), instance(uefi=True, nvram_template=DiskSource(
            blob_uuid=OTHER, url=reference).to_dict())) is None, reference
    # A snapshot of a disk on any bus.
    for device in ("sdc", "nvme0"):
        assert refusal(KEYS.blob(BLOB), Blob(
            uuid=BLOB, namespace="shop", origin="snapshot", node="node-a",
            source_url=f"sf://instance/{OTHER}/{device}", instance_uuid=OTHER,
            device=device).to_dict()) is None, device
    # Routed addresses and DNS entries.
    assert refusal(KEYS.network(UUID), _net(
        routed=["192.0.2.20", "192.0.2.21"],
        dns_entries={"db": "10.0.0.9", "www.example.org": "192.0.2.20",
                     "v6.example.org": "2001:db8::1"})) is None
    # A NIC hot-plugged in after others came and went.
    assert refusal(KEYS.interface(UUID), _iface(order=9)) is None
    assert refusal(KEYS.node("node-a"), NodeInfo(
        name="node-a", ip="10.0.0.11", vcpus=4, memory_mib=8192, disk_total_gb=100,
        disk_free_gb=50, virt_type="kvm", machine="pc", agent_port=13001,
        firmware=["uefi", "secure-boot"]).to_dict()) is None
    for kind, user in (("gateway", ["network", OTHER]), ("routed", ["network", OTHER])):
        assert refusal(KEYS.address(FLOATING_POOL, "192.0.2.20"), AddressReservation(
            address="192.0.2.20", type=kind, user=user, network_uuid=OTHER).to_dict()) is None
    # Not the agent's to read: node metadata (the portal's) and the copies of
    # a torn-down instance's interfaces (the agent's own writes).
    assert refusal(KEYS.node_spec("node-a"), NodeSpec(name="node-a",
                                                      metadata={"rack": "3"}).to_dict()) is None
    assert refusal(KEYS.deleted_interface(UUID), _iface()) is None


@pytest.mark.parametrize("record, reason", [
    (_disk0(device="nvme10"), "is not a disk device name"),
    (_disk0(device="nvme0/../x"), "is not a disk device name"),
    (_disk0(device="nvme"), "is not a disk device name"),
    (_disk0(bus="floppy"), "disks[0].bus 'floppy' is not one of"),
    (_disk0(type="floppy"), "disks[0].type 'floppy'"),
    # The config drive's place, by the first disk's bus, is the agent's own.
    (_laid_out([Disk(device="sda", size_gb=8, bus="sata"), Disk(device="sdb", size_gb=1)]),
     "disks[1].device sdb is the config drive's"),
    (_laid_out([Disk(device="nvme0", size_gb=8, bus="nvme"),
                Disk(device="nvme1", size_gb=1, bus="nvme")]),
     "disks[1].device nvme1 is the config drive's"),
    (_laid_out([Disk(device="vda", size_gb=8), Disk(device="vdb", size_gb=1)]),
     "disks[1].device vdb is the config drive's"),
    (instance(uefi="yes"), "uefi 'yes' is not true or false"),
    (instance(secure_boot=True), "secure_boot is asked for without uefi"),
    (instance(nvram_template=TEMPLATE.to_dict()), "nvram_template is given without uefi"),
    (instance(uefi=True, nvram_template="../../etc/shadow"),
     "the nvram_template record is not a JSON object"),
    (instance(uefi=True, nvram_template={"blob_uuid": "../../etc/shadow", "url": "x"}),
     "nvram_template.blob_uuid '../../etc/shadow' is not a uuid"),
    (instance(uefi=True, nvram_template={"url": "https://example.org/vars.fd"}),
     "nvram_template.blob_uuid None is not a uuid"),
    (instance(uefi=True, nvram_template={"blob_uuid": OTHER, "url": "file:///etc/shadow"}),
     "nvram_template.url 'file:///etc/shadow': only http and https URLs are fetched"),
    (instance(uefi=True, nvram_template={"blob_uuid": OTHER, "url": "x",
                                         "artifact_uuid": "../a"}),
     "nvram_template.artifact_uuid '../a' is not a uuid"),
    (instance(machine_type="q35'/><devices"), "machine_type \"q35'/><devices\" is not a QEMU"),
    (instance(machine_type="../q35"), "is not a QEMU machine type"),
    (instance(machine_type="Q" * 65), "is not a QEMU machine type"),
])
def test_hostile_newer_instances_are_refused(record: Any, reason: str) -> None:
    found = refusal(KEYS.instance(UUID), record)
    assert found is not None and reason in found, found


def _floating(**changes: Any) -> dict[str, Any]:
    record = AddressReservation(address="192.0.2.9", type="floating", user=["interface", UUID],
                                network_uuid=OTHER).to_dict()
    record.update(changes)
    return record


@pytest.mark.parametrize("key, record, reason", [
    (KEYS.network(UUID), _net(routed="192.0.2.20"), "routed must be a list"),
    (KEYS.network(UUID), _net(routed=["192.0.2.20", "192.0.2.20"]),
     "routed lists an address twice"),
    (KEYS.network(UUID), _net(routed=["192.0.2.20/0"]), "routed[0] '192.0.2.20/0' is not an IPv4"),
    (KEYS.network(UUID), _net(routed=["192.0.2.20 accept; x"]), "is not an IPv4"),
    (KEYS.network(UUID), _net(routed=["2001:db8::1"]), "is not an IPv4"),
    (KEYS.network(UUID), _net(routed=[f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
                                      for n in range(65537)]), "at most 65536 addresses"),
    (KEYS.network(UUID), _net(dns_entries=["db"]), "the dns_entries record is not"),
    (KEYS.network(UUID), _net(dns_entries={"db\naddress=/#/1.2.3.4": "10.0.0.9"}),
     "is not a valid DNS name"),
    (KEYS.network(UUID), _net(dns_entries={"../db": "10.0.0.9"}), "is not a valid DNS name"),
    (KEYS.network(UUID), _net(dns_entries={"DB": "10.0.0.9"}), "the portal would not write"),
    (KEYS.network(UUID), _net(dns_entries={"db.": "10.0.0.9"}), "the portal would not write"),
    (KEYS.network(UUID), _net(dns_entries={"db": "10.0.0.9\n10.0.0.1 gw"}),
     "dns_entries[db] '10.0.0.9\\n10.0.0.1 gw' is not an IP address"),
    (KEYS.network(UUID), _net(dns_entries={"db": 5}), "dns_entries[db] 5 is not an IP"),
    (KEYS.network(UUID), _net(dns_entries={f"n{n}": "10.0.0.9" for n in range(257)}),
     "dns_entries has more than 256 names"),
    (KEYS.interface(UUID), _iface(order=256), "order 256 is not a whole number from 0 to 255"),
    (KEYS.interface(UUID), _iface(order=-1), "order -1"),
    (KEYS.node("node-b"), NodeInfo(name="node-b", ip="10.0.0.12", vcpus=1, memory_mib=1,
                                   disk_total_gb=1, disk_free_gb=1, virt_type="kvm",
                                   machine="pc", firmware=["uefi", "../x"]).to_dict(),
     "firmware ['uefi', '../x'] is not a list of uefi, secure-boot"),
    (KEYS.node("node-b"), {**NodeInfo(name="node-b", ip="10.0.0.12", vcpus=1, memory_mib=1,
                                      disk_total_gb=1, disk_free_gb=1, virt_type="kvm",
                                      machine="pc").to_dict(), "firmware": "uefi"},
     "firmware 'uefi' is not a list"),
    # The network node reads what holds a floating address: never a shape it can't.
    (KEYS.address(FLOATING_POOL, "192.0.2.9"), _floating(user=[]),
     "user [] is not ['interface', <uuid>]"),
    (KEYS.address(FLOATING_POOL, "192.0.2.9"), _floating(user=["interface", "../x"]),
     "user[1] '../x' is not a uuid"),
    (KEYS.address(FLOATING_POOL, "192.0.2.9"), _floating(type="routed"),
     "user ['interface', '0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01'] is not ['network', <uuid>]"),
    (KEYS.address(FLOATING_POOL, "192.0.2.9"), _floating(type="instance"),
     "type 'instance' is not one of floating, gateway, routed"),
    (KEYS.address(FLOATING_POOL, "192.0.2.9"), _floating(network_uuid=None),
     "network_uuid None is not a uuid"),
])
def test_hostile_newer_records_are_refused(key: str, record: Any, reason: str) -> None:
    found = refusal(key, record)
    assert found is not None and reason in found, found


# --- what the agent reads besides objects: reservations, claims, its own reports ------------


def _held(**changes: Any) -> dict[str, Any]:
    """An address of network OTHER's range held by an interface, as
    portal.cloud.interfaces reserves it."""
    record = AddressReservation(address="10.0.0.5", type="instance", user=["interface", UUID],
                                network_uuid=OTHER, comment=f"instance {BLOB} eth0").to_dict()
    record.update(changes)
    return record


def test_reservations_claims_and_reports_as_written_pass() -> None:
    assert refusal(KEYS.address(OTHER, "10.0.0.5"), _held()) is None
    assert GATE(KEYS.mac("02:00:00:12:34:56"), UUID.encode()) is None
    assert GATE(KEYS.vxlan(4242), OTHER.encode()) is None
    assert refusal(KEYS.observed_instance(UUID), InstanceObserved(
        node="node-a", state="error", power_state="crashed", error="QEMU said: no\nmore",
        applied_power_generation=3, failed_spec_revision=17).to_dict()) is None
    assert refusal(KEYS.observed_network(UUID), NetworkObserved(
        node="node-a", applied=[OTHER, BLOB], egress=True).to_dict()) is None


@pytest.mark.parametrize("key, record, reason", [
    # Read before giving an unplugged NIC's address back: whose it is.
    (KEYS.address(OTHER, "10.0.0.5"), b"{", "the record is not JSON"),
    (KEYS.address(OTHER, "10.0.0.5"), _held(user=["interface"]),
     "user ['interface'] is not ['interface', <uuid>]"),
    (KEYS.address(OTHER, "10.0.0.5"), _held(user="interface"), "is not ['interface', <uuid>]"),
    (KEYS.address(OTHER, "10.0.0.5"), _held(user=["interface", 5]), "user[1] 5 is not a uuid"),
    (KEYS.address(OTHER, "10.0.0.5"), _held(type="floating"),
     "type 'floating' is not one of instance"),
    (KEYS.address(OTHER, "10.0.0.5"), _held(network_uuid=UUID), "network_uuid"),
    (KEYS.address(OTHER, "10.0.0.6"), _held(), "address '10.0.0.5' is not the '10.0.0.6'"),
    (KEYS.address("x", "10.0.0.5"), _held(), "the key's network 'x' is not a uuid"),
    (KEYS.address("..", "x/10.0.0.5"), _held(), "is not where a record is kept"),
    (KEYS.address(OTHER, "10.0.0.5") + "/deeper", _held(), "is not where a record is kept"),
    (KEYS.address(OTHER, "10.0.0.5"), _held(comment="x" * 300), "comment"),
    # Compared as text with the uuid of what holds them.
    (KEYS.mac("02:00:00:12:34:56"), b"\xff\xfe", "the MAC's holder names no uuid"),
    (KEYS.mac("02:00:00:12:34:56"), b"../x", "the MAC's holder '../x' is not a uuid"),
    (KEYS.vxlan(4242), b"", "the VXLAN id's holder '' is not a uuid"),
    # The agents' own reports, read back whole by the network node.
    (KEYS.observed_network(UUID), b"[]", "the observed network record is not a JSON object"),
    (KEYS.observed_network(UUID), {"node": "node-a", "applied": "all"},
     "applied is not a list of interfaces"),
    (KEYS.observed_network(UUID), {"node": "node-a", "applied": [None]},
     "applied[0] None is not a uuid"),
    (KEYS.observed_network(UUID), {"node": "node-a", "egress": "yes"}, "egress 'yes'"),
    (KEYS.observed_network(UUID), {"node": "../a"}, "node '../a' is not a node name"),
    (KEYS.observed_network("x"), {"node": "node-a"}, "the key's uuid 'x' is not a uuid"),
    (KEYS.observed_instance(UUID), {"node": "node-a", "state": 5}, "state 5 is not text"),
    (KEYS.observed_instance(UUID), {"node": "node-a", "error": ["x"]}, "error is not text"),
    (KEYS.observed_instance(UUID), {"node": "node-a", "applied_power_generation": "1"},
     "applied_power_generation '1' is not a whole number"),
    (KEYS.observed_instance(UUID), {"node": "node-a", "updated_at": "now"},
     "updated_at 'now' is not a number"),
    (KEYS.observed_instance(UUID), {"node": "node-a", "power_state": "on" * 20},
     "is not text of at most 32"),
])
def test_hostile_reservations_claims_and_reports_are_refused(key: str, record: Any,
                                                             reason: str) -> None:
    found = refusal(key, record)
    assert found is not None and reason in found, found
