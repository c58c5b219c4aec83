"""BodyLimit, the ASGI layer under Django that refuses large bodies as they
arrive: what the application below it gets to read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from portal import bodylimit
from portal.bodylimit import SCOPE_KEY, BodyLimit, RouteLimit


class Client:
    """The server side: body chunks to hand out, and what was taken."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = list(chunks)
        self.taken = 0

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}


async def _run(path: str, chunks: list[bytes], length: int | None = None
               ) -> tuple[bytes, bool, Client]:
    """(the body the app read, whether it was marked refused, the client)."""
    client = Client(chunks)
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"], seen["refused"] = body, scope[SCOPE_KEY].refused

    headers = [(b"content-length", str(length).encode())] if length is not None else []
    await BodyLimit(app)({"type": "http", "path": path, "headers": headers},
                         client.receive, _no_send)
    return seen["body"], seen["refused"], client


async def _no_send(message: dict[str, Any]) -> None:
    raise AssertionError("BodyLimit itself never answers")


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(bodylimit, "DEFAULT_MAX_BYTES", 100)
    monkeypatch.setattr(bodylimit, "ROUTES", (
        RouteLimit(r"/api/upload/[0-9a-f-]+", 1000, "image chunks"),))
    yield


async def test_a_body_within_the_limit_passes_whole(small_limits: None) -> None:
    body, refused, _ = await _run("/api/instances", [b"x" * 60, b"y" * 40], length=100)
    assert body == b"x" * 60 + b"y" * 40 and not refused


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
        small_limits: None) -> None:
    body, refused, client = await _run("/login/", [b"x" * 50] * 100, length=5000)
    assert refused and body == b""
    assert client.taken == 0  # not one byte of the body was read


async def test_a_chunked_body_is_cut_off_past_the_limit(small_limits: None) -> None:
    body, refused, client = await _run("/api/instances", [b"x" * 30] * 1000)
    assert refused and body == b"x" * 90  # what came before the limit, nothing after
    assert client.taken <= 120  # the chunk that crossed it, and no more


async def test_routes_declare_their_own_limits(small_limits: None) -> None:
    assert bodylimit.limit_for("/api/upload/0b7f-aa") == 1000
    assert bodylimit.limit_for("/api/upload/0b7f-aa/extra") == 100  # matched whole
    assert bodylimit.limit_for("/api/instances") == 100
    body, refused, _ = await _run("/api/upload/0b7f", [b"x" * 500], length=500)
    assert body == b"x" * 500 and not refused
    _, refused, _ = await _run("/api/upload/0b7f", [b"x" * 500] * 3, length=1500)
    assert refused


async def test_websockets_and_lifespan_pass_untouched() -> None:
    called = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        called.append(SCOPE_KEY in scope)

    await BodyLimit(app)({"type": "websocket", "path": "/live/"}, _no_receive, _no_send)
    assert called == [False]


async def _no_receive() -> dict[str, Any]:
    raise AssertionError("not read")


def test_upload_chunks_may_be_as_large_as_clients_send_them_and_no_larger() -> None:
    uuid = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0aff"
    for path in (f"/api/upload/{uuid}", f"/images/uploads/{uuid}/chunk/"):
        assert bodylimit.limit_for(path) == 2 * bodylimit.MiB, path
    for path in ("/api/upload", f"/api/upload/{uuid}/truncate/5", f"/images/uploads/{uuid}/",
                 f"/images/uploads/{uuid}/artifact/", "/api/artifacts/upload/x"):
        assert bodylimit.limit_for(path) == bodylimit.DEFAULT_MAX_BYTES, path
