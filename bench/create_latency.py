"""How long from "create" to a running guest, and what sfcloud adds to it.

    python bench/create_latency.py [--runs 5]

Alternates two measurements, on the same machine in the same run:
  sfcloud   API POST /instances -> the agent's observed power state is "on"
            (watched in etcd, so no polling delay is added);
  baseline  libvirt defineXML() + create() of the same domain XML, done
            directly, with a fresh overlay of the same cached image.
The ratio of the medians is sfcloud's overhead: API, validation, scheduling,
etcd, the agent's watch, overlay and config drive, define, start, report.
The image cache is warm for both (one untimed create first).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
from support import running_cloud, summary

from cloudstate.model import InstanceObserved
from tests.support.cloud import Cloud, wait_for

BODY = {"cpus": 1, "memory": 256, "disk": [{"size": 1, "base": "demo"}]}


async def sfcloud_once(cloud: Cloud, name: str) -> tuple[float, str]:
    etcd = cloud.new_etcd()
    api = cloud.api()
    await asyncio.to_thread(api._auth)  # authentication is not part of the figure
    try:
        start_revision = await etcd.revision() + 1
        started = time.perf_counter()
        response = await asyncio.to_thread(api.post, "/instances", {"name": name, **BODY})
        response.raise_for_status()
        uuid = response.json()["uuid"]
        key = cloud.keys.observed_instance(uuid)
        async for batch in etcd.watch_prefix(key, start_revision):
            for event in batch:
                if event.kind == "put" and \
                        InstanceObserved.from_json(event.kv.value).power_state == "on":
                    return time.perf_counter() - started, uuid
        raise AssertionError("watch ended")
    finally:
        await etcd.close()


def delete(cloud: Cloud, uuid: str) -> None:
    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted",
             60, "deleted")


def baseline_once(conn: libvirt.virConnect, template: ET.Element, workdir: Path,
                  base: Path) -> float:
    """define+create of the same XML with a fresh overlay, no sfcloud involved."""
    root = ET.fromstring(ET.tostring(template))
    new_uuid = str(uuidlib.uuid4())
    root.find("uuid").text = new_uuid
    root.find("name").text = f"sfcloud-bench-{new_uuid}"
    metadata = root.find("metadata")
    if metadata is not None:
        root.remove(metadata)  # not ours: no agent may mistake it for an instance
    overlay = workdir / f"{new_uuid}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(overlay), "1G"], check=True)
    disks = root.findall("devices/disk/source")
    disks[0].set("file", str(overlay))
    disks[1].set("file", str(workdir / "config.iso"))  # the warm-up instance's drive
    root.find("devices/serial/log").set("file", str(workdir / f"{new_uuid}.log"))
    xml = ET.tostring(root, encoding="unicode")
    started = time.perf_counter()
    dom = conn.defineXML(xml)
    dom.create()
    elapsed = time.perf_counter() - started
    dom.destroy()
    dom.undefine()
    overlay.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with running_cloud() as (cloud, _etcd, _image):
        # Warm the image cache and take the agent's domain XML as the template.
        _, warm = asyncio.run(sfcloud_once(cloud, "bench-warm"))
        conn = libvirt.open("qemu:///system")
        template = ET.fromstring(conn.lookupByUUIDString(warm).XMLDesc(0))
        base_image = next(cloud.image_cache_dir().glob("*.qcow2"))
        workdir = cloud.state_dir / "bench-baseline"
        workdir.mkdir(mode=0o711)
        shutil.copy(cloud.instance_dir(warm) / "config.iso", workdir / "config.iso")
        delete(cloud, warm)
        ours, theirs = [], []
        try:
            for run in range(args.runs):
                elapsed, uuid = asyncio.run(sfcloud_once(cloud, f"bench-{run}"))
                ours.append(elapsed)
                delete(cloud, uuid)
                theirs.append(baseline_once(conn, template, workdir, base_image))
                print(f"run {run + 1}: sfcloud {ours[-1]:.3f} s, libvirt {theirs[-1]:.3f} s",
                      flush=True)
        finally:
            conn.close()
    print()
    print(f"sfcloud  POST -> observed power on:   {summary(ours)}")
    print(f"baseline libvirt defineXML + create:  {summary(theirs)}")
    print(f"ratio of medians (sfcloud / libvirt): "
          f"{statistics.median(ours) / statistics.median(theirs):.2f}x, "
          f"overhead {statistics.median(ours) - statistics.median(theirs):.3f} s")


if __name__ == "__main__":
    main()
