"""Shaken Fist's own client, unchanged, on sfcloud's storage: a 200 MiB file
uploaded (the portal's memory watched meanwhile) and downloaded again,
identical; versions kept, limited and deleted; labels made from a snapshot
and booted from; blobs listed, shown and found by checksum; a backup of a
namespace's artifacts; and a namespace cleaned of them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cloud import ApiClient, Cloud, wait_for

pytestmark = pytest.mark.integration

MiB = 1 << 20
BIG = 200 * MiB
# What the portal may grow by while a 200 MiB file goes through it: a few
# chunks of at most 2 MiB in flight, and Python's allocator keeping some.
PORTAL_GROWTH_LIMIT = 48 * MiB


def write_random(path: Path, size: int) -> str:
    """A file of ``size`` random bytes; its sha512."""
    digest = hashlib.sha512()
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 4 * MiB))
            digest.update(piece)
            out.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def sha512_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as f:
        while piece := f.read(4 * MiB):
            digest.update(piece)
    return digest.hexdigest()


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class MemoryWatch(threading.Thread):
    """Samples a process's resident memory until stopped; keeps the peak."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.baseline = rss(pid)
        self.peak = self.baseline
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))
            self.samples += 1

    def __enter__(self) -> MemoryWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()


@dataclass
class Tenant:
    """A namespace with a key, and the client run as it."""

    cloud: Cloud
    api: ApiClient

    @property
    def namespace(self) -> str:
        return self.api.namespace

    def sf(self, *args: str, **options: object):  # type: ignore[no-untyped-def]
        return self.cloud.sf(*args, namespace=self.api.namespace, key=self.api.key,
                             **options)  # type: ignore[arg-type]

    def sf_json(self, *args: str, **options: object):  # type: ignore[no-untyped-def]
        return json.loads(self.sf("--json", *args, **options).stdout)


@pytest.fixture
def tenant(cloud: Cloud, request: pytest.FixtureRequest) -> Iterator[Tenant]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    made = Tenant(cloud, cloud.make_namespace(f"st-{name}"))
    yield made
    made.sf("namespace", "clean", "--confirm", "--namespace", made.namespace, check=False)


def uploaded_uuid(output: str) -> str:
    found = re.search(r"Created artifact ([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def test_a_200_mib_upload_streams_through_the_portal_and_comes_back_identical(
        tenant: Tenant, tmp_path: Path) -> None:
    cloud = tenant.cloud
    source = tmp_path / "big.bin"
    digest = write_random(source, BIG)
    assert cloud.portal is not None
    with MemoryWatch(cloud.portal.pid) as watch:
        started = time.monotonic()
        result = tenant.sf("artifact", "upload", "bigfile", str(source), timeout=900)
        took = time.monotonic() - started
    growth = watch.peak - watch.baseline
    print(f"\n200 MiB upload: {took:.1f} s; portal RSS {watch.baseline / MiB:.1f} MiB before, "
          f"{watch.peak / MiB:.1f} MiB at its peak (+{growth / MiB:.1f} MiB, "
          f"{watch.samples} samples)")
    assert "Uploading new blob" in result.stdout
    assert growth < PORTAL_GROWTH_LIMIT, f"the portal grew by {growth / MiB:.1f} MiB"
    uuid = uploaded_uuid(result.stdout)

    shown = tenant.sf_json("artifact", "show", uuid)
    assert shown["state"] == "created" and shown["artifact_type"] == "image"
    assert shown["source_url"] == f"sf://upload/{tenant.namespace}/bigfile"
    version = shown["blobs"][str(shown["index"])]
    assert version["size"] == BIG and version["uuid"] == shown["blob_uuid"]
    blob = tenant.sf_json("blob", "show", shown["blob_uuid"])
    assert blob["sha512"] == digest and blob["size"] == BIG
    assert blob["locations"] == [cloud.node] and blob["reference_count"] == 1
    found = tenant.sf("blob", "sha512", digest).stdout
    assert shown["blob_uuid"] in found

    # Downloaded (in 512 MiB requests at most, as the client asks), it is the same file.
    target = tmp_path / "back.bin"
    done = tenant.sf("artifact", "download", uuid, str(target), timeout=600)
    assert "Download complete" in done.stdout
    assert target.stat().st_size == BIG and sha512_of(target) == digest

    # The same file again: the client finds the blob by its checksum, and
    # the artifact gets no new version for the same bytes.
    again = tenant.sf("artifact", "upload", "bigfile", str(source), timeout=900)
    assert "Recycling existing blob" in again.stdout
    assert uploaded_uuid(again.stdout) == uuid
    assert len(tenant.sf_json("artifact", "versions", uuid)) == 1


