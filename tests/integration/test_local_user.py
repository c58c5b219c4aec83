"""A local unprivileged user on a running cloud's machine reads nothing under
its state directory: not the portal's database (sessions, password hashes,
token digests), not a guest's disk or config drive (user data, keys), not a
snapshot, a blob, an upload or a cached image, not a network's DHCP hosts,
not a secret. The test walks the whole directory as root, then tries every
file and directory as ``nobody`` (no groups): opening each file, listing
each directory."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import create_network, delete_networks

pytestmark = pytest.mark.integration

# The test harness's own logs (written by pytest, not by the cloud).
HARNESS_FILES = {"portal.log", "agent.log"}

_AS_NOBODY = """
import json, os, sys
found = []
for path in json.load(sys.stdin):
    try:
        if os.path.isdir(path):
            os.listdir(path)
            found.append("listed " + path)
        else:
            with open(path, "rb") as f:
                f.read(1)
            found.append("read " + path)
    except OSError:
        pass
print(json.dumps(found))
"""


def _everything_under(root: Path) -> list[str]:
    paths = []
    for directory, _dirnames, filenames in os.walk(root):
        paths.append(directory)
        for name in filenames:
            if name in HARNESS_FILES or (name.startswith("portal-") and name.endswith(".log")):
                continue
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                paths.append(str(path))
    return paths


def _readable_by_nobody(paths: list[str]) -> list[str]:
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
         "--", "/usr/bin/python3", "-c", _AS_NOBODY],
        input=json.dumps(paths), capture_output=True, text=True, check=True, timeout=60)
    return json.loads(result.stdout)


def test_a_local_user_reads_nothing_of_the_state(cloud: Cloud) -> None:
    api = cloud.api()
    network = create_network(cloud, "private-net", "10.77.0.0/24")
    secret_data = base64.b64encode(b"#!/bin/sh\necho user-data-secret\n").decode()
    response = api.post("/instances", {
        "name": "private-vm", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
        "network": [{"network_uuid": network["uuid"]}], "user_data": secret_data})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    try:
        cloud.wait_console(uuid, "SFCLOUD-READY")
        taken = api.post(f"/instances/{uuid}/snapshot", {"all": True}).json()
        wait_for(lambda: all(i["state"] == "created"
                             for i in api.get(f"/instances/{uuid}/snapshot").json()),
                 90, "the snapshot")
        # An upload under way: its bytes wait on the node.
        upload = api.post("/upload").json()["uuid"]
        assert api.request("POST", f"/upload/{upload}", raw=b"private bytes" * 100).json() == 1300
        # What is there to protect is there: the database, a disk, a config
        # drive, a snapshot in the image cache and among the blobs, an upload,
        # a DHCP hosts file.
        every = _everything_under(cloud.state_dir)
        names = {Path(p).name for p in every}
        assert {"db.sqlite3", "secret_key", "vda.qcow2", "config.iso", "hosts", "names",
                "dnsmasq.conf", "used-grants"} <= names, sorted(names)
        assert len([p for p in every if p.endswith(".qcow2") and "/images/" in p]) >= 2
        assert len([p for p in every if "/blobs/" in p and not p.endswith(".json")]) >= 2
        assert [p for p in every if p.endswith(f"/uploads/{upload}")]
        assert taken

        assert _readable_by_nobody(every) == []
        # The guest still runs, and its snapshot still boots: QEMU gets the
        # files it needs although nobody else does.
        assert api.get(f"/instances/{uuid}").json()["power_state"] == "on"
        # A control: the probe does find what is readable.
        probe = cloud.state_dir / "harness-probe"
        probe.write_text("x")
        probe.chmod(0o644)
        try:
            assert _readable_by_nobody([str(probe)]) == [f"read {probe}"]
        finally:
            probe.unlink()
    finally:
        api.delete(f"/instances/{uuid}")
        wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60,
                 "the instance deleted")
        delete_networks(cloud, network["uuid"])
