"""What sfcloud adds to pausing a guest and to snapshotting its disk.

    python bench/power_latency.py [--runs 7]

On one running guest, alternating, in the same run:
  pause     sfcloud: API POST /pause -> the agent reports "paused" (watched in
            etcd); baseline: libvirt suspend() called directly. Then unpause
            the same two ways (not timed for sfcloud's resume, only its pause).
  snapshot  sfcloud: API POST /snapshot -> the snapshot's node record is
            "ready" (watched); the guest's pause during it is read from the
            event the agent sends. Baseline: qemu-img convert of a copy of
            the same overlay to a standalone qcow2, done directly.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import time

import libvirt
from support import running_cloud, summary

from cloudstate.model import BlobObserved, InstanceObserved
from tests.support.cloud import Cloud, wait_for


async def until(cloud: Cloud, key: str, start_revision: int, done) -> None:  # type: ignore[no-untyped-def]
    etcd = cloud.new_etcd()
    try:
        async for batch in etcd.watch_prefix(key, start_revision):
            if any(event.kind == "put" and done(event.kv.value) for event in batch):
                return
    finally:
        await etcd.close()


async def revision(cloud: Cloud) -> int:
    etcd = cloud.new_etcd()
    try:
        return await etcd.revision() + 1
    finally:
        await etcd.close()


def sfcloud_pause(cloud: Cloud, uuid: str) -> float:
    api = cloud.api()
    api._auth()  # authentication is not part of the figure
    start = asyncio.run(revision(cloud))
    started = time.perf_counter()
    assert api.post(f"/instances/{uuid}/pause").status_code == 200
    asyncio.run(until(cloud, cloud.keys.observed_instance(uuid), start,
                      lambda v: InstanceObserved.from_json(v).power_state == "paused"))
    elapsed = time.perf_counter() - started
    assert api.post(f"/instances/{uuid}/unpause").status_code == 200
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "on", 30,
             "unpaused")
    return elapsed


def libvirt_pause(dom: libvirt.virDomain) -> float:
    started = time.perf_counter()
    dom.suspend()
    elapsed = time.perf_counter() - started
    dom.resume()
    return elapsed


def sfcloud_snapshot(cloud: Cloud, uuid: str) -> tuple[float, float, str]:
    api = cloud.api()
    api._auth()
    start = asyncio.run(revision(cloud))
    started = time.perf_counter()
    response = api.post(f"/instances/{uuid}/snapshot", {"device": "vda"})
    assert response.status_code == 200, response.text
    image = response.json()["vda"]["artifact_uuid"]
    blob = response.json()["vda"]["blob_uuid"]
    asyncio.run(until(cloud, cloud.keys.observed_blob(cloud.node, blob), start,
                      lambda v: BlobObserved.from_json(v).state == "ready"))
    elapsed = time.perf_counter() - started

    def paused() -> float | None:
        for event in api.get(f"/blobs/{blob}/events").json():
            if (event.get("extra") or {}).get("paused_seconds") is not None:
                return event["extra"]["paused_seconds"]
        return None

    return elapsed, wait_for(paused, 30, "the snapshot event"), image


def direct_snapshot(cloud: Cloud, uuid: str) -> float:
    overlay = cloud.instance_dir(uuid) / "vda.qcow2"
    work = cloud.state_dir / "bench-snapshot"
    work.mkdir(exist_ok=True)
    started = time.perf_counter()
    subprocess.run(["cp", "--sparse=always", str(overlay), str(work / "copy.qcow2")], check=True)
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "qcow2",
                    str(work / "copy.qcow2"), str(work / "flat.qcow2")], check=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(work)
    return elapsed


def main() -> None:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 7
    with running_cloud() as (cloud, _etcd, _image):
        api = cloud.api()
        uuid = api.post("/instances", {"name": "bench-power", "cpus": 1, "memory": 128,
                                       "disk": [{"size": 1, "base": "demo"}]}).json()["uuid"]
        cloud.wait_console(uuid, "SFCLOUD-READY")
        conn = libvirt.open("qemu:///system")
        dom = conn.lookupByUUIDString(uuid)
        ours, theirs = [], []
        snaps, pauses, directs, images = [], [], [], []
        try:
            for run in range(runs):
                ours.append(sfcloud_pause(cloud, uuid))
                theirs.append(libvirt_pause(dom))
                # Let the agent see the direct suspend/resume before the next round.
                wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "on",
                         30, "on again")
                time.sleep(0.5)
                elapsed, paused, image = sfcloud_snapshot(cloud, uuid)
                snaps.append(elapsed)
                pauses.append(paused)
                images.append(image)
                directs.append(direct_snapshot(cloud, uuid))
                print(f"run {run + 1}: pause sfcloud {ours[-1]:.3f} s, libvirt "
                      f"{theirs[-1]:.3f} s; snapshot sfcloud {snaps[-1]:.3f} s (guest paused "
                      f"{pauses[-1]:.3f} s), direct {directs[-1]:.3f} s", flush=True)
        finally:
            conn.close()
            api.delete(f"/instances/{uuid}")
            wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60,
                     "deleted")
            for image in images:
                api.delete(f"/artifacts/{image}")
    print()
    print(f"sfcloud  POST pause -> observed paused:      {summary(ours)}")
    print(f"baseline libvirt suspend():                  {summary(theirs)}")
    print(f"ratio of medians: {statistics.median(ours) / statistics.median(theirs):.1f}x, "
          f"overhead {statistics.median(ours) - statistics.median(theirs):.3f} s")
    print(f"sfcloud  POST snapshot -> ready:             {summary(snaps)}")
    print(f"         of which the guest was paused:      {summary(pauses)}")
    print(f"baseline cp + qemu-img convert, directly:    {summary(directs)}")
    print(f"ratio of medians: {statistics.median(snaps) / statistics.median(directs):.1f}x, "
          f"overhead {statistics.median(snaps) - statistics.median(directs):.3f} s")


if __name__ == "__main__":
    main()