def test_instance_upload_uploads_but_cannot_place_the_file(tenant: Tenant,
                                                          tmp_path: Path) -> None:
    """The upload half of ``instance upload`` works; putting the file inside
    the guest needs Shaken Fist's in-guest agent, which is not offered, and
    the client says so."""
    path = tmp_path / "into-guest.txt"
    path.write_bytes(b"for the guest\n")
    result = tenant.sf("instance", "upload", "someinstance", str(path), "/tmp/x", check=False)
    assert result.returncode != 0
    assert "Created artifact" in result.stdout
    assert "does not support placing a blob on an instance" in result.stdout + result.stderr
    names = [a["source_url"] for a in tenant.sf_json("artifact", "list")]
    assert f"sf://upload/{tenant.namespace}/upload-to-someinstance" in names


def test_versions_are_kept_limited_and_deleted(tenant: Tenant, tmp_path: Path) -> None:
    digests = []
    for n in range(4):
        path = tmp_path / f"v{n}.bin"
        digests.append(write_random(path, MiB + n))
        output = tenant.sf("artifact", "upload", "--no-checksum", "notes", str(path)).stdout
        uuid = uploaded_uuid(output)
    listed = [a for a in tenant.sf_json("artifact", "list") if a["uuid"] == uuid]
    assert len(listed) == 1
    shown = tenant.sf_json("artifact", "show", uuid)
    # Three versions kept by default, the oldest went.
    assert shown["max_versions"] == 3 and sorted(int(i) for i in shown["blobs"]) == [2, 3, 4]
    versions = tenant.sf_json("artifact", "versions", uuid)
    assert [v["index"] for v in versions] == [2, 3, 4]
    assert [v["sha512"] for v in versions] == digests[1:]
    first_blob = versions[0]["uuid"]
    pretty = tenant.sf("artifact", "list").stdout
    assert "3 of 4" in pretty

    tenant.sf("artifact", "max-versions", uuid, "2")
    assert [v["index"] for v in tenant.sf_json("artifact", "versions", uuid)] == [3, 4]
    # Nothing uses the pruned version's blob any more: it is gone.
    assert tenant.api.get(f"/blobs/{first_blob}").json()["state"] == "deleted"

    tenant.sf("artifact", "delete-version", uuid, "3")
    shown = tenant.sf_json("artifact", "show", uuid)
    assert list(shown["blobs"]) == ["4"] and shown["index"] == 4
    refused = tenant.sf("artifact", "delete-version", uuid, "3", check=False)
    assert refused.returncode != 0 and "artifact index not found" in refused.stdout + \
        refused.stderr
    tenant.sf("artifact", "delete-version", uuid, "4")
    assert tenant.api.get(f"/artifacts/{uuid}").json()["state"] == "deleted"


