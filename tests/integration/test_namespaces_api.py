"""Namespaces and keys through Shaken Fist's own client (a real process, so a
real portal): create, list, add/update/delete keys, delete; a key's tokens
end the moment the key is deleted or given a new secret; refusals reach the
client; its delete-all must name a namespace. And, from real sockets on
several addresses, wrong keys for one namespace meet that namespace's limit.

Refusals, bad input and key conflicts through the API are tried in
process: tests/fast/test_api_namespaces.py."""

from __future__ import annotations

import json
import secrets

import pytest
import requests

from tests.support.cloud import Cloud

pytestmark = pytest.mark.integration


def token_for(cloud: Cloud, namespace: str, key: str) -> str:
    response = requests.post(f"{cloud.api_url}/auth", timeout=10,
                             json={"namespace": namespace, "key": key})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def get(cloud: Cloud, path: str, token: str) -> requests.Response:
    return requests.get(f"{cloud.api_url}{path}", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def test_sf_client_namespace_create_list_keys_delete(cloud: Cloud) -> None:
    ns = f"team-{secrets.token_hex(3)}"
    key = secrets.token_urlsafe(16)

    cloud.sf("namespace", "create", ns)
    listed = json.loads(cloud.sf("--json", "namespace", "list").stdout)
    mine = [n for n in listed if n["name"] == ns]
    assert mine and mine[0]["state"] == "created" and mine[0]["keys"] == []
    assert "system" in [n["name"] for n in listed]

    cloud.sf("namespace", "add-key", ns, "ci", key)
    shown = json.loads(cloud.sf("--json", "namespace", "show", ns).stdout)
    assert shown["keys"] == ["ci"]

    # The new key works with the client, and only sees its own namespace.
    own = json.loads(cloud.sf("--json", "namespace", "list", namespace=ns, key=key).stdout)
    assert [n["name"] for n in own] == [ns]
    assert cloud.sf("instance", "list", namespace=ns, key=key).returncode == 0

    # update-key sends PUT /keys (no key name in the path); the old secret stops working.
    token = token_for(cloud, ns, key)
    assert get(cloud, "/instances", token).status_code == 200
    new_key = secrets.token_urlsafe(16)
    cloud.sf("namespace", "update-key", ns, "ci", new_key)
    assert get(cloud, "/instances", token).status_code == 401
    old = cloud.sf("instance", "list", namespace=ns, key=key, check=False)
    assert old.returncode != 0 and "Not authenticated" in old.stdout + old.stderr
    assert cloud.sf("instance", "list", namespace=ns, key=new_key).returncode == 0

    # delete-key: a token issued a moment ago stops working at once.
    token = token_for(cloud, ns, new_key)
    assert get(cloud, "/instances", token).status_code == 200
    cloud.sf("namespace", "delete-key", ns, "ci")
    response = get(cloud, "/instances", token)
    assert response.status_code == 401
    assert "no longer exists" in response.json()["error"]
    after = cloud.sf("instance", "list", namespace=ns, key=new_key, check=False)
    assert after.returncode != 0

    cloud.sf("namespace", "set-metadata", ns, "owner", "ops")
    assert json.loads(cloud.sf("--json", "namespace", "show", ns).stdout)["metadata"] == {
        "owner": "ops"}

    cloud.sf("namespace", "delete", ns)
    listed = json.loads(cloud.sf("--json", "namespace", "list").stdout)
    assert ns not in [n["name"] for n in listed]
    assert cloud.api().get(f"/auth/namespaces/{ns}").status_code == 404


def test_sf_client_reports_delete_refusals(cloud: Cloud) -> None:
    """The refusals (tested in tests/fast/test_api_namespaces.py) reach
    Shaken Fist's client as failures that say why."""
    from tests.support.objects import mark_torn_down, put_instance

    refused = cloud.sf("namespace", "delete", "system", check=False)
    assert refused.returncode != 0
    ns = f"busy-{secrets.token_hex(3)}"
    assert cloud.api().post("/auth/namespaces", {"namespace": ns}).status_code == 200
    # An instance on a node that does not exist, so no guest boots.
    uuid = put_instance(cloud, ns, "leftover")
    by_client = cloud.sf("namespace", "delete", ns, check=False)
    assert by_client.returncode != 0
    assert "still owns instances: leftover" in by_client.stdout + by_client.stderr
    assert cloud.api().delete(f"/instances/{uuid}").status_code == 200
    mark_torn_down(cloud, uuid)
    assert cloud.api().delete(f"/auth/namespaces/{ns}").status_code == 200


GONE = ("delete-wait", "deleting", "deleted")


def test_system_key_without_a_namespace_deletes_nothing(cloud: Cloud) -> None:
    """`delete-all` with the system key (the README's own setup) and no
    --namespace would have deleted every namespace's objects: refused with
    a 400 as Shaken Fist does, and a named namespace loses only its own."""
    teams = [f"victim-{secrets.token_hex(3)}" for _ in range(2)]
    made = {}
    for team in teams:
        client = cloud.make_namespace(team)
        response = client.post("/networks", {"name": "keep", "netblock": "10.91.0.0/24",
                                             "provide_dhcp": False, "provide_nat": False})
        assert response.status_code == 200, response.text
        made[team] = response.json()["uuid"]
    try:
        for kind in ("network", "instance"):
            refused = cloud.sf(kind, "delete-all", "--confirm", check=False)
            assert refused.returncode != 0
            assert "must name the namespace" in refused.stdout + refused.stderr
        response = cloud.api().delete("/networks", {"confirm": True, "namespace": None})
        assert response.status_code == 400
        assert response.json()["error"].startswith("namespace:")
        for team, uuid in made.items():
            assert cloud.api().get(f"/networks/{uuid}").json()["state"] not in GONE, team
        # Naming one deletes that one's only.
        cloud.sf("network", "delete-all", "--confirm", "--namespace", teams[0])
        assert cloud.api().get(f"/networks/{made[teams[0]]}").json()["state"] in GONE
        assert cloud.api().get(f"/networks/{made[teams[1]]}").json()["state"] not in GONE
    finally:
        for uuid in made.values():
            cloud.api().delete(f"/networks/{uuid}")


def test_wrong_keys_from_many_addresses_are_limited_per_namespace(cloud: Cloud) -> None:
    """Each address stays under its own limit, so only the namespace's limit
    stops guesses spread over many addresses."""
    import http.client

    from tests.support.consoles import SecondPortal

    team = cloud.make_namespace(f"guessed-{secrets.token_hex(3)}")
    portal = SecondPortal(cloud, SFCLOUD_API_KEY_FAILURES_PER_NAMESPACE="6",
                          SFCLOUD_LOGIN_FAILURES_PER_ADDRESS="3")

    def auth(source: str, key: str, namespace: str = team.namespace) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request("POST", "/api/auth", json.dumps({"namespace": namespace,
                                                          "key": key}),
                         {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    try:
        for number in range(6):  # two wrong keys from each of three addresses
            assert auth(f"127.0.0.{2 + number // 2}", f"wrong-key-{number:08d}")[0] == 401
        status, body = auth("127.0.0.9", "wrong-key-from-a-new-address")
        assert status == 429 and "for this namespace" in body
        # While it lasts, the right key waits too: the price of the limit.
        assert auth("127.0.0.10", team.key)[0] == 429
        # Another namespace is not affected.
        assert auth("127.0.0.9", "x" * 20, namespace="system")[0] == 401
    finally:
        portal.stop()
