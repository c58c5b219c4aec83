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
     "no image"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1, "base": "nosuchimage"}]},
     "no image"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], "user_data": "%%%"},
     "user_data"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], "ssh_key": "hello"},
     "ssh_key"),
    # Shaken Fist's buses, and its refusal of IDE.
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1, "bus": "ide"}]},
     "disk[0].bus: invalid disk bus ide"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1, "bus": "floppy"}]},
     "invalid disk bus floppy"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1, "type": "floppy"}]},
     "invalid disk type floppy"),
    ({"name": "ok", "cpus": 1, "memory": 256,
      "disk": [{"size": 1}, {"type": "cdrom", "base": "demo", "bus": "nvme"}]},
     "a cdrom can't be on nvme"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], "secure_boot": True},
     "secure boot requires UEFI be enabled"),
    ({"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], "uefi": "maybe"},
     "uefi: must be true or false"),
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


def test_duplicate_names_are_allowed_and_a_name_naming_two_is_400(cloud: Cloud) -> None:
    # As in Shaken Fist: instances are told apart by UUID.
    body = {"name": "twin", "cpus": 1, "memory": 128, "disk": [{"size": 1}]}
    first = cloud.api().post("/instances", body)
    second = cloud.api().post("/instances", body)
    assert (first.status_code, second.status_code) == (200, 200), second.text
    uuids = [first.json()["uuid"], second.json()["uuid"]]
    assert uuids[0] != uuids[1]
    ambiguous = cloud.api().get("/instances/twin")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"] == \
        'multiple instances have the name "twin" in namespace "system": use the UUID'
    for uuid in uuids:
        cloud.api().delete(f"/instances/{uuid}")
    for uuid in uuids:
        wait_for(lambda u=uuid: cloud.api().get(f"/instances/{u}").json()["state"] == "deleted",
                 30, "twin deleted")


def test_a_missing_nvram_template_is_404(cloud: Cloud) -> None:
    before = instance_keys(cloud)
    response = cloud.api().post("/instances", {
        "name": "nvram", "cpus": 1, "memory": 128, "disk": [{"size": 1}], "uefi": True,
        "nvram_template": "no-such-image"})
    assert response.status_code == 404, response.text
    assert "nvram_template" in response.json()["error"]
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
    ("/missing.qcow2", "404"),
    ("/page.qcow2", "html"),
    ("/noise.img", "not a disk image"),
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
    assert not any((cloud.image_cache_dir() / ".partial").iterdir())
    assert not list(cloud.image_cache_dir().glob("*.qcow2.*"))
    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted",
             30, "deleted")
