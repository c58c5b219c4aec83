"""The portal in this process, for the fast tests: its pages and API driven
by Django's async test client, its websockets by its own ASGI application,
over a real etcd (under a key prefix of the test's own) and the test
database.

The portal runs on an event loop in a thread of its own, made and ended
with the test, as a server runs one loop: its etcd clients and its live hub
belong to that loop, and a websocket keeps being served between two of the
test's calls. Tests stay plain functions; each call crosses to that loop
and waits for the answer. What a test asks is answered as by the real
server: the same middleware, views and consumers, and an exception a view
lets out fails the test instead of becoming a 500 that might go unnoticed.

Nothing here builds anything: no agent runs (see tests.support.fakeagent
for one that writes what an agent would report), no guest boots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.middleware.csrf import CSRF_ALLOWED_CHARS, CSRF_SECRET_LENGTH
from django.test import AsyncClient
from django.utils import timezone
from django.utils.crypto import get_random_string

from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from portal.accounts import keys as account_keys
from portal.accounts.models import ApiKey, Membership, Namespace, PersonalToken
from portal.cloud import store
from portal.live import hub

T = TypeVar("T")
CALL_TIMEOUT = 30.0


class PortalLoop:
    """An event loop running in its own thread until closed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="portal-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Stop what the portal started on the loop (its hub, its etcd
        client, websockets left open), then the loop itself."""
        try:
            self.run(_stop_portal_tasks())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


async def _stop_portal_tasks() -> None:
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    for task in others:  # websockets left open, the hub's watch
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    await hub.stop_hub()
    await store.etcd().close()
    await asyncio.get_running_loop().shutdown_default_executor()


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, read the way the tests read requests' responses."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    cookies: SimpleCookie

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _reply(response: Any) -> Reply:
    return Reply(status_code=response.status_code, headers=response.headers,
                 content=response.content, cookies=response.cookies)


class Api:
    """The JSON API as Shaken Fist's client uses it: a namespace key traded
    at /auth for a bearer token (traded again once on a 401), or a personal
    token sent as the bearer token itself."""

    def __init__(self, portal: InProcessPortal, namespace: str | None = None,
                 key: str | None = None, token: str | None = None):
        self.portal = portal
        self.namespace = namespace
        self.key = key
        self._token = token
        self._client = AsyncClient()

    def _auth(self) -> None:
        response = self.raw("POST", "/auth", json.dumps({"namespace": self.namespace,
                                                          "key": self.key}))
        assert response.status_code == 200, response.text
        self._token = response.json()["access_token"]

    @property
    def token(self) -> str:
        if self._token is None:
            self._auth()
        assert self._token is not None
        return self._token

    def raw(self, method: str, path: str, data: str | bytes = "",
            headers: dict[str, str] | None = None) -> Reply:
        """A request with this exact body (which need not be JSON)."""
        return _reply(self.portal.loop.run(self._client.generic(
            method, f"/api{path}", data, content_type="application/json",
            headers=headers or {})))

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        data = "" if body is None else json.dumps(body)
        for attempt in range(2):
            response = self.raw(method, path, data,
                                headers={"Authorization": f"Bearer {self.token}"})
            if response.status_code != 401 or attempt or self.key is None:
                return response
            self._auth()
        raise AssertionError("unreachable")

    def concurrently(self, calls: list[tuple[str, str, Any]],
                     timeout: float = 120) -> list[Reply]:
        """Send every (method, path, body) at once, each from a client of its
        own, and wait for all the answers (in the order asked): the portal
        serves them interleaved on its loop, as it serves simultaneous
        requests, so their etcd transactions really race."""
        headers = {"Authorization": f"Bearer {self.token}"}

        async def one(method: str, path: str, body: Any) -> Reply:
            response = await AsyncClient().generic(
                method, f"/api{path}", "" if body is None else json.dumps(body),
                content_type="application/json", headers=headers)
            return _reply(response)

        async def every() -> list[Reply]:
            return list(await asyncio.gather(*(one(*call) for call in calls)))

        return self.portal.loop.run(every(), timeout=timeout)

    def get(self, path: str, body: Any = None) -> Reply:
        return self.request("GET", path, body)

    def post(self, path: str, body: Any = None) -> Reply:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any = None) -> Reply:
        return self.request("PUT", path, body)

    def delete(self, path: str, body: Any = None) -> Reply:
        return self.request("DELETE", path, body)


class Browser:
    """One browser on the pages: its cookies (the session, the CSRF token)
    kept between requests. Forms carry the CSRF token as htmx sends it; the
    portal checks it as it does for a real browser."""

    def __init__(self, portal: InProcessPortal, headers: dict[str, str] | None = None):
        """``headers`` go with every HTTP request (not with websockets)."""
        self.portal = portal
        self.client = AsyncClient(enforce_csrf_checks=True, headers=headers)

    @property
    def cookies(self) -> SimpleCookie:
        return self.client.cookies

    def csrf_token(self) -> str:
        """The browser's CSRF cookie (given one if it has none yet, as the
        first page it loads would), which htmx sends back as a header."""
        name = settings.CSRF_COOKIE_NAME
        if name not in self.client.cookies:
            self.client.cookies[name] = get_random_string(CSRF_SECRET_LENGTH,
                                                          CSRF_ALLOWED_CHARS)
        return self.client.cookies[name].value

    def log_in(self, username: str, password: str) -> Reply:
        """Log in through the form, as a person does."""
        return self.post("/login/", {"username": username, "password": password})

    def force_login(self, user: Any) -> Browser:
        """A session for ``user`` without the form (and its password hashing)."""
        self.portal.loop.run(self.client.aforce_login(user))
        return self

    def get(self, path: str, params: dict[str, Any] | None = None, htmx: bool = False) -> Reply:
        headers = {"HX-Request": "true"} if htmx else {}
        return _reply(self.portal.loop.run(
            self.client.get(path, params or {}, headers=headers)))

    def post(self, path: str, data: dict[str, Any] | None = None, htmx: bool = False,
             csrf: bool = True) -> Reply:
        headers = {"X-CSRFToken": self.csrf_token()} if csrf else {}
        if htmx:
            headers["HX-Request"] = "true"
        return _reply(self.portal.loop.run(
            self.client.post(path, data or {}, headers=headers)))

    def socket(self, path: str, origin: str | None = None,
               headers: dict[str, str] | None = None) -> Socket:
        """Open a websocket with this browser's cookies (raises Refused)."""
        cookie = "; ".join(f"{m.key}={m.coded_value}" for m in self.client.cookies.values())
        sent = {"Cookie": cookie} if cookie else {}
        return self.portal.socket(path, origin=origin, headers={**sent, **(headers or {})})


