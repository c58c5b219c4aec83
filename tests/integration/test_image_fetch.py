"""Images given by URL: fetched once per node, shared by everyone who asks."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.integration


def test_two_instances_from_one_url_download_it_once(cloud: Cloud,
                                                     image_server: HTTPTestServer) -> None:
    path = "/demo.qcow2"
    # A query string makes this URL new to the node's cache.
    url = image_server.url(path) + "?shared-download"
    before = image_server.count(path)
    api = cloud.api()
    uuids = [
        api.post("/instances", {"name": f"fromurl-{i}", "cpus": 1, "memory": 128,
                                "disk": [{"size": 1, "base": url}]}).json()["uuid"]
        for i in range(2)
    ]
    for uuid in uuids:
        cloud.wait_console(uuid, "SFCLOUD-READY")
    assert image_server.count(path) - before == 1

    # A third instance later finds it in the cache: no request at all.
    third = api.post("/instances", {"name": "fromurl-2", "cpus": 1, "memory": 128,
                                    "disk": [{"size": 1, "base": url}]}).json()["uuid"]
    cloud.wait_console(third, "SFCLOUD-READY")
    assert image_server.count(path) - before == 1

    for uuid in [*uuids, third]:
        api.delete(f"/instances/{uuid}")
    wait_for(lambda: not cloud.domains(), 60, "the instances to go")


def test_instances_from_a_new_url_asked_at_once_share_one_fetch(
        cloud: Cloud, image_server: HTTPTestServer) -> None:
    """Two creates racing to be the first from a URL: one makes its artifact
    and asks its node to fetch it, the other starts from that same blob."""
    from concurrent.futures import ThreadPoolExecutor

    path = "/demo.qcow2"
    url = image_server.url(path) + "?raced"
    before = image_server.count(path)

    def create(name: str) -> dict:
        response = cloud.api().post("/instances", {"name": name, "cpus": 1, "memory": 128,
                                                   "disk": [{"size": 1, "base": url}]})
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(2) as pool:
        made = list(pool.map(create, ["raced-0", "raced-1"]))
    blobs = {m["disks"][0]["blob_uuid"] for m in made}
    assert len(blobs) == 1, made
    artifacts = [a for a in cloud.api().get("/artifacts").json() if a["source_url"] == url]
    assert len(artifacts) == 1
    api = cloud.api()
    for item in made:
        wait_for(lambda u=item["uuid"]: api.get(f"/instances/{u}").json()["state"] == "created",
                 90, "created")
    assert image_server.count(path) - before == 1
    for item in made:
        api.delete(f"/instances/{item['uuid']}")
    api.delete(f"/artifacts/{artifacts[0]['uuid']}")
