"""Helpers for console tests: people with roles, a logged-in web session, and
the console websocket as a browser uses it (Origin, session cookie, ticket)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

from cloudstate.config import REPO_ROOT
from tests.support.cloud import Cloud


def add_person(cloud: Cloud, username: str, password: str, namespace: str, role: str) -> None:
    """A user with ``role`` in ``namespace`` (both made if missing)."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from portal.accounts.models import Membership, Namespace\n"
        f"ns, _ = Namespace.objects.get_or_create(name={namespace!r})\n"
        "User = get_user_model()\n"
        f"user = User.objects.filter(username={username!r}).first()\n"
        f"user = user or User.objects.create_user({username!r}, password={password!r})\n"
        "Membership.objects.update_or_create(user=user, namespace=ns, "
        f"defaults={{'role': {role!r}}})\n"
    )
    subprocess.run([sys.executable, str(REPO_ROOT / "manage.py"), "shell", "-c", code],
                   env=cloud.env, check=True, capture_output=True, cwd=REPO_ROOT)


def web_login(base_url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base_url}/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "no CSRF token on the login page"
    response = session.post(f"{base_url}/login/", timeout=30, data={
        "username": username, "password": password, "csrfmiddlewaretoken": token.group(1),
    }, headers={"Referer": f"{base_url}/login/"}, allow_redirects=False)
    assert response.status_code == 302, f"login as {username} failed: {response.status_code}"
    return session


def request_ticket(session: requests.Session, base_url: str, uuid: str,
                   kind: str = "serial") -> requests.Response:
    return session.post(f"{base_url}/instances/{uuid}/console/{kind}/ticket", timeout=30,
                        headers={"X-CSRFToken": session.cookies.get("csrftoken", ""),
                                 "Referer": f"{base_url}/instances/{uuid}/"})


def ticket(session: requests.Session, base_url: str, uuid: str, kind: str = "serial") -> dict:
    response = request_ticket(session, base_url, uuid, kind)
    assert response.status_code == 200, response.text
    return response.json()


def open_socket(session: requests.Session, base_url: str, path: str,
                origin: str | None = None, **kwargs: Any) -> ClientConnection:
    cookies = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    return connect(base_url.replace("http://", "ws://") + path,
                   origin=origin or base_url, additional_headers={"Cookie": cookies},
                   max_size=None, open_timeout=30, legacy=True, **kwargs)


def open_console(session: requests.Session, base_url: str, uuid: str,
                 kind: str = "serial") -> tuple[ClientConnection, dict]:
    """A ticketed console socket, after its "ready" message."""
    granted = ticket(session, base_url, uuid, kind)
    ws = open_socket(session, base_url, granted["websocket"])
    ws.send(json.dumps({"ticket": granted["ticket"]}))
    ready = json.loads(ws.recv(timeout=30))
    assert ready["type"] == "ready", ready
    return ws, ready


def read_until(ws: ClientConnection, marker: bytes, timeout: float = 60) -> bytes:
    """Binary output until ``marker`` shows up (control messages skipped)."""
    import time

    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} not seen; got {seen[-500:]!r}")
        message = ws.recv(timeout=remaining)
        if isinstance(message, bytes):
            seen += message
    return seen


class SecondPortal:
    """Another portal process on the same cloud (same etcd, database and
    secrets), with its own settings: sessions must be seen and ended across
    processes."""

    def __init__(self, cloud: Cloud, **env: str):
        from tests.support.cloud import free_port, wait_for

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cloud.state_dir / f"portal-{self.port}.log"
        environment = {**cloud.env, "SFCLOUD_PORTAL_ADDRESS": f"127.0.0.1:{self.port}", **env}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host",
                 "127.0.0.1", "--port", str(self.port), "--lifespan", "on",
                 "--ws-per-message-deflate", "false"],
                env=environment, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)

        def answers() -> bool:
            try:
                return requests.get(f"{self.url}/api", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, 30, "the second portal to answer")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
