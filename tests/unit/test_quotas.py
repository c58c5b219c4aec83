"""Quota arithmetic and parsing (cloudstate.quotas): amounts as given and as
shown, the setting's kind=amount list, defaults, the check (including sizes
not known yet), what each kind counts from a namespace's records, and the
registry's rules."""

from __future__ import annotations

import pytest

from cloudstate import quotas
from cloudstate.etcd import KeyValue
from cloudstate.keys import Keys
from cloudstate.model import (
    Artifact,
    Blob,
    BlobObserved,
    Disk,
    InstanceSpec,
    InterfaceSpec,
    NetworkSpec,
)

KEYS = Keys("/q")


@pytest.mark.parametrize("kind,given,expected", [
    ("vcpus", 8, 8),
    ("vcpus", "8", 8),
    ("vcpus", " 12 ", 12),
    ("vcpus", 0, 0),
    ("vcpus", None, None),
    ("vcpus", "", None),
    ("vcpus", "None", None),
    ("vcpus", "unlimited", None),
    ("image_bytes", "20G", 20 << 30),
    ("image_bytes", "20GiB", 20 << 30),
    ("image_bytes", "20 gb", 20 << 30),
    ("image_bytes", "512M", 512 << 20),
    ("image_bytes", "1T", 1 << 40),
    ("image_bytes", "4096", 4096),
    ("image_bytes", 4096, 4096),
])
def test_amounts_as_given(kind: str, given: object, expected: int | None) -> None:
    assert quotas.parse_amount(kind, given) == expected


@pytest.mark.parametrize("kind,given", [
    ("vcpus", -1), ("vcpus", "-1"), ("vcpus", 1.5), ("vcpus", "1.5"), ("vcpus", True),
    ("vcpus", "20G"),  # sizes only for byte kinds
    ("vcpus", "٣"),  # a digit, but not an ASCII one
    ("vcpus", [3]), ("vcpus", {"limit": 3}), ("vcpus", 2 ** 70),
    ("image_bytes", "20X"), ("image_bytes", "G"), ("image_bytes", "1.5G"),
])
def test_amounts_refused_say_what_is_accepted(kind: str, given: object) -> None:
    with pytest.raises(ValueError, match="is not a limit: give a whole number"):
        quotas.parse_amount(kind, given)


def test_amounts_shown_and_edited_read_back_exactly() -> None:
    assert quotas.shown("vcpus", 8) == "8"
    assert quotas.shown("memory_mib", 512) == "512 MiB"
    assert quotas.shown("memory_mib", 2048) == "2 GiB"
    assert quotas.shown("memory_mib", 81920) == "80 GiB"
    assert quotas.shown("disk_gb", 20) == "20 GB"
    assert quotas.shown("image_bytes", 3 << 29) == "1.5 GiB"
    assert quotas.shown("image_bytes", 1000) == "1000 bytes"
    assert quotas.shown("image_bytes", 1 << 40) == "1 TiB"
    for amount in (0, 1, 1000, 1 << 20, 3 << 29, 20 << 30, 5 << 40, (1 << 30) + 1):
        assert quotas.parse_amount("image_bytes", quotas.as_input("image_bytes", amount)) \
            == amount
    assert quotas.as_input("image_bytes", 20 << 30) == "20G"
    assert quotas.as_input("vcpus", 8) == "8"


def test_the_settings_list_and_defaults() -> None:
    assert quotas.parse_limits("") == {}
    assert quotas.parse_limits(" vcpus=32 , networks=none,image_bytes=50G ") == {
        "vcpus": 32, "networks": None, "image_bytes": 50 << 30}
    made = quotas.defaults(quotas.parse_limits("vcpus=32,networks=none"))
    assert made["vcpus"] == 32 and "networks" not in made
    assert made["instances"] == quotas.KINDS["instances"].default
    for bad in ("vcpus", "cores=4", "vcpus=lots", "=4"):
        with pytest.raises(ValueError):
            quotas.parse_limits(bad)


def test_stored_limits_ignore_what_this_version_does_not_know() -> None:
    stored = quotas.limits_to_json({"vcpus": 4, "networks": 2})
    assert quotas.limits_from_json(stored) == {"vcpus": 4, "networks": 2}
    assert quotas.limits_from_json(b'{"limits": {"vcpus": 4, "gpus": 1, "networks": true}}') \
        == {"vcpus": 4}
    assert quotas.limits_from_json(None) == {}


def test_the_check() -> None:
    # Exactly at the limit is allowed; one more is not.
    assert not quotas.over(limit=8, used=6, asked=2)
    assert quotas.over(limit=8, used=6, asked=3)
    # A size not known yet (asked 0) needs room left.
    assert not quotas.over(limit=100, used=99, asked=0)
    assert quotas.over(limit=100, used=100, asked=0)
    assert quotas.over(limit=0, used=0, asked=1)
    found = quotas.first_exceeded({"vcpus": 8, "memory_mib": 512},
                                  {"vcpus": 6, "memory_mib": 512},
                                  {"instances": 1, "vcpus": 4, "memory_mib": 256})
    assert found == quotas.Exceeded("vcpus", 8, 6, 4)  # the first, in the kinds' order
    assert found.message == "quota exceeded: vcpus limit 8, in use 6, asked 4"
    # A kind without a limit is never exceeded.
    assert quotas.first_exceeded({}, {"vcpus": 10 ** 6}, {"vcpus": 1}) is None
    unknown = quotas.Exceeded("image_bytes", 1 << 30, (1 << 30) + 5, 0)
    assert unknown.message == ("quota exceeded: image_bytes limit 1 GiB, in use 1 GiB, "
                               "asked more (its size is not known yet)")


