"""Bad input gets a 400 naming the problem (or, for what is only found out
later, an error state saying why), and nothing half-made is left behind."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.integration


def instance_keys(cloud: Cloud) -> list[str]:
    return cloud.etcd_keys("instances/") + cloud.etcd_keys("names/instances/")


@pytest.mark.parametrize("body,expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ({"name": "ok", "cpus": "many", "memory": 256, "disk": [{"size": 1}]}, "cpus"),
    ({"name": "ok", "cpus": -1, "memory": 256, "disk": [{"size": 1}]}, "cpus"),
    ({"name": "ok", "cpus": 100000, "memory": 256, "disk": [{"size": 1}]}, "cpus"),
    ({"name": "ok", "cpus": 1, "memory": -256, "disk": [{"size": 1}]}, "memory"),
    ({"name": "ok", "cpus": 1, "memory": 10**12, "disk": [{"size": 1}]}, "memory"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": -1}]}, "disk[0].size"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 10**9}]}, "disk[0].size"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": []}, "at least one disk"),
    ({"name": "ok", "cpus": 1, "memory": 256}, "at least one disk"),
    ({"name": "not a host", "cpus": 1, "memory": 256, "disk": [{"size": 1}]}, "hostname"),
    ({"name": "-x", "cpus": 1, "memory": 256, "disk": [{"size": 1}]}, "hostname"),
    ({"name": 5, "cpus": 1, "memory": 256, "disk": [{"size": 1}]}, "name"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1, "base": "ftp://h/x"}]},
     "not an http or https URL"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1, "base": "sf://other/x"}]},
     "not a reference this cloud knows"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], "user_data": "%%%"},
     "user_data"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], "ssh_key": "hello"},
     "ssh_key"),
])
def test_malformed_create_is_400_and_leaves_nothing(cloud: Cloud, body: object,
                                                    expected: str) -> None:
    before = instance_keys(cloud)
    api = cloud.api()
    if isinstance(body, str):
        api._auth()
        response = api.session.post(f"{cloud.api_url}/instances", data=body,
                                    headers={"Authorization": f"Bearer {api._token}"})
    else:
        response = api.post("/instances", body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status"] == 400
    assert expected in error["error"]
    assert instance_keys(cloud) == before


def test_unauthenticated_and_garbage_tokens_are_401(cloud: Cloud) -> None:
    import requests

    assert requests.get(f"{cloud.api_url}/instances", timeout=10).status_code == 401
    response = requests.get(f"{cloud.api_url}/instances", timeout=10,
                            headers={"Authorization": "Bearer garbage"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid token", "status": 401}
    response = requests.post(f"{cloud.api_url}/auth", timeout=10,
                             json={"namespace": "system", "key": "wrong-key-here"})
    assert response.status_code == 401


def test_duplicate_name_is_409(cloud: Cloud) -> None:
    body = {"name": "twin", "cpus": 1, "memory": 128, "disk": [{"size": 1}]}
    first = cloud.api().post("/instances", body)
    assert first.status_code == 200
    second = cloud.api().post("/instances", body)
    assert second.status_code == 409
    assert "already exists" in second.json()["error"]
    uuid = first.json()["uuid"]
    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted",
             30, "twin deleted")


@pytest.mark.parametrize("base", ["nosuchimage", "label:nosuchlabel",
                                  "sf://blob/0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0aff"])
def test_a_missing_image_is_404_and_leaves_nothing(cloud: Cloud, base: str) -> None:
    before = instance_keys(cloud)
    response = cloud.api().post("/instances", {"name": "ok", "cpus": 1, "memory": 256,
                                               "disk": [{"size": 1, "base": base}]})
    assert response.status_code == 404, response.text
    assert "not found" in response.json()["error"] or "no artifact" in response.json()["error"]
    assert instance_keys(cloud) == before


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