# --- websockets ----------------------------------------------------------------------------


class Refused(Exception):
    """The websocket handshake was refused (the server answers it with 403)."""

    def __init__(self, code: int):
        super().__init__(f"websocket refused (close code {code})")
        self.code = code


class Closed(Exception):
    """The server closed an open websocket."""

    def __init__(self, code: int):
        super().__init__(f"websocket closed with code {code}")
        self.code = code


def _portal_application() -> Any:
    """portal.asgi's application. Importing it gives the whole process the
    portal's umask (077); the test process keeps its own, so what later tests
    of the session make (files that tests/integration hands to QEMU, the
    shared image cache) does not depend on whether a websocket test ran
    first."""
    kept = os.umask(0o077)
    try:
        from portal.asgi import application
    finally:
        os.umask(kept)
    return application


class Socket:
    """A websocket to the portal's ASGI application, as a server hands it
    one. Unlike Channels' communicator, waiting for a message that does not
    come leaves the connection open."""

    def __init__(self, loop: PortalLoop, path: str, headers: dict[str, str]):
        application = _portal_application()
        self._loop = loop
        self._input: asyncio.Queue[dict[str, Any]] | None = None
        self._output: asyncio.Queue[dict[str, Any]] | None = None
        split = urlsplit(path)
        scope = {
            "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws",
            "path": split.path, "raw_path": split.path.encode(),
            "query_string": split.query.encode(),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers.items()],
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 13000), "subprotocols": [],
        }

        async def start() -> asyncio.Task[None]:
            self._input, self._output = asyncio.Queue(), asyncio.Queue()
            return asyncio.create_task(application(scope, self._input.get, self._output.put))

        self._task = loop.run(start())
        self.closed: int | None = None

    def _next(self, timeout: float) -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            assert self._output is not None
            async with asyncio.timeout(timeout):
                return await self._output.get()

        try:
            return self._loop.run(get(), timeout=timeout + 5)
        except TimeoutError:
            if self._task.done():
                self._task.result()  # the consumer failed: say how
            raise

    def _put(self, message: dict[str, Any]) -> None:
        assert self._input is not None
        self._loop.run(self._input.put(message))

    def connect(self, timeout: float = 10) -> Socket:
        self._put({"type": "websocket.connect"})
        answer = self._next(timeout)
        if answer["type"] == "websocket.close":
            self.closed = answer.get("code", 1000)
            raise Refused(self.closed)
        assert answer["type"] == "websocket.accept", answer
        return self

    def recv(self, timeout: float = 10) -> str:
        """The next message; raises Closed if the server closed instead and
        TimeoutError if nothing came in ``timeout`` seconds."""
        message = self._next(timeout)
        if message["type"] == "websocket.close":
            self.closed = message.get("code", 1000)
            raise Closed(self.closed)
        return message.get("text") or message.get("bytes", b"").decode()

    def send(self, text: str) -> None:
        self._put({"type": "websocket.receive", "text": text})

    def close(self) -> None:
        if self._task.done():
            return

        async def finish() -> None:
            assert self._input is not None
            await self._input.put({"type": "websocket.disconnect", "code": 1000})
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

        self._loop.run(finish())

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- people ------------------------------------------------------------------------------------


