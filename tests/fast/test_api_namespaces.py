"""Namespaces and keys through the API: refusals that name what remains,
bad input that is a clear 4xx and leaves nothing, key conflicts and garbage
tokens.

What Shaken Fist's own client (a real process) does with them is tried in
tests/integration/test_namespaces_api.py.
"""

from __future__ import annotations

import secrets

import pytest

from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal
from tests.support.objects import put_instance


def test_delete_refusals_name_what_remains(portal: InProcessPortal, agent: FakeAgent) -> None:
    api = portal.api()
    response = api.delete("/auth/namespaces/system")
    assert response.status_code == 403
    assert response.json()["error"] == "the system namespace cannot be deleted"

    ns = f"busy-{secrets.token_hex(3)}"
    assert api.post("/auth/namespaces", {"namespace": ns}).status_code == 200
    # An instance that can't be placed anywhere still belongs to the namespace:
    # write one directly, for a node that does not exist.
    uuid = put_instance(portal, ns, "leftover")
    response = api.delete(f"/auth/namespaces/{ns}")
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"namespace {ns} still owns instances: leftover: delete them first")
    # Refused means untouched: still there, still accepting objects.
    assert api.get(f"/auth/namespaces/{ns}").json()["state"] == "created"

    assert api.delete(f"/instances/{uuid}").status_code == 200
    # Deleting is not gone: the instance is torn down by its node first.
    assert api.delete(f"/auth/namespaces/{ns}").status_code == 400
    agent.tear_down_instance(uuid)
    assert api.delete(f"/auth/namespaces/{ns}").status_code == 200


@pytest.mark.parametrize("body,status,message", [
    ({"namespace": "Bad Name"}, 400, "not a valid namespace name"),
    ({"namespace": ""}, 400, "not a valid namespace name"),
    ({"namespace": 7}, 400, "not a valid namespace name"),
    ({"namespace": "system"}, 409, "already exists"),
    ({"namespace": "withkey-x", "key_name": "k", "key": "fifteen-chars-x"}, 400,
     "at least 16"),
])
def test_bad_namespace_input(portal: InProcessPortal, body: dict, status: int,
                             message: str) -> None:
    response = portal.api().post("/auth/namespaces", body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    # Nothing half-made: a refused create with a bad key leaves no namespace.
    assert portal.api().get("/auth/namespaces/withkey-x").status_code == 404


def test_key_conflicts_and_garbage(portal: InProcessPortal) -> None:
    api = portal.api()
    ns = f"keys-{secrets.token_hex(3)}"
    assert api.post("/auth/namespaces", {"namespace": ns}).status_code == 200
    secret = secrets.token_urlsafe(16)
    assert api.post(f"/auth/namespaces/{ns}/keys",
                    {"key_name": "a", "key": secret}).json() == "a"
    dup = api.post(f"/auth/namespaces/{ns}/keys", {"key_name": "a", "key": "another-secret-key"})
    assert dup.status_code == 409 and "already has a key named a" in dup.json()["error"]
    same = api.post(f"/auth/namespaces/{ns}/keys", {"key_name": "b", "key": secret})
    assert same.status_code == 409
    assert same.json()["error"] == f"another key of namespace {ns} already has that secret"
    missing = api.put(f"/auth/namespaces/{ns}/keys/nope", {"key": "long-enough-secret"})
    assert missing.status_code == 404
    assert api.delete(f"/auth/namespaces/{ns}/keys/nope").status_code == 404
    assert api.get("/auth/namespaces/no-such-ns").status_code == 404
    for garbage in ("x", "a" * 4000, "sfp_nothing", "Zm9v.YmFy:baz"):
        response = portal.api_with_token(garbage).get("/auth/namespaces")
        assert response.status_code == 401, garbage
    assert api.delete(f"/auth/namespaces/{ns}").status_code == 200
