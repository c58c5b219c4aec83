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


def test_a_namespace_admin_trusts_another_namespace_from_the_page(bob: Person,
                                                                 alice: Person) -> None:
    # alice's fixture makes namespace team, the one trusted here.
    page = f"/manage/namespaces/{OTHER}/"
    shown = bob.browser.get(page)
    assert re.search(r"<title>[^<]*</title>", shown.text), "the title holds markup"
    assert shown.text.count('id="trust-h"') == 1
    unknown = bob.browser.post(page + "trust/", {"external_namespace": "nosuch"})
    # Beside the field, with what was typed kept.
    assert unknown.status_code == 400
    assert re.search(r'id="id_external_namespace_error"[^>]*><li>[^<]*nosuch', unknown.text), \
        unknown.text
    assert 'value="nosuch"' in unknown.text
    trusted = bob.browser.post(page + "trust/", {"external_namespace": TEAM})
    assert trusted.status_code == 302
    assert f'<tr id="trust-{TEAM}">' in bob.browser.get(page).text
    assert bob.browser.post(f"{page}trust/{TEAM}/remove/").status_code == 302
    assert f'<tr id="trust-{TEAM}">' not in bob.browser.get(page).text
