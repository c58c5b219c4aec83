"""The admin's people pages (manage/people/): disabling a person ends their
sessions and tokens at once; a generated password is shown once and works.
"""

from __future__ import annotations

import html
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
    # The admin can't lock themselves out: the page says so where the button is.
    self_disable = admin.browser.post(f"/manage/people/{admin.user_id}/active/",
                                      {"active": "0"})
    assert self_disable.status_code == 400
    assert "You can&#x27;t disable your own account." in self_disable.text
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


def test_deleting_a_person_keeps_who_they_were_in_the_audit_trail(
        portal: InProcessPortal, alice: Person, admin: Person) -> None:
    token = portal.api_with_token(alice.token(TEAM, name="laptop"))
    page = admin.browser.get(f"/manage/people/{alice.user_id}/").text
    # Asked first, in a dialog that names them; disabling too, and neither beside the password.
    delete_dialog = page.split('id="delete-account"', 1)[1].split("</dialog>", 1)[0]
    assert "Delete alice?" in delete_dialog and "cannot be undone" in delete_dialog
    assert 'id="disable-account"' in page
    password_form = page.split('id="password-h"', 1)[1].split("</section>", 1)[0]
    assert "Disable" not in password_form and "Delete" not in password_form

    done = admin.browser.post(f"/manage/people/{alice.user_id}/delete/")
    assert done.status_code == 302 and done.headers["Location"] == "/manage/people/"
    listing = admin.browser.get("/manage/people/").text
    assert "alice is deleted" in listing  # the message, once
    assert "alice" not in listing.split('id="people"', 1)[1].split("</table>", 1)[0]
    # Gone everywhere at once: their session, their token.
    assert alice.browser.get("/instances/").status_code == 302
    assert token.get("/instances").status_code == 401
    # The trail still names them, and says which account it was and what it held.
    trail = admin.browser.get("/manage/audit/", {"object": "alice"}).text
    assert "delete" in trail and f"account {alice.user_id}, member of {TEAM}" in trail
    assert admin.browser.get("/manage/audit/", {"actor": "alice"}).text.count("<tr ") >= 1

    # Nobody deletes themselves, nor the last admin of the system namespace.
    refused = admin.browser.post(f"/manage/people/{admin.user_id}/delete/")
    assert refused.status_code == 400 and "delete your own account" in refused.text
    assert admin.browser.get(f"/manage/people/{admin.user_id}/").status_code == 200


def test_the_people_forms_show_every_problem_beside_its_field(
        portal: InProcessPortal, alice: Person, admin: Person) -> None:
    sent = {"username": "bad name!", "password": "short", "namespace": "", "role": "member"}
    page = admin.browser.post("/manage/people/", sent)
    assert page.status_code == 400
    assert re.search(r'id="id_username_error"[^>]*><li>"bad name!" is not a valid username',
                     html.unescape(page.text))
    assert re.search(r'id="id_password_error"[^>]*><li>This password is too short', page.text)
    assert 'value="bad name!"' in page.text  # kept (a password never is)
    assert 'class="errorlist nonfield"' not in page.text

    reset = admin.browser.post(f"/manage/people/{alice.user_id}/password/",
                               {"password": "alice"})
    assert reset.status_code == 400
    assert re.search(r'id="id_password_error"[^>]*><li>', reset.text)
