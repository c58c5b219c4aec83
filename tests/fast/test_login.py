"""The web security around logging in and forms: forms need a CSRF token;
the session cookie is HttpOnly and SameSite=Lax (and Secure over HTTPS);
passwords are stored hashed with PBKDF2.

The rate limit shared by several portal processes, and the portal's log
holding no secret, take real processes: tests/integration/test_people.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

from django.contrib.auth import get_user_model
from django.test import override_settings

import portal.settings as production
from cloudstate.config import REPO_ROOT
from tests.support.inprocess import InProcessPortal, Person


def test_forms_need_a_csrf_token(portal: InProcessPortal, admin: Person) -> None:
    response = admin.browser.post("/manage/namespaces/", {"name": "csrf-team"}, csrf=False)
    assert response.status_code == 403
    assert portal.api().get("/auth/namespaces/csrf-team").status_code == 404


def test_session_cookie_settings(portal: InProcessPortal, alice: Person) -> None:
    login = portal.browser().log_in(alice.username, alice.password)
    assert login.status_code == 302
    cookie = login.cookies["sfcloud_session"].OutputString()
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Served over HTTPS, the cookies are marked Secure.
    script = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
              "s.CSRF_COOKIE_SECURE, s.PASSWORD_HASHERS[0])")
    environment = {name: value for name, value in os.environ.items()
                   if name != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
                            env={**environment, "SFCLOUD_HTTPS": "1"}, cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == [
        "True", "True", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    # Stored with the portal's own hasher (the fast tier hashes quickly instead).
    with override_settings(PASSWORD_HASHERS=production.PASSWORD_HASHERS):
        stored = get_user_model().objects.create_user("hashed", password=alice.password)
    assert stored.password.startswith("pbkdf2_sha256$")
    assert alice.password not in stored.password
