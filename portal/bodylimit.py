"""How large a request body may be, per route, enforced as the body arrives.

Django's ASGI handler reads a whole body (spooling it to a temporary file
past 2.5 MB) before any middleware or view runs, so a limit checked in a
view comes too late: a multi-gigabyte POST to any URL, unauthenticated,
would first fill the disk. ``BodyLimit`` wraps the application below Django
and counts the body as it arrives:

- a Content-Length over the route's limit is refused before a byte of the
  body is read (a client that sent ``Expect: 100-continue`` never sends it);
- a body without one (chunked) is cut off once it passes the limit, having
  held at most the limit.

Either way Django gets an empty body and a mark in the scope, and
``refuse_large_bodies`` (the first Django middleware that can render a
page) answers 413 in the usual shape: JSON under /api, a page otherwise,
and closes the connection so the client stops sending.

Every limit is declared in ``ROUTES`` below; routes that take uploads add
theirs there.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.template.response import TemplateResponse
from django.utils.decorators import sync_and_async_middleware

KiB = 1024
MiB = 1024 * KiB

# Any request: JSON bodies, forms, a user-data file (64 KiB at most) in a form.
DEFAULT_MAX_BYTES = 1 * MiB


@dataclass(frozen=True)
class RouteLimit:
    """Requests whose path matches ``pattern`` (whole) may send ``max_bytes``."""

    pattern: str
    max_bytes: int
    why: str

    def matches(self, path: str) -> bool:
        return re.fullmatch(self.pattern, path) is not None


# The largest chunk of an upload a client sends: Shaken Fist's client grows
# its chunks to at most 2 MiB, and the Images page sends 2 MiB
# (static/js/upload.js). Each chunk is streamed on to the upload's node.
UPLOAD_CHUNK_BYTES = 2 * MiB

# Routes allowed more (or less) than the default, first match wins.
ROUTES: tuple[RouteLimit, ...] = (
    RouteLimit(r"/api/upload/[^/]+", UPLOAD_CHUNK_BYTES,
               "a chunk of an upload (POST /api/upload/<uuid>)"),
    RouteLimit(r"/images/uploads/[^/]+/chunk/", UPLOAD_CHUNK_BYTES,
               "a chunk of the Images page's upload"),
)

SCOPE_KEY = "sfcloud.body_limit"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def limit_for(path: str) -> int:
    for route in ROUTES:
        if route.matches(path):
            return route.max_bytes
    return DEFAULT_MAX_BYTES


@dataclass
class BodyState:
    """What BodyLimit tells the Django side about one request."""

    limit: int
    refused: bool = False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one itself
    return None


class BodyLimit:
    """ASGI middleware: no request body beyond its route's limit reaches Django."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = BodyState(limit=limit_for(scope["path"]))
        scope = {**scope, SCOPE_KEY: state}
        declared = _content_length(scope)
        if declared is not None and declared > state.limit:
            state.refused = True
        await self.app(scope, _Counted(receive, state), send)


class _Counted:
    """The server's ``receive``, passing body chunks on until the limit is
    passed; then an end of body, and the rest of it dropped unread."""

    def __init__(self, receive: Receive, state: BodyState):
        self._receive = receive
        self._state = state
        self._seen = 0
        self._ended = False

    async def __call__(self) -> Message:
        if self._state.refused and not self._ended:
            self._ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if self._ended:
            # Django now only listens for the client going away. Whatever body
            # still comes is dropped (the server says "disconnect" as soon as
            # the response is sent).
            while True:
                message = await self._receive()
                if message["type"] != "http.request":
                    return message
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._state.limit:
                self._state.refused = True
                self._ended = True
                return {"type": "http.request", "body": b"", "more_body": False}
            self._ended = not message.get("more_body", False)
        return message


def too_large_message(limit: int) -> str:
    return f"the request body is larger than this route's limit of {limit} bytes"


def refusal(request: HttpRequest) -> HttpResponseBase | None:
    """The 413 for a request whose body BodyLimit refused, else None."""
    state = getattr(request, "scope", {}).get(SCOPE_KEY)
    if state is None or not state.refused:
        return None
    message = too_large_message(state.limit)
    response: HttpResponseBase
    if request.path.startswith("/api"):
        response = JsonResponse({"error": message, "status": 413}, status=413)
    else:
        response = TemplateResponse(request, "errors/too_large.html",
                                    {"message": message[0].upper() + message[1:] + "."},
                                    status=413)
    # The client may still be sending: stop it rather than read what is refused.
    response["Connection"] = "close"
    return response


def _rendered(response: HttpResponseBase) -> HttpResponseBase:
    # A middleware's response is not rendered for it, as a view's is.
    if isinstance(response, TemplateResponse):
        response.render()
    return response


@sync_and_async_middleware
def refuse_large_bodies(get_response: Callable[[HttpRequest], Any]) -> Any:
    """Django middleware: answer BodyLimit's refusals before any view (or
    CSRF check) looks at the empty body."""
    if iscoroutinefunction(get_response):
        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            refused = refusal(request)
            if refused is not None:
                # The page's context reads the database: not on the event loop.
                return await sync_to_async(_rendered)(refused)
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        refused = refusal(request)
        return _rendered(refused) if refused is not None else get_response(request)

    return middleware
