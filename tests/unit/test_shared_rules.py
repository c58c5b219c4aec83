"""The one way each of these is done, for every kind and door: which object a
changed etcd key belongs to, a record rebuilt from its keys, the metadata
rules, and how the API reads a true/false field."""

from __future__ import annotations

import pytest

from cloudstate import metadata
from cloudstate.etcd import KeyValue
from cloudstate.keys import Keys
from cloudstate.model import Disk, InstanceObserved, InstanceSpec, NetworkSpec
from cloudstate.validation import ValidationError
from cloudstate.vocabulary import ObjectKind
from portal.api.requests import flag
from portal.cloud.instances import InstanceRecord
from portal.cloud.networks import NetworkRecord

KEYS = Keys("/unit")
UUID = "6f1c3a44-9a0e-4c4b-8d59-1d2f3c4b5a69"


@pytest.mark.parametrize("key,expected", [
    (KEYS.instance(UUID), (ObjectKind.INSTANCE, UUID, False)),
    (KEYS.observed_instance(UUID), (ObjectKind.INSTANCE, UUID, True)),
    (KEYS.network(UUID), (ObjectKind.NETWORK, UUID, False)),
    (KEYS.observed_network(UUID), (ObjectKind.NETWORK, UUID, True)),
    (KEYS.interface(UUID), (ObjectKind.INTERFACE, UUID, False)),
    (KEYS.artifact(UUID), (ObjectKind.IMAGE, UUID, False)),
    (KEYS.blob(UUID), (ObjectKind.BLOB, UUID, False)),
    (KEYS.observed_blob("node-1", UUID), (ObjectKind.BLOB, UUID, True)),
    (KEYS.upload(UUID), (ObjectKind.UPLOAD, UUID, False)),
    (KEYS.keypair(UUID), (ObjectKind.KEYPAIR, UUID, False)),
    (KEYS.node("node-1"), (ObjectKind.NODE, "node-1", False)),
    (KEYS.node_spec("node-1"), (ObjectKind.NODE, "node-1", False)),
    (KEYS.node_alive("node-1"), (ObjectKind.NODE, "node-1", True)),
    (KEYS.console_session("s1"), (ObjectKind.CONSOLE, "s1", False)),
])
def test_a_key_of_an_objects_record_classifies_as_that_object(
        key: str, expected: tuple[ObjectKind, str, bool]) -> None:
    assert KEYS.classify(key) == expected


@pytest.mark.parametrize("key", [
    KEYS.instance_name("ns", "web"), KEYS.address(UUID, "10.0.0.5"), KEYS.vxlan(7),
    KEYS.network_fence(UUID), KEYS.placement("node-1"), KEYS.mac("02:00:00:00:00:01"),
    KEYS.instances, KEYS.observed_blobs + "node-1/", "/other" + KEYS.instance(UUID),
    KEYS.observed_blobs + "node-1/" + UUID + "/extra", KEYS.blob_fence(UUID),
    KEYS.artifact_url("ns", "image", "http://x/y"),
    # A torn-down instance's NIC, kept to be read: no object's live record.
    KEYS.deleted_interface(UUID), KEYS.observed_blobs_of("node-1"),
])
def test_keys_that_are_no_objects_record_classify_as_nothing(key: str) -> None:
    assert KEYS.classify(key) is None


def _kv(key: str, record: object, revision: int) -> KeyValue:
    return KeyValue(key=key, value=record.to_json(), mod_revision=revision,  # type: ignore[attr-defined]
                    create_revision=1, version=1, lease=0)


def test_records_rebuild_from_their_keys_with_the_desired_records_revision() -> None:
    spec = InstanceSpec(uuid=UUID, name="web", namespace="ns", cpus=1, memory=128,
                        disks=[Disk(device="vda", size_gb=1)], node="n1")
    observed = InstanceObserved(node="n1", state="created", power_state="on")
    record = InstanceRecord.from_kvs(_kv(KEYS.instance(UUID), spec, 7),
                                     _kv(KEYS.observed_instance(UUID), observed, 9))
    assert (record.spec, record.observed, record.revision) == (spec, observed, 7)
    assert (record.state, record.power_state) == ("created", "on")
    assert InstanceRecord.from_kvs(_kv(KEYS.instance(UUID), spec, 3), None).state == "initial"
    network = NetworkSpec(uuid=UUID, name="net", namespace="ns", netblock="10.0.0.0/24", vxid=5)
    rebuilt = NetworkRecord.from_kvs(_kv(KEYS.network(UUID), network, 4), None)
    assert (rebuilt.spec, rebuilt.revision, rebuilt.interfaces) == (network, 4, [])


def test_metadata_rules_hold_for_every_kind() -> None:
    assert metadata.validate_key("team.colour:1") == "team.colour:1"
    for bad in ("", "-dash", "has/slash", "x" * 129, 7, None):
        with pytest.raises(ValidationError, match="not a valid metadata key"):
            metadata.validate_key(bad)
    with pytest.raises(ValidationError, match="larger than"):
        metadata.validate_value("x" * (metadata.MAX_BYTES + 1))
    full = {f"k{i}": i for i in range(metadata.MAX_KEYS)}
    with pytest.raises(ValidationError, match="an instance may have at most 64"):
        metadata.with_item(full, "one-more", 1, ObjectKind.INSTANCE)
    with pytest.raises(ValidationError, match="a network's metadata may take at most"):
        metadata.with_item({"a": "x" * 9000}, "b", "y" * 9000, ObjectKind.NETWORK)
    assert metadata.with_item(full, "k0", "replaced", ObjectKind.NETWORK)["k0"] == "replaced"


def test_the_api_reads_true_or_false_one_way() -> None:
    assert flag(None, "f", default=True) is True
    assert flag(False, "f", default=True) is False
    assert flag("yes", "f", default=False, words=True) is True
    assert flag("0", "f", default=True, words=True) is False
    for bad, words in (("yes", False), ("perhaps", True), (1, False), ([], True)):
        with pytest.raises(ValidationError, match="must be true or false"):
            flag(bad, "f", default=False, words=words)