@dataclass
class Person:
    """A user of the portal with roles in namespaces, as the tests name them."""

    portal: InProcessPortal
    username: str
    password: str
    user: Any
    _browser: Browser | None = field(default=None, repr=False)

    @property
    def user_id(self) -> int:
        return self.user.pk

    @property
    def browser(self) -> Browser:
        """Their browser, logged in (made once)."""
        if self._browser is None:
            self._browser = Browser(self.portal).force_login(self.user)
        return self._browser

    def token(self, namespace: str = "", name: str | None = None, days: int = 7) -> str:
        """A new personal token, made on their tokens page as they would; its
        secret is read from the page (the only time it is shown)."""
        page = self.browser.post("/account/tokens/", {
            "name": name or f"t-{secrets.token_hex(3)}", "days": str(days),
            "namespace": namespace})
        assert page.status_code == 200, page.text[:500]
        found = re.search(r'data-copy="(sfp_[^"]+)"', page.text)
        assert found, "the new token is not shown on the page"
        return found.group(1)

    def api(self, namespace: str = "") -> Api:
        """The API as this person, with a new personal token."""
        return self.portal.api_with_token(self.token(namespace))


def personal_token(user: Any, name: str, namespace: str = "", days: int = 1) -> str:
    """A personal token written straight into the database (so it may have
    expired already, which the pages would not allow); returns its secret."""
    secret = account_keys.new_personal_secret()
    PersonalToken.objects.create(
        user=user, name=name, digest=account_keys.digest(secret), prefix=secret[:8],
        default_namespace=namespace, expires=timezone.now() + timedelta(days=days))
    return secret


# --- the portal ---------------------------------------------------------------------------------


class InProcessPortal:
    """The portal of one test: settings already point at the test's etcd
    prefix; the test database holds what bootstrap makes (the system
    namespace, the admin and the system key)."""

    def __init__(self, prefix: str, system_key: str, admin_password: str,
                 cluster_secret: str):
        self.keys = Keys(prefix.rstrip("/"))
        self.system_key = system_key
        self.admin_password = admin_password
        # What agents sign their tokens with.
        self.cluster_secret = cluster_secret
        # Websockets are only accepted from the portal's own origins.
        self.origin = settings.PORTAL_ORIGINS[0]
        self.port = urlsplit(self.origin).port
        self.loop = PortalLoop()

    def close(self) -> None:
        try:
            self.etcd_call(lambda etcd: etcd.delete_prefix(self.keys.root))
        finally:
            self.loop.close()

    # --- talking to it ---------------------------------------------------------------------

    def api(self, namespace: str = "system", key: str | None = None) -> Api:
        return Api(self, namespace, key or self.system_key)

    def api_with_token(self, token: str) -> Api:
        return Api(self, token=token)

    def browser(self, headers: dict[str, str] | None = None) -> Browser:
        """A new browser, logged in as nobody."""
        return Browser(self, headers)

    def socket(self, path: str, origin: str | None = None,
               headers: dict[str, str] | None = None) -> Socket:
        """Open a websocket (raises Refused); sent from the portal's own
        origin unless told otherwise (``origin=""``: no Origin at all)."""
        origin = self.origin if origin is None else origin
        sent = {"Origin": origin} if origin else {}
        return Socket(self.loop, path, {**sent, **(headers or {})}).connect()

    # --- people and namespaces (the test database) --------------------------------------------

    def person(self, username: str, roles: dict[str, str] | None = None,
               password: str | None = None) -> Person:
        """A user with ``roles`` (namespace -> role); namespaces made if missing."""
        password = password or "pw-" + secrets.token_urlsafe(12)
        user = get_user_model().objects.create_user(username, password=password)
        for name, role in (roles or {}).items():
            namespace, _ = Namespace.objects.get_or_create(name=name)
            Membership.objects.create(user=user, namespace=namespace, role=role)
        return Person(self, username, password, user)

    def existing_person(self, username: str, password: str) -> Person:
        return Person(self, username, password,
                      get_user_model().objects.get(username=username))

    def make_namespace(self, name: str) -> Api:
        """A namespace with one key (made in the database), and the API as it."""
        secret = secrets.token_urlsafe(24)
        namespace, _ = Namespace.objects.get_or_create(name=name)
        ApiKey.objects.update_or_create(namespace=namespace, name="test",
                                        defaults={"digest": account_keys.digest(secret)})
        return self.api(name, secret)

    # --- etcd ------------------------------------------------------------------------------------

    def etcd_call(self, fn: Callable[[Etcd], Coroutine[Any, Any, T]]) -> T:
        """Run ``fn`` with the portal's own etcd client, on its loop."""

        async def call() -> T:
            return await fn(store.etcd())

        return self.loop.run(call())

    def etcd_keys(self, prefix: str = "") -> list[str]:
        kvs, _ = self.etcd_call(lambda etcd: etcd.get_prefix(self.keys.root + prefix))
        return [kv.key for kv in kvs]


@contextlib.contextmanager
def running_portal(prefix: str, system_key: str, admin_password: str, cluster_secret: str
                   ) -> Iterator[InProcessPortal]:
    portal = InProcessPortal(prefix, system_key, admin_password, cluster_secret)
    try:
        yield portal
    finally:
        portal.close()