def test_blobs_backups_metadata_sharing_and_cleaning(cloud: Cloud, tenant: Tenant,
                                                     tmp_path: Path) -> None:
    digests = {}
    for name in ("alpha", "beta"):
        path = tmp_path / f"{name}.bin"
        digests[name] = write_random(path, 3 * MiB)
        tenant.sf("artifact", "upload", name, str(path))
    artifacts = {a["source_url"].rsplit("/", 1)[-1]: a for a in tenant.sf_json("artifact", "list")
                 if a["namespace"] == tenant.namespace}
    assert set(artifacts) == {"alpha", "beta"}

    # The pretty tables read every key they need.
    pretty = tenant.sf("artifact", "show", artifacts["alpha"]["uuid"]).stdout
    assert "current version blob uuid" in pretty and artifacts["alpha"]["blob_uuid"] in pretty
    assert cloud.node in tenant.sf("blob", "list").stdout
    assert "new version uploaded" in tenant.sf("artifact", "events",
                                                artifacts["alpha"]["uuid"]).stdout
    blobs = tenant.sf_json("blob", "list")
    mine = {b["uuid"]: b for b in blobs if b["sha512"] in digests.values()}
    assert len(mine) == 2 and all(b["reference_count"] == 1 for b in mine.values())
    pretty = tenant.sf("blob", "show", next(iter(mine))).stdout
    assert "reference count" in pretty and cloud.node in pretty
    assert "No blob found" in tenant.sf("blob", "sha512", "0" * 128).stdout
    events = tenant.sf_json("blob", "events", next(iter(mine)))
    assert any(e["message"].startswith(f"held on {cloud.node}") for e in events), events
    # Someone else's blobs are not found.
    other = cloud.make_namespace("st-stranger")
    assert other.get(f"/blobs/{next(iter(mine))}").status_code == 404

    # A backup: every artifact the namespace sees and every blob they hold.
    backup = tmp_path / "backup"
    backup.mkdir()
    tenant.sf("backup", "create", "summary.json", cwd=backup, timeout=600)
    summary = json.loads((backup / "summary.json").read_text())
    for artifact in artifacts.values():
        assert artifact["uuid"] in summary["artifacts"]
        blob_uuid = artifact["blob_uuid"]
        assert sha512_of(backup / "blobs" / blob_uuid) == summary["blobs"][blob_uuid]["sha512"]

    # Metadata, through the library (the 0.8.3 command line sends it to the
    # instance routes, a client bug).
    library = cloud.sf_library(tenant.namespace, tenant.api.key)
    alpha = artifacts["alpha"]["uuid"]
    library.set_artifact_metadata_item(alpha, "colour", "blue")
    assert library.get_artifact_metadata(alpha) == {"colour": "blue"}
    assert tenant.sf_json("artifact", "show", alpha)["metadata"] == {"colour": "blue"}
    library.delete_artifact_metadata_item(alpha, "colour")
    assert library.get_artifact_metadata(alpha) == {}

    # Sharing: only the system namespace's artifacts, and only by it.
    refused = tenant.sf("artifact", "share", alpha, check=False)
    assert refused.returncode != 0 and "only artifacts in the system namespace" in \
        refused.stdout + refused.stderr
    system_file = tmp_path / "common.bin"
    write_random(system_file, MiB)
    common = uploaded_uuid(cloud.sf("artifact", "upload", "common-file", str(system_file)).stdout)
    assert common not in [a["uuid"] for a in tenant.sf_json("artifact", "list")]
    cloud.sf("artifact", "share", common)
    assert common in [a["uuid"] for a in tenant.sf_json("artifact", "list")]
    cloud.sf("artifact", "unshare", common)
    assert common not in [a["uuid"] for a in tenant.sf_json("artifact", "list")]
    cloud.sf("artifact", "delete", common)

    # namespace clean: its instances, networks and artifacts.
    cloud.sf("namespace", "clean", "--confirm", "--namespace", tenant.namespace)
    left = [a for a in tenant.sf_json("artifact", "list") if a["namespace"] == tenant.namespace]
    assert left == []
    for uuid in mine:
        wait_for(lambda u=uuid: tenant.api.get(f"/blobs/{u}").json()["state"] == "deleted", 30,
                 "the namespace's blobs to go")


def test_snapshot_label_and_an_instance_from_the_label(cloud: Cloud, tenant: Tenant) -> None:
    created = tenant.sf_json("instance", "create", "labelsrc", "1", "128", "-d", "1@demo")
    source = created["uuid"]
    cloud.wait_console(source, "SFCLOUD-READY")
    snapshot = tenant.sf_json("instance", "snapshot", "-l", "golden", source)
    blob_uuid = snapshot["vda"]["blob_uuid"]
    assert snapshot["label"]["artifact_type"] == "label"
    assert snapshot["label"]["blob_uuid"] == blob_uuid

    label = tenant.api.get("/label/golden").json()
    assert label["source_url"] == f"sf://label/{tenant.namespace}/golden"
    assert label["blobs"][str(label["index"])]["uuid"] == blob_uuid
    made = tenant.sf_json("instance", "create", "fromlabel", "1", "128", "-d",
                          "1@label:golden")
    assert made["disk_spec"][0]["blob_uuid"] == blob_uuid
    cloud.wait_console(made["uuid"], "SFCLOUD-READY")
    # The snapshot's version, the label's and the new instance's disk.
    assert tenant.sf_json("blob", "show", blob_uuid)["reference_count"] == 3

    # label update points it elsewhere (a new version); the instance keeps its blob.
    demo_blob = tenant.api.get("/artifacts/demo").json()["blob_uuid"]
    tenant.sf("label", "update", "golden", demo_blob)
    label = tenant.api.get("/label/golden").json()
    assert label["blob_uuid"] == demo_blob and len(label["blobs"]) == 2
    assert tenant.api.delete("/label/golden").json()["state"] == "deleted"
    assert tenant.api.get("/label/golden").status_code == 404
    for uuid in (made["uuid"], source):
        tenant.sf("instance", "delete", uuid)
