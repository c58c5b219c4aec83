"""People in a running cloud: personal tokens, roles in the API, the live
list showing only what each person may see, access changes taking effect
at once, the audit trail, and the web security around logging in."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

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


def socket(cloud: Cloud, session: requests.Session) -> ClientConnection:
    cookies = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    return connect(cloud.url.replace("http://", "ws://") + "/ws/instances/",
                   additional_headers={"Origin": cloud.url, "Cookie": cookies},
                   open_timeout=10, close_timeout=2)


def messages_until(ws: ClientConnection, marker: str, timeout: float = 20) -> list[str]:
    """Everything the socket delivers up to and including a message holding ``marker``."""
    seen = []
    while True:
        message = ws.recv(timeout=timeout)
        seen.append(message)
        if marker in message:
            return seen


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


# --- live state --------------------------------------------------------------------------------


def test_live_list_delivers_only_what_each_person_may_see(team: Team) -> None:
    cloud = team.cloud
    member, badmin, sysadmin = team.session("member"), team.session("badmin"), \
        team.session("sys")
    post(cloud, member, "/namespace/", {"namespace": team.a})
    post(cloud, badmin, "/namespace/", {"namespace": team.b})
    post(cloud, sysadmin, "/namespace/", {"namespace": "*"})  # All namespaces
    with socket(cloud, member) as ws_a, socket(cloud, badmin) as ws_b, \
            socket(cloud, sysadmin) as ws_all:
        for ws in (ws_a, ws_b, ws_all):
            assert 'id="instance-rows"' in ws.recv(timeout=10)
        in_a = put_instance(cloud, team.a, "live-a")
        in_b = put_instance(cloud, team.b, "live-b")
        assert any(in_a in m for m in messages_until(ws_a, in_a))
        everything = messages_until(ws_all, in_b)
        assert any(in_a in m for m in everything)
        # Everything's rows carry the namespace column.
        assert any(f"<td>{team.b}</td>" in m for m in everything)
        # B's admin got B's row, and nothing of A's before it or with it.
        assert not any(in_a in m for m in messages_until(ws_b, in_b))
        # ...nor after it: a later change in B is the next thing B sees.
        assert cloud.api().delete(f"/instances/{in_a}").status_code == 200
        marker = put_instance(cloud, team.b, "live-b2")
        assert not any(in_a in m for m in messages_until(ws_b, marker))


def test_losing_access_closes_the_live_socket_at_once(team: Team) -> None:
    cloud = team.cloud
    member, admin = team.session("member"), team.session("sys")
    in_a = put_instance(cloud, team.a, "watched")
    with socket(cloud, member) as ws:
        assert in_a in ws.recv(timeout=10)
        removed = post(cloud, admin,
                       f"/manage/namespaces/{team.a}/members/{team.users['member']}/remove/",
                       {}, htmx=True)
        assert removed.status_code == 200 and team.names["member"] not in removed.text
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    # Reconnecting works out again what they may see: now nothing.
    with socket(cloud, member) as ws:
        assert in_a not in ws.recv(timeout=10)
    page = member.get(f"{cloud.url}/instances/{in_a}/", timeout=10)
    assert page.status_code == 404


# --- personal tokens ----------------------------------------------------------------------------


def test_personal_tokens_act_as_their_person_with_their_role(team: Team) -> None:
    cloud = team.cloud
    member, viewer = team.session("member"), team.session("viewer")
    member_token = new_token(cloud, member, "laptop", team.a)
    viewer_token = new_token(cloud, viewer, "readonly", team.a)
    # Shown once: the list page never shows the secret again.
    assert member_token not in member.get(f"{cloud.url}/account/tokens/", timeout=10).text

    in_a = put_instance(cloud, team.a, "tok-a")
    in_b = put_instance(cloud, team.b, "tok-b")
    listed = bearer(cloud, "GET", "/instances", member_token).json()
    assert [i["uuid"] for i in listed] == [in_a]
    assert bearer(cloud, "GET", f"/instances/{in_b}", member_token).status_code == 404
    assert bearer(cloud, "GET", "/instances/tok-b", member_token).status_code == 404

    # Viewer: reads, but every change is refused with a 403 naming the role.
    assert bearer(cloud, "GET", f"/instances/{in_a}", viewer_token).status_code == 200
    refused = bearer(cloud, "DELETE", f"/instances/{in_a}", viewer_token)
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]
    assert bearer(cloud, "POST", "/instances", viewer_token,
                  {"name": "nope", "cpus": 1, "memory": 128, "disk": [{"size": 1}]}
                  ).status_code == 403
    assert bearer(cloud, "POST", f"/auth/namespaces/{team.a}/keys", viewer_token,
                  {"key_name": "x", "key": "long-enough-key-ab"}).status_code == 403

    # Shaken Fist's client takes a personal token as its key, for a namespace
    # the person belongs to, and nowhere else.
    assert "tok-a" in cloud.sf("instance", "list", namespace=team.a, key=member_token).stdout
    other = cloud.sf("instance", "list", namespace=team.b, key=member_token, check=False)
    assert other.returncode != 0 and "Not authenticated" in other.stdout + other.stderr
    assert bearer(cloud, "DELETE", f"/instances/{in_a}", member_token).status_code == 200

    # Last used is shown; revoking ends it at once, on the API and through /auth.
    tokens_page = member.get(f"{cloud.url}/account/tokens/", timeout=10).text
    assert re.search(r"<td>laptop</td>.*?ago</time>", tokens_page, re.S)
    token_id = re.search(r'<tr id="token-(\d+)">\s*<td>laptop</td>', tokens_page).group(1)
    exchanged = requests.post(f"{cloud.api_url}/auth", timeout=10, json={
        "namespace": team.a, "key": member_token}).json()["access_token"]
    assert post(cloud, member, f"/account/tokens/{token_id}/revoke/", {}).status_code == 302
    for credential in (member_token, exchanged):
        dead = bearer(cloud, "GET", "/instances", credential)
        assert dead.status_code == 401 and "revoked" in dead.json()["error"]


def test_disabling_a_person_ends_sessions_and_tokens(team: Team) -> None:
    cloud = team.cloud
    member, admin = team.session("member"), team.session("sys")
    token = new_token(cloud, member, "ci", team.a)
    assert bearer(cloud, "GET", "/instances", token).status_code == 200
    done = post(cloud, admin, f"/manage/people/{team.users['member']}/active/", {"active": "0"})
    assert done.status_code == 302
    assert bearer(cloud, "GET", "/instances", token).json()["error"] == \
        "the account this token belongs to is disabled"
    page = member.get(f"{cloud.url}/instances/", timeout=10, allow_redirects=False)
    assert page.status_code == 302 and "/login/" in page.headers["Location"]
    # The admin can't lock themselves out.
    self_disable = post(cloud, admin, f"/manage/people/{team.users['sys']}/active/",
                        {"active": "0"})
    assert self_disable.status_code == 302
    assert team.session("sys").get(f"{cloud.url}/instances/", timeout=10).status_code == 200


# --- admin pages and the audit trail -------------------------------------------------------------


def test_namespace_admin_manages_own_namespace_only(team: Team) -> None:
    cloud = team.cloud
    badmin = team.session("badmin")
    added = post(cloud, badmin, f"/manage/namespaces/{team.b}/members/",
                 {"username": team.names["viewer"], "role": "member"}, htmx=True)
    assert added.status_code == 200 and team.names["viewer"] in added.text
    bad_role = post(cloud, badmin, f"/manage/namespaces/{team.b}/members/",
                    {"username": team.names["viewer"], "role": "owner"}, htmx=True)
    assert bad_role.status_code == 400
    unknown = post(cloud, badmin, f"/manage/namespaces/{team.b}/members/",
                   {"username": "nobody-" + team.b, "role": "member"}, htmx=True)
    assert unknown.status_code == 400 and "there is no user named" in unknown.text
    # Another namespace is not theirs: not found, whatever they try.
    for path in (f"/manage/namespaces/{team.a}/", f"/manage/namespaces/{team.a}/members/"):
        assert badmin.get(f"{cloud.url}{path}", timeout=10).status_code == 404
    assert post(cloud, badmin, f"/manage/namespaces/{team.a}/members/",
                {"username": team.names["badmin"], "role": "admin"}).status_code == 404
    # A key made on the page works at once with Shaken Fist's client.
    page = post(cloud, badmin, f"/manage/namespaces/{team.b}/keys/", {"key_name": "deploy"})
    secret = re.search(r'data-copy="([^"]+)" aria-label="Copy the secret"', page.text).group(1)
    assert cloud.sf("instance", "list", namespace=team.b, key=secret).returncode == 0


def test_audit_trail_records_changes_and_filters(team: Team) -> None:
    cloud = team.cloud
    admin = team.session("sys")
    key = secrets.token_urlsafe(16)
    api = cloud.api()
    assert api.post(f"/auth/namespaces/{team.a}/keys", {"key_name": "audited", "key": key}
                    ).status_code == 200
    uuid = put_instance(cloud, team.a, "audited-vm")
    assert api.delete(f"/instances/{uuid}").status_code == 200
    assert api.delete(f"/auth/namespaces/{team.a}/keys/audited").status_code == 200
    assert api.delete("/auth/namespaces/system").status_code == 403
    viewer_token = new_token(cloud, team.session("viewer"), "v", team.a)
    assert bearer(cloud, "DELETE", f"/instances/{uuid}", viewer_token).status_code == 403

    def rows(**filters: str) -> list[str]:
        page = admin.get(f"{cloud.url}/manage/audit/", params=filters, timeout=10)
        assert page.status_code == 200
        body = page.text.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
        return [r for r in body.split("<tr")[1:] if "Nothing matches" not in r]

    mine = rows(namespace=team.a)
    assert len(mine) >= 5
    deleted = rows(namespace=team.a, action="delete", object=uuid)
    assert len(deleted) == 2  # the system key's, and the viewer's refused attempt
    assert any('data-outcome="denied"' in r and team.names["viewer"] in r for r in deleted)
    assert any('data-outcome="ok"' in r and "key system/admin" in r for r in deleted)
    assert len(rows(namespace=team.a, object="key", action="create")) == 1
    assert len(rows(actor=team.names["viewer"], namespace=team.a, outcome="denied")) == 1
    assert any("the system namespace cannot be deleted" in r
               for r in rows(namespace="system", action="delete", object="namespace"))
    assert rows(namespace=team.a, since="2000-01-01", until="2000-01-02") == []
    assert "127.0.0.1" in rows(namespace=team.a, action="delete", object=uuid)[0]
    # A namespace admin reads their own namespace's trail, nobody else's.
    badmin_view = team.session("badmin").get(f"{cloud.url}/manage/audit/",
                                             params={"namespace": team.a}, timeout=10)
    assert "audited-vm" not in badmin_view.text


# --- web security ---------------------------------------------------------------------------------


def test_forms_need_a_csrf_token(team: Team) -> None:
    cloud = team.cloud
    admin = team.session("sys")
    response = admin.post(f"{cloud.url}/manage/namespaces/", data={"name": "csrf-" + team.a},
                          timeout=10, allow_redirects=False)
    assert response.status_code == 403
    assert cloud.api().get(f"/auth/namespaces/csrf-{team.a}").status_code == 404


def test_session_cookie_settings(team: Team) -> None:
    session = requests.Session()
    session.get(f"{team.cloud.url}/login/", timeout=10)
    login = session.post(f"{team.cloud.url}/login/", allow_redirects=False, timeout=10, data={
        "username": team.names["member"], "password": team.passwords["member"],
        "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    cookie = next(c for c in login.raw.headers.getlist("Set-Cookie")
                  if c.startswith("sfcloud_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # Served over HTTPS, the cookies are marked Secure.
    script = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
              "s.CSRF_COOKIE_SECURE, s.PASSWORD_HASHERS[0])")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
                            env={**team.cloud.env, "SFCLOUD_HTTPS": "1"}, cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == [
        "True", "True", "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    stored = team.cloud._manage("shell", "-v", "0", "-c", (
        "from django.contrib.auth import get_user_model as g; "
        f"print(g().objects.get(username={team.names['member']!r}).password)")).stdout
    assert stored.startswith("pbkdf2_sha256$") and team.passwords["member"] not in stored


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


def test_generated_passwords_are_shown_once_and_work(team: Team) -> None:
    cloud = team.cloud
    admin = team.session("sys")
    username = "gen-" + team.a
    created = post(cloud, admin, "/manage/people/", {
        "username": username, "password": "", "namespace": team.b, "role": "viewer"})
    assert created.status_code == 200
    password = re.search(r'data-copy="([^"]+)" aria-label="Copy the password"',
                         created.text).group(1)
    assert not any(password in c for c in created.raw.headers.getlist("Set-Cookie"))
    user_id = re.search(r"/manage/people/(\d+)/active/", created.text).group(1)
    assert password not in admin.get(f"{cloud.url}/manage/people/{user_id}/", timeout=10).text
    person = log_in(cloud, username, password)
    assert team.b in person.get(f"{cloud.url}/instances/", timeout=10).text
    # A reset ends their session and the new password works instead.
    reset = post(cloud, admin, f"/manage/people/{user_id}/password/", {})
    new_password = re.search(r'data-copy="([^"]+)" aria-label="Copy the password"',
                             reset.text).group(1)
    assert new_password != password
    gone = person.get(f"{cloud.url}/instances/", timeout=10, allow_redirects=False)
    assert gone.status_code == 302 and "/login/" in gone.headers["Location"]
    log_in(cloud, username, new_password)


def test_all_namespaces_view_asks_where_to_create(team: Team) -> None:
    cloud = team.cloud
    sysadmin, member = team.session("sys"), team.session("member")
    post(cloud, sysadmin, "/namespace/", {"namespace": "*"})
    form = sysadmin.get(f"{cloud.url}/instances/new/", timeout=10).text
    assert 'name="namespace"' in form
    assert f'<option value="{team.a}"' in form and f'<option value="{team.b}"' in form
    listing = sysadmin.get(f"{cloud.url}/instances/", timeout=10).text
    assert "in all namespaces" in listing and '<th scope="col">Namespace</th>' in listing
    # "All namespaces" is for system members only: anyone else stays in their own.
    post(cloud, member, "/namespace/", {"namespace": "*"})
    own = member.get(f"{cloud.url}/instances/", timeout=10).text
    assert f"in {team.a}" in own and "All namespaces" not in own
    create_page = member.get(f"{cloud.url}/instances/new/", timeout=10).text
    assert 'name="namespace"' not in create_page.split("<main", 1)[1]  # past the top bar
