"""Images cached ahead of time: POST /artifacts fetches one (once, on one
node) with per-node progress visible while it downloads; an instance from it
(by URL or by name) starts without downloading it again; deleting it while
instances use it keeps their blob until they are gone, as Shaken Fist
counts references; storage housekeeping forgets what is long gone.

URLs that must never be fetched (a 400, nothing written), and who may see
an image, are tried in process: tests/fast/test_api_artifacts.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server(guest_image_dir: Path) -> Iterator[HTTPTestServer]:
    data = (guest_image_dir / "disk.qcow2").read_bytes()
    with HTTPTestServer() as served:
        served.serve_bytes("/cirrus.qcow2", data, "application/x-qcow2")
        served.serve_stalling("/slow.qcow2", data, stall_after=len(data) // 2, stall_for=None,
                              content_type="application/x-qcow2")
        yield served


def downloads(server: HTTPTestServer, path: str) -> int:
    return sum(1 for r in server.requests if r.path == path and r.method == "GET")


def artifact(cloud: Cloud, ref: str) -> dict:
    response = cloud.api().get(f"/artifacts/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


def blob(cloud: Cloud, uuid: str) -> dict:
    response = cloud.api().get(f"/blobs/{uuid}")
    assert response.status_code == 200, response.text
    return response.json()


def test_cached_image_is_fetched_once_and_outlives_its_artifact_while_used(
        cloud: Cloud, server: HTTPTestServer, guest_image_dir: Path) -> None:
    api = cloud.api()
    url = server.url("/cirrus.qcow2")
    response = api.post("/artifacts", {"url": url, "shared": False, "namespace": None})
    assert response.status_code == 200, response.text
    cached = response.json()
    assert cached["artifact_type"] == "image" and cached["source_url"] == url
    assert cached["name"] == "cirrus.qcow2"
    wait_for(lambda: artifact(cloud, cached["uuid"])["state"] == "created", 60, "cached")
    shown = artifact(cloud, cached["uuid"])
    assert shown["nodes"][cloud.node]["state"] == "ready"
    version = shown["blobs"][str(shown["index"])]
    assert version["size"] == (guest_image_dir / "disk.qcow2").stat().st_size
    # Shaken Fist counts the artifact's version: 1 right after caching.
    assert version["reference_count"] == 1 and version["uuid"] == shown["blob_uuid"]
    assert downloads(server, "/cirrus.qcow2") == 1
    assert cached["uuid"] in [a["uuid"] for a in api.get("/artifacts", {"node": None}).json()]
    # Asking again for the same URL gives the same artifact; the file there
    # has not changed, so it is no new version (Shaken Fist looks again).
    again = api.post("/artifacts", {"url": url})
    assert again.json()["uuid"] == cached["uuid"]
    wait_for(lambda: downloads(server, "/cirrus.qcow2") == 2
             and (a := artifact(cloud, cached["uuid"]))["nodes"].get(cloud.node, {}).get(
                 "state") == "ready" and a, 60, "the second look to end")
    assert artifact(cloud, cached["uuid"])["blobs"] == shown["blobs"]

    uuids = []
    for name, base in (("fromurl", url), ("fromname", "cirrus.qcow2")):
        made = api.post("/instances", {"name": name, "cpus": 1, "memory": 128,
                                       "disk": [{"size": 1, "base": base}]})
        assert made.status_code == 200, made.text
        assert made.json()["disks"][0]["blob_uuid"] == shown["blob_uuid"]
        uuids.append(made.json()["uuid"])
    for uuid in uuids:
        cloud.wait_console(uuid, "SFCLOUD-READY")
    assert downloads(server, "/cirrus.qcow2") == 2  # the instances fetched nothing
    shown = artifact(cloud, cached["uuid"])
    assert sorted(shown["blobs"][str(shown["index"])]["instances"]) == sorted(uuids)
    assert shown["blobs"][str(shown["index"])]["reference_count"] == 3

    events = [e["message"] for e in api.get(f"/artifacts/{cached['uuid']}/events").json()]
    assert any(m.startswith("caching requested") for m in events), events
    blob_events = [e["message"] for e in api.get(f"/blobs/{shown['blob_uuid']}/events").json()]
    assert any(m.startswith(f"held on {cloud.node}") for m in blob_events), blob_events

    # Deleting the artifact keeps the blob its instances start from.
    deleted = api.delete(f"/artifacts/{cached['uuid']}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
    assert api.delete(f"/artifacts/{cached['uuid']}").json() is None
    kept = blob(cloud, shown["blob_uuid"])
    assert kept["state"] == "created" and kept["reference_count"] == 2
    assert sorted(kept["instances"]) == sorted(uuids)
    for uuid in uuids:
        api.delete(f"/instances/{uuid}")
    for uuid in uuids:
        wait_for(lambda u=uuid: api.get(f"/instances/{u}").json()["state"] == "deleted", 60,
                 "deleted")
    # The last user gone, the blob goes, and the node drops its copy.
    wait_for(lambda: blob(cloud, shown["blob_uuid"])["state"] == "deleted", 30,
             "the unused blob to be deleted")
    blobs_dir = cloud.image_cache_dir().parent / "blobs"
    wait_for(lambda: not (blobs_dir / shown["blob_uuid"]).exists()
             and not (cloud.image_cache_dir() / f"{shown['blob_uuid']}.qcow2").exists(), 60,
             "the node to drop its copy")


def test_progress_shows_while_downloading(cloud: Cloud, server: HTTPTestServer) -> None:
    api = cloud.api()
    response = api.post("/artifacts", {"url": server.url("/slow.qcow2"), "name": "slowone"})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    assert response.json()["state"] == "initial" and response.json()["index"] == 0

    def progress() -> dict | None:
        node = artifact(cloud, uuid)["nodes"].get(cloud.node)
        return node if node and node["state"] == "downloading" and node["done"] > 0 else None

    seen = wait_for(progress, 30, "progress while downloading")
    assert seen["total"] and 0 < seen["done"] < seen["total"]
    assert artifact(cloud, uuid)["state"] == "initial"
    server.release_stalls()
    wait_for(lambda: artifact(cloud, uuid)["state"] == "created", 60, "created")
    assert api.delete(f"/artifacts/{uuid}").status_code == 200


def test_storage_housekeeping_forgets_what_is_long_gone(etcd_server, guest_image_dir,  # type: ignore[no-untyped-def]
                                                        libvirt_daemon) -> None:
    """With short lifetimes: a deleted artifact and its unused blob are read
    back as deleted, then forgotten (every key of theirs goes); an upload
    never made an artifact expires."""
    short = Cloud(etcd_server, demo_image=guest_image_dir / "disk.qcow2",
                  SFCLOUD_DELETED_RETENTION="2", SFCLOUD_JANITOR_INTERVAL="1",
                  SFCLOUD_UPLOAD_LIFETIME="3")
    try:
        short.start()
        api = short.api()
        upload = api.post("/upload").json()["uuid"]
        assert api.request("POST", f"/upload/{upload}", raw=b"kept" * 1000).json() == 4000
        made = api.post("/artifacts/upload/brief", {"upload_uuid": upload}).json()
        uuid, blob_uuid = made["uuid"], made["blob_uuid"]
        assert api.get(f"/upload/{upload}").status_code == 404  # it became the blob

        forgotten = api.post("/upload").json()["uuid"]
        assert api.request("POST", f"/upload/{forgotten}", raw=b"lost" * 10).json() == 40
        wait_for(lambda: api.get(f"/upload/{forgotten}").status_code == 404, 30,
                 "the upload to expire")

        assert api.delete(f"/artifacts/{uuid}").json()["state"] == "deleted"
        assert api.get(f"/blobs/{blob_uuid}").json()["state"] == "deleted"
        wait_for(lambda: api.get(f"/artifacts/{uuid}").status_code == 404
                 and api.get(f"/blobs/{blob_uuid}").status_code == 404, 60, "the purge")
        assert not [key for key in short.etcd_keys() if uuid in key or blob_uuid in key]
    finally:
        short.stop()
