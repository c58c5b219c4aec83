from __future__ import annotations

import json

from cloudstate.model import Disk, DiskSource, InstanceObserved, InstanceSpec, PowerIntent
from cloudstate.states import instance_state, power_state


def spec(**changes: object) -> InstanceSpec:
    base = InstanceSpec(
        uuid="0f8e2c1a-0000-4000-8000-000000000001", name="vm", namespace="system", cpus=1,
        memory=256, node="n1",
        disks=[Disk(device="vda", size_gb=1, base="demo",
                    source=DiskSource(blob_uuid="b1", url="demo", artifact_uuid="a1"))],
    )
    return base.replace(**changes)


def test_round_trip_keeps_nested_records() -> None:
    original = spec(power=PowerIntent(generation=3, action="off"))
    again = InstanceSpec.from_json(original.to_json())
    assert again == original
    assert again.disks[0].source == DiskSource(blob_uuid="b1", url="demo", artifact_uuid="a1")


def test_unknown_keys_from_a_newer_writer_are_ignored() -> None:
    original = spec()
    data = json.loads(original.to_json())
    data["added_in_a_later_release"] = {"x": 1}
    assert InstanceSpec.from_dict(data) == original


def test_state_is_derived_from_desired_and_observed() -> None:
    active = spec()
    assert instance_state(active, None) == "initial"
    assert instance_state(active, InstanceObserved(node="n1", state="created")) == "created"
    gone = spec(desired="deleted")
    assert instance_state(gone, InstanceObserved(node="n1", state="created")) == "deleting"
    assert instance_state(gone, InstanceObserved(node="n1", state="deleted")) == "deleted"
    assert power_state(None) == "initial"
    assert power_state(InstanceObserved(node="n1", power_state="paused")) == "paused"
