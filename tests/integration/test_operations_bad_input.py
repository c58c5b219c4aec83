"""Bad input to instance operations: a clear 4xx naming the problem, nothing
half-made in etcd, and the instance keeps running."""

from __future__ import annotations

import base64

import pytest

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration

ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKu4Sb8bV0dSRiGSI7qHnHjYw5uCqbH5zN2q8cYbZ4bh "
           "bob@host")


def create_body(name: str, **extra: object) -> dict:
    return {"name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
            **extra}


@pytest.mark.parametrize("key,words", [
    ("ssh-ed25519", "not an ssh public key"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP== x", "not a key type we accept"),
    ("ssh-ed25519 !!!notbase64!!! x", "not valid base64"),
    ("ssh-rsa " + ED25519.split()[1] + " x", "body is a ssh-ed25519 key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAA3h5eg== x", "32 bytes"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----",
     "private key"),
    (ED25519 + "\n" + ED25519, "exactly one key"),
])
def test_invalid_ssh_keys(cloud: Cloud, key: str, words: str) -> None:
    before = cloud.etcd_keys("instances/") + cloud.etcd_keys("keypairs/")
    response = cloud.api().post("/instances", create_body("badkey", ssh_key=key))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("ssh_key: ") and words in response.json()["error"]
    response = cloud.api().post("/keypairs", {"name": "badkey", "public_key": key})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert cloud.etcd_keys("instances/") + cloud.etcd_keys("keypairs/") == before


@pytest.mark.parametrize("user_data,words", [
    ("not base64 at all!", "not valid base64"),
    (base64.b64encode(b"x" * (64 * 1024 + 1)).decode(), "the limit is 65536"),
    (12345, "must be base64 text"),
])
def test_invalid_user_data(cloud: Cloud, user_data: object, words: str) -> None:
    before = cloud.etcd_keys("instances/")
    response = cloud.api().post("/instances", create_body("baddata", user_data=user_data))
    assert response.status_code == 400, response.text
    assert "user_data" in response.json()["error"] and words in response.json()["error"]
    assert cloud.etcd_keys("instances/") == before


def test_bad_keypairs_metadata_and_actions_leave_the_instance_running(cloud: Cloud) -> None:
    api = cloud.api()
    for body, status, words in (
        ({"name": "bad name", "public_key": ED25519}, 400, "not a valid keypair name"),
        ({"name": "ok"}, 400, "no key given"),
    ):
        response = api.post("/keypairs", body)
        assert response.status_code == status and words in response.json()["error"]
    both = api.post("/instances", create_body("both", ssh_key=ED25519, keypair="x"))
    assert both.status_code == 400

    uuid = api.post("/instances", create_body("keepsgoing")).json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    assert api.request("PUT", f"/instances/{uuid}/metadata/colour", {"value": "red"}) \
        .status_code == 200
    for path, body, status, words in (
        ("-dash", {"value": 1}, 400, "not a valid metadata key"),
        ("big", {"value": "x" * 20000}, 400, "larger than"),
    ):
        response = api.request("PUT", f"/instances/{uuid}/metadata/{path}", body)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]
    missing = api.delete(f"/instances/{uuid}/metadata/nothere")
    assert missing.status_code == 404 and "no metadata key" in missing.json()["error"]
    assert api.get(f"/instances/{uuid}/metadata").json() == {"colour": "red"}
    assert api.delete(f"/instances/{uuid}/metadata/colour").json() is None
    assert api.get(f"/instances/{uuid}/metadata").json() == {}

    unknown = api.post(f"/instances/{uuid}/snapshot", {"device": "sdz"})
    assert unknown.status_code == 400
    assert api.post("/instances/nosuchinstance/pause").status_code == 404
    assert api.post(f"/instances/{uuid}/unpause").status_code == 409
    # None of that touched the guest.
    assert api.get(f"/instances/{uuid}").json()["power_state"] == "on"
    assert cloud.domains()[uuid] == 1
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")


def test_other_namespaces_see_nothing_of_an_instance_or_keypair(cloud: Cloud) -> None:
    api = cloud.api()
    assert api.post("/keypairs", {"name": "secret-key", "public_key": ED25519}).status_code == 200
    uuid = api.post("/instances", create_body("hidden")).json()["uuid"]
    other = cloud.make_namespace("opsother")
    for method, path, body in (
        ("GET", f"/instances/{uuid}/events", None),
        ("GET", f"/instances/{uuid}/snapshot", None),
        ("POST", f"/instances/{uuid}/snapshot", {"all": True}),
        ("PUT", f"/instances/{uuid}/metadata/x", {"value": 1}),
        ("DELETE", f"/instances/{uuid}/metadata/x", None),
        ("POST", f"/instances/{uuid}/reboothard", None),
        ("GET", "/keypairs/secret-key", None),
        ("DELETE", "/keypairs/secret-key", None),
    ):
        assert other.request(method, path, body).status_code == 404, (method, path)
    assert other.get("/keypairs").json() == []
    # ...and its own keypair of the same name is a different one.
    assert other.post("/keypairs", {"name": "secret-key", "public_key": ED25519}) \
        .status_code == 200
    both = [k for k in api.get("/keypairs").json() if k["name"] == "secret-key"]
    assert sorted(k["namespace"] for k in both) == ["opsother", "system"]
    ambiguous = api.get("/keypairs/secret-key")  # the system namespace sees both
    assert ambiguous.status_code == 400 and "use the UUID" in ambiguous.json()["error"]
    assert other.request("GET", "/nodes/x/events").status_code == 403
    for keypair in both:
        assert api.delete(f"/keypairs/{keypair['uuid']}").status_code == 200
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")
