"""Images cached ahead of time: POST /artifacts fetches one onto the nodes,
with per-node progress visible while it downloads; an instance from it (by
URL or by name) starts without downloading it again.

URLs that may not be fetched, or that serve no disk image, and who may see
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
    """Whole-file GETs: the API's check of the first bytes is a ranged GET."""
    return sum(1 for r in server.requests
               if r.path == path and r.method == "GET" and "Range" not in r.headers)


def artifact(cloud: Cloud, ref: str) -> dict:
    response = cloud.api().get(f"/artifacts/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


def test_cached_image_is_not_downloaded_again(cloud: Cloud, server: HTTPTestServer,
                                              guest_image_dir: Path) -> None:
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
    assert shown["blobs"]["1"]["size"] == (guest_image_dir / "disk.qcow2").stat().st_size
    assert downloads(server, "/cirrus.qcow2") == 1
    assert cached["uuid"] in [a["uuid"] for a in api.get("/artifacts", {"node": None}).json()]
    # Asking again for the same URL gives the same image, and fetches nothing.
    again = api.post("/artifacts", {"url": url})
    assert again.json()["uuid"] == cached["uuid"]

    uuids = []
    for name, base in (("fromurl", url), ("fromname", "cirrus.qcow2")):
        made = api.post("/instances", {"name": name, "cpus": 1, "memory": 128,
                                       "disk": [{"size": 1, "base": base}]})
        assert made.status_code == 200, made.text
        assert made.json()["disks"][0]["blob_uuid"] == cached["uuid"]
        uuids.append(made.json()["uuid"])
    for uuid in uuids:
        cloud.wait_console(uuid, "SFCLOUD-READY")
    assert downloads(server, "/cirrus.qcow2") == 1
    assert sorted(artifact(cloud, cached["uuid"])["blobs"]["1"]["instances"]) == sorted(uuids)

    events = [e["message"] for e in api.get(f"/artifacts/{cached['uuid']}/events").json()]
    assert any(m.startswith(f"cached on {cloud.node}") for m in events), events

    refused = api.delete(f"/artifacts/{cached['uuid']}")
    assert refused.status_code == 409
    for uuid in uuids:
        api.delete(f"/instances/{uuid}")
    for uuid in uuids:
        wait_for(lambda u=uuid: api.get(f"/instances/{u}").json()["state"] == "deleted", 60,
                 "deleted")
    path = cloud.image_cache_dir()
    before = len(list(path.glob("*.qcow2")))
    assert api.delete(f"/artifacts/{cached['uuid']}").status_code == 200
    wait_for(lambda: len(list(path.glob("*.qcow2"))) == before - 1, 60,
             "the node to drop its copy")


def test_progress_shows_while_downloading(cloud: Cloud, server: HTTPTestServer) -> None:
    api = cloud.api()
    response = api.post("/artifacts", {"url": server.url("/slow.qcow2"), "name": "slowone"})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]

    def progress() -> dict | None:
        node = artifact(cloud, uuid)["nodes"].get(cloud.node)
        return node if node and node["state"] == "downloading" and node["done"] > 0 else None

    seen = wait_for(progress, 30, "progress while downloading")
    assert seen["total"] and 0 < seen["done"] < seen["total"]
    assert artifact(cloud, uuid)["state"] == "creating"
    server.release_stalls()
    wait_for(lambda: artifact(cloud, uuid)["state"] == "created", 60, "created")
    assert api.delete(f"/artifacts/{uuid}").status_code == 200
