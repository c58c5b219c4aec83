"""The instances API: bad input gets a 4xx naming the problem and leaves
nothing in etcd; only the system namespace chooses a node; an instance of
another namespace is not found; operations on an instance are checked
before anything is asked of its node.

None of this needs a guest. That bad requests leave a real running guest
running is tried in tests/integration/test_operations_bad_input.py.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal

ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKu4Sb8bV0dSRiGSI7qHnHjYw5uCqbH5zN2q8cYbZ4bh "
           "bob@host")


def instance_keys(portal: InProcessPortal) -> list[str]:
    return portal.etcd_keys("instances/") + portal.etcd_keys("names/instances/")


def create_body(name: str, **extra: object) -> dict:
    return {"name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
            **extra}


def _ok(**extra: object) -> dict[str, object]:
    """A create body that is fine but for ``extra``."""
    return {"name": "ok", "cpus": 1, "memory": 256, "disk": [{"size": 1}], **extra}


@pytest.fixture
def running(portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> str:
    """An instance of the system namespace its node reports running."""
    response = portal.api().post("/instances", create_body("keepsgoing"))
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    agent.report_instance(uuid, state="created", power_state="on")
    return uuid


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
    # Metadata at create follows PUT's rules: 64 keys, 16 KiB, the key pattern.
    (_ok(metadata={f"k{n}": n for n in range(65)}), "at most 64 metadata keys"),
    (_ok(metadata={"big": "x" * 17000}), "larger than 16384 bytes"),
    (_ok(metadata={f"k{n}": "x" * 1000 for n in range(20)}), "16384 bytes in all"),
    (_ok(metadata={"a/b": 1}), "not a valid metadata key"),
    (_ok(metadata={"tags\n": 1}), "not a valid metadata key"),
    (_ok(metadata=["tags"]), "metadata: must be an object"),
    # video: a model from a fixed set, bounded memory.
    (_ok(video={"model": "x" * 1_000_000, "memory": 16384}), "video.model"),
    (_ok(video={"model": "cirrus", "memory": 10**9}), "video.memory"),
    (_ok(video={"model": "cirrus", "memory": "lots"}), "video.memory"),
    (_ok(video="cirrus"), "video: must be an object"),
    # Shaken Fist's buses, and its refusal of IDE.
    (_ok(disk=[{"size": 1, "bus": "ide"}]), "disk[0].bus: invalid disk bus ide"),
    (_ok(disk=[{"size": 1, "bus": "floppy"}]), "invalid disk bus floppy"),
    (_ok(disk=[{"size": 1, "type": "floppy"}]), "invalid disk type floppy"),
    (_ok(disk=[{"size": 1}, {"type": "cdrom", "base": "demo", "bus": "nvme"}]),
     "a cdrom can't be on nvme"),
    (_ok(secure_boot=True), "secure boot requires UEFI be enabled"),
    (_ok(uefi="maybe"), "uefi: must be true or false"),
])
def test_malformed_create_is_400_and_leaves_nothing(portal: InProcessPortal, agent: FakeAgent,
                                                    body: object, expected: str) -> None:
    before = instance_keys(portal)
    api = portal.api()
    if isinstance(body, str):
        response = api.raw("POST", "/instances", body,
                           headers={"Authorization": f"Bearer {api.token}"})
    else:
        response = api.post("/instances", body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status"] == 400
    assert expected in error["error"]
    assert instance_keys(portal) == before


def test_video_keeps_only_its_model_and_memory(portal: InProcessPortal,
                                                agent: FakeAgent) -> None:
    """Keys video does not have are dropped, not mirrored into every agent."""
    response = portal.api().post("/instances", _ok(
        name="video-extra", video={"model": "vga", "memory": 32768, "junk": "x" * 500_000}))
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    spec = portal.etcd_call(lambda etcd: etcd.get(portal.keys.instance(uuid)))
    assert len(spec.value) < 10_000
    assert json.loads(spec.value)["video"] == {"model": "vga", "memory": 32768}


def test_only_the_system_namespace_may_choose_a_node(portal: InProcessPortal,
                                                     agent: FakeAgent) -> None:
    """placed_on pins a node and, by its errors, tells which nodes exist: an
    operator's tool. Any other namespace gets a 403 for any node name."""
    team = portal.make_namespace("placer")
    before = instance_keys(portal)
    for node in (agent.node, "no-such-node"):
        response = team.post("/instances", _ok(name="pinned", placed_on=node))
        assert response.status_code == 403, response.text
        assert "placed_on" in response.json()["error"]
        assert node not in response.json()["error"]
    assert instance_keys(portal) == before
    # The system namespace still may: a node that is not there is named as such...
    response = portal.api().post("/instances", _ok(name="pinned", placed_on="no-such-node"))
    assert response.status_code != 403 and "no-such-node" in response.text
    # ...and one that is gets the instance.
    response = portal.api().post("/instances", _ok(name="pinned", placed_on=agent.node))
    assert response.status_code == 200, response.text
    spec = portal.etcd_call(lambda etcd: etcd.get(portal.keys.instance(response.json()["uuid"])))
    assert json.loads(spec.value)["node"] == agent.node


