"""Personal tokens (account/tokens/): shown once, acting as their person
with their role, and ended at once by revoking them.

Shaken Fist's own client (a real process) with a personal token is tried in
tests/integration/test_people.py.
"""

from __future__ import annotations

import re

from tests.fast.conftest import OTHER, TEAM
from tests.support.inprocess import InProcessPortal, Person
from tests.support.objects import put_instance


def test_personal_tokens_act_as_their_person_with_their_role(
        portal: InProcessPortal, alice: Person, viewer: Person, bob: Person) -> None:
    member_token = alice.token(TEAM, name="laptop")
    viewer_token = viewer.token(TEAM, name="readonly")
    member, as_viewer = portal.api_with_token(member_token), portal.api_with_token(viewer_token)
    # Shown once: the list page never shows the secret again.
    assert member_token not in alice.browser.get("/account/tokens/").text

    in_a = put_instance(portal, TEAM, "tok-a")
    in_b = put_instance(portal, OTHER, "tok-b")
    listed = member.get("/instances").json()
    assert [i["uuid"] for i in listed] == [in_a]
    assert member.get(f"/instances/{in_b}").status_code == 404
    assert member.get("/instances/tok-b").status_code == 404

    # Viewer: reads, but every change is refused with a 403 naming the role.
    assert as_viewer.get(f"/instances/{in_a}").status_code == 200
    refused = as_viewer.delete(f"/instances/{in_a}")
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]
    assert as_viewer.post("/instances", {"name": "nope", "cpus": 1, "memory": 128,
                                         "disk": [{"size": 1}]}).status_code == 403
    assert as_viewer.post(f"/auth/namespaces/{TEAM}/keys",
                          {"key_name": "x", "key": "long-enough-key-ab"}).status_code == 403

    # Traded at /auth like a key, for a namespace the person belongs to and nowhere else.
    assert [i["name"] for i in portal.api(TEAM, member_token).get("/instances").json()] == [
        "tok-a"]
    elsewhere = portal.api_with_token("").raw(
        "POST", "/auth", f'{{"namespace": "{OTHER}", "key": "{member_token}"}}')
    assert elsewhere.status_code == 401
    assert member.delete(f"/instances/{in_a}").status_code == 200

    # Last used is shown; revoking ends it at once, on the API and through /auth.
    tokens_page = alice.browser.get("/account/tokens/").text
    assert re.search(r'data-label="Name">laptop</td>.*?ago</time>', tokens_page, re.S)
    token_id = re.search(r'<tr id="token-(\d+)">\s*<td[^>]*>laptop</td>', tokens_page).group(1)
    exchanged = portal.api(TEAM, member_token).token
    assert alice.browser.post(f"/account/tokens/{token_id}/revoke/").status_code == 302
    for credential in (member_token, exchanged):
        dead = portal.api_with_token(credential).get("/instances")
        assert dead.status_code == 401 and "revoked" in dead.json()["error"]
