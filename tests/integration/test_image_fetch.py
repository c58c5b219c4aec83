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
