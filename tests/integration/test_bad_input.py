"""Bad input found out only by the node (an image that is not one) gets an
error state saying why, and nothing half-made is left behind.

Bad input the portal refuses at once (a 400 naming the problem) is tried in
process: tests/fast/test_api_instances.py."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.integration


@pytest.fixture
def bad_images(tmp_path):  # type: ignore[no-untyped-def]
    with HTTPTestServer() as server:
        server.serve_bytes("/page.qcow2", b"<html><body>not an image</body></html>",
                           content_type="text/html")
        server.serve_bytes("/noise.img", bytes(range(256)) * 4000)
        server.respond_status("/missing.qcow2", 404)
        yield server


@pytest.mark.parametrize("path,reason", [
    ("/missing.qcow2", "could not be fetched: 127.0.0.1 answered 404"),
    # Fetched (any file is an artifact), but no disk can be made of it.
    ("/page.qcow2", "is not a bootable disk image (the file is not a disk image"),
    ("/noise.img", "is not a bootable disk image (the file is not a disk image"),
])
def test_image_that_is_not_usable_gives_an_error_state(cloud: Cloud, bad_images, path: str,
                                                       reason: str) -> None:
    url = bad_images.url(path)
    response = cloud.api().post("/instances", {
        "name": "badimage", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": url}],
    })
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    shown = wait_for(lambda: (i := cloud.api().get(f"/instances/{uuid}").json())["state"]
                     == "error" and i, 60, "the error state")
    assert reason.lower() in shown["error_message"].lower()
    # Nothing half-made: no domain, no instance directory, no partial download.
    assert uuid not in cloud.domains()
    assert not cloud.instance_dir(uuid).exists()
    for store in ("images", "blobs"):
        assert not any((cloud.image_cache_dir().parent / store / ".partial").iterdir())
    assert not list(cloud.image_cache_dir().glob("*.qcow2.*"))
    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted",
             30, "deleted")
