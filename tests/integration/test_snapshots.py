"""Snapshots of all disks: taken consistently while the guest runs, shown with
progress until created, and usable as the base of new instances that boot
with the data the first instance wrote."""

from __future__ import annotations

import base64
import secrets

import libvirt
import pytest

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration

# Raw offsets past the guest image's partition (64 MiB): free space on a 1 GB disk.
OFFSET_MIB = 512


def script(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def writer(marker: str) -> str:
    return script(
        "#!/bin/sh\n"
        f"for d in vda vdc; do echo {marker}-$d | dd of=/dev/$d bs=1M seek={OFFSET_MIB} "
        "conv=notrunc,fsync 2>/dev/null; done\n"
        "sync\necho SNAPDATA-WRITTEN\n")


def reader() -> str:
    return script(
        "#!/bin/sh\n"
        f"for d in vda vdc; do echo \"SNAPDATA-READ $d: $(dd if=/dev/$d bs=1M skip={OFFSET_MIB} "
        "count=1 2>/dev/null | head -n 1 | tr -cd '[:alnum:]-')\"; done\n")


def instance(cloud: Cloud, uuid: str) -> dict:
    return cloud.api().get(f"/instances/{uuid}").json()


def domain_state(uuid: str) -> int:
    conn = libvirt.open("qemu:///system")
    try:
        return conn.lookupByUUIDString(uuid).state()[0]
    finally:
        conn.close()


def test_snapshot_of_all_disks_boots_a_new_instance(cloud: Cloud) -> None:
    api = cloud.api()
    marker = f"M{secrets.token_hex(4)}"
    created = api.post("/instances", {
        "name": "snapsource", "cpus": 1, "memory": 128,
        "disk": [{"size": 1, "base": "demo"}, {"size": 1}], "user_data": writer(marker)})
    assert created.status_code == 200, created.text
    source = created.json()["uuid"]
    cloud.wait_console(source, "SNAPDATA-WRITTEN")

    # Bad requests first: nothing is made, and the instance keeps running.
    before = cloud.etcd_keys("artifacts/") + cloud.etcd_keys("blobs/")
    for body, words in (({"device": "vdz"}, "has no disk vdz"),
                        ({"device": "vdb"}, "config drive")):
        response = api.post(f"/instances/{source}/snapshot", body)
        assert response.status_code == 400, response.text
        assert words in response.json()["error"]
    assert cloud.etcd_keys("artifacts/") + cloud.etcd_keys("blobs/") == before

    response = api.post(f"/instances/{source}/snapshot", {"all": True, "device": None,
                                                          "thin": False})
    assert response.status_code == 200, response.text
    taken = response.json()
    assert set(taken) == {"vda", "vdc"}
    for device, item in taken.items():
        assert item["source_url"] == f"sf://instance/{source}/{device}"
        # As in Shaken Fist: the disk's snapshot artifact, and this snapshot's blob in it.
        assert item["artifact_uuid"] != item["blob_uuid"]

    def states() -> dict[str, str]:
        listed = api.get(f"/instances/{source}/snapshot").json()
        return {item["device"]: item["state"] for item in listed}

    wait_for(lambda: states() == {"vda": "created", "vdc": "created"}, 90,
             "both snapshots to be created")
    # The guest was paused only for the copy and runs again, untouched.
    assert domain_state(source) == libvirt.VIR_DOMAIN_RUNNING
    wait_for(lambda: instance(cloud, source)["power_state"] == "on", 30, "power on")
    listed = api.get(f"/instances/{source}/snapshot").json()
    assert all(item["size"] > 0 for item in listed)
    events = [e["message"] for e in api.get(f"/instances/{source}/events").json()]
    assert any(m.startswith("snapshot of vda taken") for m in events), events
    assert any(m.startswith("snapshot of vdc taken") for m in events), events

    # A new instance from the two snapshots reads what the first one wrote.
    copy = api.post("/instances", {
        "name": "snapcopy", "cpus": 1, "memory": 128,
        "disk": [{"size": 1, "base": f"sf://image/{taken['vda']['artifact_uuid']}"},
                 {"size": 1, "base": taken["vdc"]["artifact_uuid"]}],
        "user_data": reader()})
    assert copy.status_code == 200, copy.text
    copy_uuid = copy.json()["uuid"]
    log = cloud.wait_console(copy_uuid, "SFCLOUD-READY")
    assert f"SNAPDATA-READ vda: {marker}-vda" in log
    assert f"SNAPDATA-READ vdc: {marker}-vdc" in log

    # Deleting the snapshots keeps the blobs the new instance starts from; once
    # nothing uses them they go, and leave the node.
    cached = list(cloud.image_cache_dir().glob("*.qcow2"))
    for device in ("vda", "vdc"):
        assert api.delete(f"/artifacts/{taken[device]['artifact_uuid']}").status_code == 200
    for device in ("vda", "vdc"):
        kept = api.get(f"/blobs/{taken[device]['blob_uuid']}").json()
        assert kept["state"] == "created" and kept["instances"] == [copy_uuid]
    for uuid in (copy_uuid, source):
        api.delete(f"/instances/{uuid}")
    for uuid in (copy_uuid, source):
        wait_for(lambda u=uuid: instance(cloud, u)["state"] == "deleted", 60, "deleted")
    wait_for(lambda: len(list(cloud.image_cache_dir().glob("*.qcow2"))) == len(cached) - 2,
             60, "the node to drop both snapshots from its cache")
    for device in ("vda", "vdc"):
        assert api.get(f"/blobs/{taken[device]['blob_uuid']}").json()["state"] == "deleted"


def test_snapshot_of_a_powered_off_instance_and_before_it_exists(cloud: Cloud) -> None:
    api = cloud.api()
    created = api.post("/instances", {"name": "snapoff", "cpus": 1, "memory": 128,
                                      "disk": [{"size": 1, "base": "demo"}]})
    uuid = created.json()["uuid"]
    early = api.post(f"/instances/{uuid}/snapshot")
    # Either it is already created (fast node) or the client is told to retry.
    assert early.status_code in (200, 406), early.text
    cloud.wait_console(uuid, "SFCLOUD-READY")
    assert api.post(f"/instances/{uuid}/poweroff").status_code == 200
    wait_for(lambda: instance(cloud, uuid)["power_state"] == "off", 60, "off")
    response = api.post(f"/instances/{uuid}/snapshot", {"device": "vda"})
    assert response.status_code == 200, response.text
    image = response.json()["vda"]["artifact_uuid"]
    wait_for(lambda: any(s["uuid"] == image and s["state"] == "created"
                         for s in api.get(f"/instances/{uuid}/snapshot").json()), 90, "created")
    # Taking it did not power the instance on.
    assert domain_state(uuid) == libvirt.VIR_DOMAIN_SHUTOFF
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: instance(cloud, uuid)["state"] == "deleted", 60, "deleted")
    for item in api.get("/artifacts").json():
        if item["instance_uuid"] == uuid:
            assert api.delete(f"/artifacts/{item['uuid']}").status_code == 200