# --- counting ----------------------------------------------------------------------------------


class Records:
    def __init__(self) -> None:
        self.kvs: dict[str, KeyValue] = {}

    def put(self, key: str, value: bytes) -> None:
        self.kvs[key] = KeyValue(key, value, len(self.kvs) + 1, 1, 1, 0)

    def __call__(self, prefix: str) -> list[KeyValue]:
        return [kv for key, kv in self.kvs.items() if key.startswith(prefix)]


def _instance(records: Records, uuid: str, namespace: str, *, cpus: int = 2,
              desired: str = "active") -> None:
    spec = InstanceSpec(uuid=uuid, name=uuid, namespace=namespace, cpus=cpus, memory=512,
                        disks=[Disk("vda", 10), Disk("vdc", 5)], node="n", desired=desired)
    records.put(KEYS.instance(uuid), spec.to_json())


def test_instances_networks_and_floating_addresses_counted() -> None:
    records = Records()
    _instance(records, "a", "shop")
    _instance(records, "b", "shop", cpus=4)
    _instance(records, "gone", "shop", desired="deleted")  # given back at once
    _instance(records, "c", "lab")
    for uuid, namespace, floating in (("i1", "shop", "192.0.2.5"), ("i2", "shop", None),
                                      ("i3", "lab", "192.0.2.6")):
        nic = InterfaceSpec(uuid=uuid, network_uuid="net", instance_uuid="a",
                            namespace=namespace, order=0, macaddr="02:00:00:00:00:01",
                            ipv4="10.0.0.5", floating=floating)
        records.put(KEYS.interface(uuid), nic.to_json())
    for uuid, desired in (("n1", "active"), ("n2", "deleted")):
        net = NetworkSpec(uuid=uuid, name=uuid, namespace="shop", netblock="10.0.0.0/24",
                          vxid=1, desired=desired)
        records.put(KEYS.network(uuid), net.to_json())
    used = quotas.usage(records, KEYS, "shop")
    assert {kind: used[kind] for kind in ("instances", "vcpus", "memory_mib", "disk_gb",
                                          "floating_addresses", "networks")} == {
        "instances": 2, "vcpus": 6, "memory_mib": 1024, "disk_gb": 30,
        "floating_addresses": 1, "networks": 1}
    # Only what is asked for is read and counted.
    assert quotas.prefixes_for(KEYS, ["vcpus", "instances"]) == (KEYS.instances,)
    assert quotas.usage(records, KEYS, "lab", ["vcpus"]) == {"vcpus": 2}


def test_images_and_snapshots_counted_with_their_kept_bytes() -> None:
    records = Records()

    def blob(uuid: str, *, size: int | None = None, ready: int | None = None,
             namespace: str = "shop") -> None:
        records.put(KEYS.blob(uuid), Blob(uuid=uuid, namespace=namespace, origin="fetch",
                                          node="n", size=size).to_json())
        if ready is not None:
            records.put(KEYS.observed_blob("n", uuid),
                        BlobObserved(state="ready", size=ready).to_json())

    def artifact(uuid: str, type: str, versions: dict[str, str], *, namespace: str = "shop",
                 desired: str = "active", max_versions: int = 3) -> None:
        records.put(KEYS.artifact(uuid), Artifact(
            uuid=uuid, name=uuid, namespace=namespace, source_url=f"sf://{uuid}", type=type,
            versions=versions, last_index=len(versions), desired=desired,
            max_versions=max_versions).to_json())

    blob("b1", ready=1000)
    blob("b2", ready=2000)
    blob("b3", ready=4000)  # pruned: only the newest two are kept
    blob("fetching")  # no size yet: counts 0 until its node has it
    blob("up", size=300)  # an upload's size is known from its record
    artifact("img", "image", {"1": "b3", "2": "b1", "3": "b2"}, max_versions=2)
    artifact("new", "image", {"1": "fetching"})
    artifact("file", "other", {"1": "up"})
    artifact("old", "image", {"1": "b3"}, desired="deleted")
    artifact("lbl", "label", {"1": "b1"})  # a label points at others' bytes: not counted
    blob("s1", ready=50)
    artifact("snap", "snapshot", {"1": "s1"})
    artifact("theirs", "image", {"1": "b1"}, namespace="lab")
    used = quotas.usage(records, KEYS, "shop", ["images", "image_bytes", "snapshots",
                                               "snapshot_bytes"])
    assert used == {"images": 3, "image_bytes": 1000 + 2000 + 300, "snapshots": 1,
                    "snapshot_bytes": 50}


def test_the_registry_keeps_kinds_and_their_counters_together() -> None:
    counter = quotas.Counter(("widgets",), lambda keys: (), lambda records, keys, ns: {})
    with pytest.raises(ValueError, match="exactly the kinds"):
        quotas.register(counter, quotas.QuotaKind("gadgets", "Gadgets"))
    with pytest.raises(ValueError, match="registered twice"):
        quotas.register(quotas.Counter(("vcpus",), lambda keys: (),
                                       lambda records, keys, ns: {}),
                        quotas.QuotaKind("vcpus", "vCPUs"))
    assert "widgets" not in quotas.KINDS
