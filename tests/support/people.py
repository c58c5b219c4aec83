"""People, namespaces and tokens in a running test cloud, for tests of who
may do what.

Namespaces and keys are made through the API, as a user would. People and
their personal tokens have no API (they are made in the portal's pages), so
they are made here with one Django shell run against the cloud's database,
which also lets a test make a token that has already expired.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

import requests

from tests.support.cloud import Cloud

_SETUP = r"""
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from portal.accounts import keys
from portal.accounts.models import Membership, Namespace, PersonalToken

spec = json.loads(SPEC)
out = {"users": {}, "tokens": {}}
User = get_user_model()
for person in spec["people"]:
    user = User.objects.create_user(username=person["username"], password=person["password"])
    out["users"][person["username"]] = user.pk
    for ns, role in person.get("roles", {}).items():
        Membership.objects.create(user=user, namespace=Namespace.objects.get(name=ns), role=role)
for token in spec["tokens"]:
    user = User.objects.get(username=token["username"])
    secret = keys.new_personal_secret()
    PersonalToken.objects.create(
        user=user, name=token["name"], digest=keys.digest(secret), prefix=secret[:8],
        default_namespace=token.get("namespace", ""),
        expires=timezone.now() + timedelta(days=token.get("days", 1)))
    out["tokens"][token["name"]] = secret
print("RESULT " + json.dumps(out))
"""


def make_people(cloud: Cloud, people: list[dict], tokens: list[dict]) -> dict:
    """Create users (with roles) and personal tokens; returns their ids and secrets."""
    spec = json.dumps({"people": people, "tokens": tokens})
    code = f"SPEC = {spec!r}\n" + _SETUP
    result = cloud._manage("shell", "-c", code)
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def csrf_token(session: requests.Session, cloud: Cloud) -> str:
    token = session.cookies.get("csrftoken")
    if token is None:
        session.get(f"{cloud.url}/login/", timeout=10)
        token = session.cookies.get("csrftoken")
    assert token, "the portal set no CSRF cookie"
    return token


def log_in(cloud: Cloud, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{cloud.url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    response = session.post(f"{cloud.url}/login/", timeout=10, allow_redirects=False, data={
        "username": username, "password": password, "csrfmiddlewaretoken": token.group(1)})
    assert response.status_code == 302, f"log-in as {username} failed: {response.status_code}"
    return session


@dataclass
class Person:
    username: str
    password: str = field(default_factory=lambda: "pw-" + secrets.token_urlsafe(12))
    user_id: int = 0
    token: str = ""
    session: requests.Session | None = None