def test_agent_killed_while_the_guest_is_paused_for_a_snapshot(cloud: Cloud) -> None:
    """The restarted agent resumes the guest it paused and takes the snapshot
    again; nothing half-made is left in the image cache."""
    api = cloud.api()
    uuid = api.post("/instances", {"name": "snapcrash", "cpus": 1, "memory": 128,
                                   "disk": [{"size": 1, "base": "demo"}]}).json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    cloud.stop_agent()
    dying = cloud.start_agent(failpoints="snapshot-paused")
    try:
        image = api.post(f"/instances/{uuid}/snapshot").json()["vda"]["artifact_uuid"]
        assert dying.wait(timeout=60) == 75, "the agent should have died at the failpoint"
        assert domain_state(uuid) == libvirt.VIR_DOMAIN_PAUSED
    finally:
        cloud.start_agent()
    wait_for(lambda: domain_state(uuid) == libvirt.VIR_DOMAIN_RUNNING, 30, "the guest resumed")
    wait_for(lambda: any(s["uuid"] == image and s["state"] == "created"
                         for s in api.get(f"/instances/{uuid}/snapshot").json()), 90, "created")
    assert instance(cloud, uuid)["power_state"] == "on"
    for store in ("images", "blobs"):
        assert not list((cloud.image_cache_dir().parent / store / ".partial").iterdir())
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: instance(cloud, uuid)["state"] == "deleted", 60, "deleted")
    assert api.delete(f"/artifacts/{image}").status_code == 200