def test_unauthenticated_and_garbage_tokens_are_401(portal: InProcessPortal) -> None:
    assert portal.api_with_token("").raw("GET", "/instances").status_code == 401
    response = portal.api_with_token("garbage").get("/instances")
    assert response.status_code == 401
    assert response.json() == {"error": "invalid token", "status": 401}
    response = portal.api_with_token("").raw(
        "POST", "/auth", '{"namespace": "system", "key": "wrong-key-here"}')
    assert response.status_code == 401


def test_duplicate_names_are_allowed_and_a_name_naming_two_is_400(
        portal: InProcessPortal, agent: FakeAgent) -> None:
    # As in Shaken Fist: instances are told apart by UUID.
    api = portal.api()
    body = {"name": "twin", "cpus": 1, "memory": 128, "disk": [{"size": 1}]}
    first = api.post("/instances", body)
    second = api.post("/instances", body)
    assert (first.status_code, second.status_code) == (200, 200), second.text
    uuids = [first.json()["uuid"], second.json()["uuid"]]
    assert uuids[0] != uuids[1]
    ambiguous = api.get("/instances/twin")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"] == \
        'multiple instances have the name "twin" in namespace "system": use the UUID'
    for uuid in uuids:
        assert api.delete(f"/instances/{uuid}").status_code == 200
        agent.tear_down_instance(uuid)
        assert api.get(f"/instances/{uuid}").json()["state"] == "deleted"


def test_a_missing_nvram_template_is_404(portal: InProcessPortal, agent: FakeAgent) -> None:
    before = instance_keys(portal)
    response = portal.api().post("/instances", _ok(name="nvram", uefi=True,
                                                   nvram_template="no-such-image"))
    assert response.status_code == 404, response.text
    assert "nvram_template" in response.json()["error"]
    assert instance_keys(portal) == before


@pytest.mark.parametrize("base", ["nosuchimage", "label:nosuchlabel",
                                  "sf://blob/0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0aff"])
def test_a_missing_image_is_404_and_leaves_nothing(portal: InProcessPortal, agent: FakeAgent,
                                                   base: str) -> None:
    before = instance_keys(portal)
    response = portal.api().post("/instances", {"name": "ok", "cpus": 1, "memory": 256,
                                                "disk": [{"size": 1, "base": base}]})
    assert response.status_code == 404, response.text
    assert "not found" in response.json()["error"] or "no artifact" in response.json()["error"]
    assert instance_keys(portal) == before


