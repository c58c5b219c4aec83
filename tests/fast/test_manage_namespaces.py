"""A namespace's admin on the namespace pages (manage/namespaces/): they
manage their own namespace's members and keys, and nobody else's.

That a key made here works with Shaken Fist's own client is tried in
tests/integration/test_people.py.
"""

from __future__ import annotations

import re

from tests.fast.conftest import OTHER, TEAM
from tests.support.inprocess import InProcessPortal, Person


def test_namespace_admin_manages_own_namespace_only(
        portal: InProcessPortal, bob: Person, viewer: Person) -> None:
    added = bob.browser.post(f"/manage/namespaces/{OTHER}/members/",
                             {"username": viewer.username, "role": "member"}, htmx=True)
    assert added.status_code == 200 and viewer.username in added.text
    bad_role = bob.browser.post(f"/manage/namespaces/{OTHER}/members/",
                                {"username": viewer.username, "role": "owner"}, htmx=True)
    assert bad_role.status_code == 400
    unknown = bob.browser.post(f"/manage/namespaces/{OTHER}/members/",
                               {"username": "nobody-" + OTHER, "role": "member"}, htmx=True)
    # Beside the field it is about, with what was typed kept.
    assert unknown.status_code == 400
    assert re.search(r'id="id_username_error"[^>]*><li>There is no user named nobody-other',
                     unknown.text), unknown.text
    assert 'value="nobody-other"' in unknown.text
    # Another namespace is not theirs: not found, whatever they try.
    for path in (f"/manage/namespaces/{TEAM}/", f"/manage/namespaces/{TEAM}/members/"):
        assert bob.browser.get(path).status_code == 404
    assert bob.browser.post(f"/manage/namespaces/{TEAM}/members/",
                            {"username": bob.username, "role": "admin"}).status_code == 404
    # A key made on the page works at once.
    page = bob.browser.post(f"/manage/namespaces/{OTHER}/keys/", {"key_name": "deploy"})
    secret = re.search(r'data-copy="([^"]+)" aria-label="Copy the secret"', page.text).group(1)
    assert portal.api(OTHER, secret).get("/instances").status_code == 200
