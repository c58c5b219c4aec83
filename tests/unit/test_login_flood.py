"""A flood of failed and throttled log-ins, and of wrong current passwords in
the password form: refused, and counted on a bounded number of audit rows
(one per account or address and window), not one row per attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.utils import timezone

from cloudstate.settings import read
from portal.accounts.login import ThrottledAuthenticationForm, ThrottledPasswordChangeForm
from portal.accounts.models import AuditAction, AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

# The flood: 10,000 guesses under `make soak`; 1,000 in `make test` show the
# same bound (two rows, whatever the count) in a tenth of the time.
ATTEMPTS = 10_000 if read("SFCLOUD_SOAK") else 1_000


def _login(username: str, password: str, address: str) -> ThrottledAuthenticationForm:
    request = RequestFactory().post("/login/", REMOTE_ADDR=address)
    request.session = SessionStore()
    form = ThrottledAuthenticationForm(request, data={"username": username,
                                                      "password": password})
    form.is_valid()
    return form


@pytest.mark.stress
def test_thousands_of_throttled_logins_add_a_bounded_number_of_rows(settings) -> None:  # type: ignore[no-untyped-def]
    get_user_model().objects.create_user("victim", password="the-right-password-1")
    throttled = 0
    for number in range(ATTEMPTS):
        form = _login("victim", f"guess-{number}", "192.0.2.7")
        assert not form.is_valid()
        throttled += form.throttled
    # The account's limit stops the guessing; everything after is throttled.
    assert throttled == ATTEMPTS - settings.LOGIN_FAILURES_PER_USER
    rows = AuditEvent.objects.filter(action=AuditAction.LOGIN)
    assert rows.count() == 2, list(rows.values_list("outcome", "repeats"))
    refused = rows.get(outcome="refused")
    denied = rows.get(outcome="denied")
    assert refused.repeats == settings.LOGIN_FAILURES_PER_USER
    assert denied.repeats == throttled
    assert denied.object_name == "victim" and denied.last_at is not None
    # Even the right password is refused while throttled, and counted on the same row.
    assert _login("victim", "the-right-password-1", "192.0.2.7").throttled
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN).count() == 2


def test_spraying_accounts_from_one_address_is_bounded_too(settings) -> None:  # type: ignore[no-untyped-def]
    """Many usernames from one address: the address's limit throttles, and
    its throttled attempts share one row whatever name they try."""
    for number in range(500):
        _login(f"user{number}", "guess", "198.51.100.3")
    rows = AuditEvent.objects.filter(action=AuditAction.LOGIN)
    assert rows.filter(outcome="refused").count() == settings.LOGIN_FAILURES_PER_ADDRESS
    assert rows.filter(outcome="denied").count() == 1
    assert rows.get(outcome="denied").repeats == 500 - settings.LOGIN_FAILURES_PER_ADDRESS


def test_a_new_window_starts_a_new_row(settings) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        _login("nobody-here", "guess", "203.0.113.5")
    AuditEvent.objects.update(when=timezone.now() - timedelta(
        seconds=settings.LOGIN_FAILURE_WINDOW + 1))
    _login("nobody-here", "guess", "203.0.113.5")
    assert list(AuditEvent.objects.order_by("when").values_list("repeats", flat=True)) == [3, 1]


def test_the_password_form_is_throttled_like_a_login(settings) -> None:  # type: ignore[no-untyped-def]
    """With a stolen session, the current password can't be guessed through
    the password form either."""
    user = get_user_model().objects.create_user("owner", password="the-right-password-1")
    request = RequestFactory().post("/account/password/", REMOTE_ADDR="192.0.2.9")
    request.user = user

    def change(old: str) -> ThrottledPasswordChangeForm:
        form = ThrottledPasswordChangeForm(request, data={
            "old_password": old, "new_password1": "a-new-password-42",
            "new_password2": "a-new-password-42"})
        form.is_valid()
        return form

    results = [change(f"guess-{n}") for n in range(200)]
    assert not any(form.is_valid() for form in results)
    assert sum(form.throttled for form in results) == 200 - settings.LOGIN_FAILURES_PER_USER
    # Throttled, the right password is refused too, without being checked.
    assert change("the-right-password-1").throttled
    user.refresh_from_db()
    assert user.check_password("the-right-password-1")
    rows = AuditEvent.objects.filter(action=AuditAction.CHANGE_PASSWORD)
    assert sorted(rows.values_list("outcome", "repeats")) == [
        ("denied", 200 - settings.LOGIN_FAILURES_PER_USER + 1),
        ("refused", settings.LOGIN_FAILURES_PER_USER)]