def test_instance_from_a_refused_url_is_400(portal: InProcessPortal, agent: FakeAgent) -> None:
    before = portal.etcd_keys("instances/")
    response = portal.api().post("/instances", {
        "name": "ssrf", "cpus": 1, "memory": 128,
        "disk": [{"size": 1, "base": "http://169.254.169.254/latest/user-data"}]})
    assert response.status_code == 400
    assert "base: refusing to fetch from 169.254.169.254" in response.json()["error"]
    assert portal.etcd_keys("instances/") == before


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
def test_invalid_ssh_keys(portal: InProcessPortal, agent: FakeAgent, demo_image: str, key: str,
                          words: str) -> None:
    before = portal.etcd_keys("instances/") + portal.etcd_keys("keypairs/")
    response = portal.api().post("/instances", create_body("badkey", ssh_key=key))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("ssh_key: ") and words in response.json()["error"]
    response = portal.api().post("/keypairs", {"name": "badkey", "public_key": key})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert portal.etcd_keys("instances/") + portal.etcd_keys("keypairs/") == before


@pytest.mark.parametrize("user_data,words", [
    ("not base64 at all!", "not valid base64"),
    (base64.b64encode(b"x" * (64 * 1024 + 1)).decode(), "the limit is 65536"),
    (12345, "must be base64 text"),
])
def test_invalid_user_data(portal: InProcessPortal, agent: FakeAgent, demo_image: str,
                           user_data: object, words: str) -> None:
    before = portal.etcd_keys("instances/")
    response = portal.api().post("/instances", create_body("baddata", user_data=user_data))
    assert response.status_code == 400, response.text
    assert "user_data" in response.json()["error"] and words in response.json()["error"]
    assert portal.etcd_keys("instances/") == before


def test_bad_keypairs_are_400(portal: InProcessPortal, agent: FakeAgent,
                              demo_image: str) -> None:
    api = portal.api()
    before = portal.etcd_keys("keypairs/") + portal.etcd_keys("instances/")
    for body, status, words in (
        ({"name": "bad name", "public_key": ED25519}, 400, "not a valid keypair name"),
        ({"name": "ok"}, 400, "no key given"),
    ):
        response = api.post("/keypairs", body)
        assert response.status_code == status and words in response.json()["error"]
    both = api.post("/instances", create_body("both", ssh_key=ED25519, keypair="x"))
    assert both.status_code == 400
    assert portal.etcd_keys("keypairs/") + portal.etcd_keys("instances/") == before


def test_bad_metadata_and_actions_are_refused_and_change_nothing(
        portal: InProcessPortal, running: str) -> None:
    api, uuid = portal.api(), running
    assert api.put(f"/instances/{uuid}/metadata/colour", {"value": "red"}).status_code == 200
    for path, body, status, words in (
        ("-dash", {"value": 1}, 400, "not a valid metadata key"),
        ("big", {"value": "x" * 20000}, 400, "larger than"),
    ):
        response = api.put(f"/instances/{uuid}/metadata/{path}", body)
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
    # None of that asked anything of the instance's node.
    shown = api.get(f"/instances/{uuid}").json()
    assert shown["power_state"] == "on"
    events = [e["message"] for e in api.get(f"/instances/{uuid}/events").json()]
    assert not any("requested" in message for message in events), events


def test_other_namespaces_see_nothing_of_an_instance_or_keypair(
        portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> None:
    api = portal.api()
    assert api.post("/keypairs", {"name": "secret-key", "public_key": ED25519}).status_code == 200
    uuid = api.post("/instances", create_body("hidden")).json()["uuid"]
    other = portal.make_namespace("opsother")
    for method, path, body in (
        ("GET", f"/instances/{uuid}/events", None),
        ("GET", f"/instances/{uuid}/snapshot", None),
        ("POST", f"/instances/{uuid}/snapshot", {"all": True}),
        ("PUT", f"/instances/{uuid}/metadata/x", {"value": 1}),
        ("DELETE", f"/instances/{uuid}/metadata/x", None),
        ("POST", f"/instances/{uuid}/reboothard", None),
        ("POST", f"/instances/{uuid}/poweroff", None),
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
    assert api.delete(f"/instances/{uuid}").status_code == 200
