"""The admin's people pages (manage/people/): disabling a person ends their
sessions and tokens at once; a generated password is shown once and works.
"""

from __future__ import annotations

import re

from tests.fast.conftest import OTHER, TEAM
from tests.support.inprocess import InProcessPortal, Person


def test_disabling_a_person_ends_sessions_and_tokens(
        portal: InProcessPortal, alice: Person, admin: Person) -> None:
    token = portal.api_with_token(alice.token(TEAM, name="ci"))
    assert token.get("/instances").status_code == 200
    done = admin.browser.post(f"/manage/people/{alice.user_id}/active/", {"active": "0"})
    assert done.status_code == 302
    assert token.get("/instances").json()["error"] == \
        "the account this token belongs to is disabled"
    page = alice.browser.get("/instances/")
    assert page.status_code == 302 and "/login/" in page.headers["Location"]
    # The admin can't lock themselves out.
    self_disable = admin.browser.post(f"/manage/people/{admin.user_id}/active/",
                                      {"active": "0"})
    assert self_disable.status_code == 302
    again = portal.browser()
    assert again.log_in(admin.username, admin.password).status_code == 302
    assert again.get("/instances/").status_code == 200


def test_generated_passwords_are_shown_once_and_work(
        portal: InProcessPortal, bob: Person, admin: Person) -> None:
    username = "gen-" + TEAM
    created = admin.browser.post("/manage/people/", {
        "username": username, "password": "", "namespace": OTHER, "role": "viewer"})
    assert created.status_code == 200
    password = re.search(r'data-copy="([^"]+)" aria-label="Copy the password"',
                         created.text).group(1)
    assert not any(password in morsel.OutputString() for morsel in created.cookies.values())
    user_id = re.search(r"/manage/people/(\d+)/active/", created.text).group(1)
    assert password not in admin.browser.get(f"/manage/people/{user_id}/").text
    person = portal.browser()
    assert person.log_in(username, password).status_code == 302
    assert OTHER in person.get("/instances/").text
    # A reset ends their session and the new password works instead.
    reset = admin.browser.post(f"/manage/people/{user_id}/password/", {})
    new_password = re.search(r'data-copy="([^"]+)" aria-label="Copy the password"',
                             reset.text).group(1)
    assert new_password != password
    gone = person.get("/instances/")
    assert gone.status_code == 302 and "/login/" in gone.headers["Location"]
    assert portal.browser().log_in(username, new_password).status_code == 302
