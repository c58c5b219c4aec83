"""People in a running cloud, where it takes real processes: Shaken Fist's
client with personal tokens and page-made keys, the log-in rate limit shared
by several portal processes, and no secret in the portal's log.

Everything else about people (tokens, roles, live lists, access changes,
the admin pages, the audit trail, CSRF and cookies) is tried in process,
under tests/fast/."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from cloudstate.config import REPO_ROOT
from tests.support.cloud import Cloud, free_port, wait_for
from tests.support.objects import put_instance
from tests.support.people import csrf_token, log_in, make_people

pytestmark = pytest.mark.integration


@dataclass
class Team:
    cloud: Cloud
    a: str
    b: str
    names: dict[str, str]  # role -> username
    passwords: dict[str, str]
    users: dict[str, int]

    def session(self, who: str) -> requests.Session:
        return log_in(self.cloud, self.names[who], self.passwords[who])


@pytest.fixture
def team(cloud: Cloud) -> Team:
    suffix = secrets.token_hex(3)
    a, b = f"pa-{suffix}", f"pb-{suffix}"
    for ns in (a, b):
        assert cloud.api().post("/auth/namespaces", {"namespace": ns}).status_code == 200
    roles = {"member": {a: "member"}, "viewer": {a: "viewer"}, "badmin": {b: "admin"},
             "sys": {"system": "admin"}}
    names = {who: f"{who}-{suffix}" for who in roles}
    passwords = {who: "pw-" + secrets.token_urlsafe(12) for who in roles}
    made = make_people(cloud, [{"username": names[w], "password": passwords[w],
                                "roles": roles[w]} for w in roles], [])
    return Team(cloud, a, b, names, passwords,
                {who: made["users"][names[who]] for who in roles})


def post(cloud: Cloud, session: requests.Session, path: str, data: dict,
         htmx: bool = False) -> requests.Response:
    headers = {"X-CSRFToken": csrf_token(session, cloud)}
    if htmx:
        headers["HX-Request"] = "true"
    return session.post(f"{cloud.url}{path}", data=data, headers=headers, timeout=30,
                        allow_redirects=False)


def new_token(cloud: Cloud, session: requests.Session, name: str, namespace: str = "") -> str:
    page = post(cloud, session, "/account/tokens/",
                {"name": name, "days": "7", "namespace": namespace})
    assert page.status_code == 200, page.text[:500]
    found = re.search(r'data-copy="(sfp_[^"]+)"', page.text)
    assert found, "the new token is not shown on the page"
    return found.group(1)


def bearer(cloud: Cloud, method: str, path: str, token: str, body: dict | None = None
           ) -> requests.Response:
    return requests.request(method, f"{cloud.api_url}{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


# --- Shaken Fist's client ----------------------------------------------------------------


def test_sf_client_takes_personal_tokens_and_keys_made_on_the_pages(team: Team) -> None:
    """What tokens and keys may do is tried in process (tests/fast/
    test_account_tokens.py, test_manage_namespaces.py); here, that Shaken
    Fist's own client takes them."""
    cloud = team.cloud
    member_token = new_token(cloud, team.session("member"), "laptop", team.a)
    put_instance(cloud, team.a, "tok-a")
    # A personal token as the client's key, for a namespace the person belongs to...
    assert "tok-a" in cloud.sf("instance", "list", namespace=team.a, key=member_token).stdout
    # ...and nowhere else.
    other = cloud.sf("instance", "list", namespace=team.b, key=member_token, check=False)
    assert other.returncode != 0 and "Not authenticated" in other.stdout + other.stderr
    # A key made on a namespace's page works at once.
    page = post(cloud, team.session("badmin"), f"/manage/namespaces/{team.b}/keys/",
                {"key_name": "deploy"})
    secret = re.search(r'data-copy="([^"]+)" aria-label="Copy the secret"', page.text).group(1)
    assert cloud.sf("instance", "list", namespace=team.b, key=secret).returncode == 0


# --- several portal processes, and the portal's log -----------------------------------------


@pytest.fixture
def second_portal(cloud: Cloud) -> Iterator[str]:
    """Another portal process on the same database, as in a deployment with several."""
    port = free_port()
    env = {**cloud.env, "SFCLOUD_PORTAL_ADDRESS": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--lifespan", "on", "--ws-per-message-deflate", "false"],
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 30, "the second portal to answer")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/login/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _try_login(url: str, username: str, password: str) -> requests.Response:
    session = requests.Session()
    page = session.get(f"{url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return session.post(f"{url}/login/", allow_redirects=False, timeout=10, data={
        "username": username, "password": password, "csrfmiddlewaretoken": token})


def test_login_rate_limit_holds_across_portal_processes(team: Team, second_portal: str) -> None:
    cloud, username = team.cloud, team.names["viewer"]
    for url in (cloud.url, second_portal, cloud.url, second_portal, cloud.url):
        wrong = _try_login(url, username, "wrong-password")
        assert wrong.status_code == 200 and "Please enter a correct username" in wrong.text
    # The sixth attempt is refused before the password is even checked: the
    # right password too, on either process, with a message saying when.
    for url in (second_portal, cloud.url):
        refused = _try_login(url, username, team.passwords["viewer"])
        assert refused.status_code == 429
        assert "Too many failed attempts for this account. Try again in 15 minutes." \
            in refused.text
    # Other accounts from the same address are not locked yet.
    assert _try_login(cloud.url, team.names["member"],
                      team.passwords["member"]).status_code == 302


def test_secrets_never_reach_the_logs(team: Team) -> None:
    cloud = team.cloud
    admin = team.session("sys")
    password = "pw-" + secrets.token_urlsafe(12)
    created = post(cloud, admin, "/manage/people/", {
        "username": "logged-" + team.a, "password": password, "namespace": team.a,
        "role": "member"})
    assert created.status_code == 302
    person = log_in(cloud, "logged-" + team.a, password)
    token = new_token(cloud, person, "secretive", team.a)
    key = secrets.token_urlsafe(16)
    cloud.sf("namespace", "add-key", team.a, "quiet", key)
    exchanged = requests.post(f"{cloud.api_url}/auth", timeout=10,
                              json={"namespace": team.a, "key": key}).json()["access_token"]
    assert bearer(cloud, "GET", "/instances", exchanged).status_code == 200
    assert bearer(cloud, "GET", "/instances", token).status_code == 200
    _try_login(cloud.url, "logged-" + team.a, password + "x")  # a failure is logged too
    log = cloud.log_text("portal")
    assert "audit: " in log  # the log does hold what happened...
    for secret in (password, token, key, exchanged, cloud.system_key, cloud.admin_password):
        assert secret not in log  # ...and none of the secrets
