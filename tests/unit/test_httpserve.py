from __future__ import annotations

import http.client
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.httpserve import HTTPTestServer


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as srv:
        yield srv


def _get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _raw_get(server: HTTPTestServer, path: str, timeout: float = 5) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request("GET", path)
    return conn.getresponse()


def test_listens_on_loopback_with_a_random_port(server: HTTPTestServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.port > 0
    assert server.url("a/b") == f"http://127.0.0.1:{server.port}/a/b"
    with HTTPTestServer() as other:
        assert other.port != server.port


def test_serves_a_file_streamed_with_ranges(server: HTTPTestServer, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # larger than one read chunk
    file = tmp_path / "blob.bin"
    file.write_bytes(data)
    server.serve_file("/blob.bin", file)

    assert _get(server.url("/blob.bin")) == (200, data)
    assert _get(server.url("/blob.bin"), {"Range": "bytes=10-19"}) == (206, data[10:20])
    assert _get(server.url("/blob.bin"), {"Range": "bytes=-5"}) == (206, data[-5:])
    assert _get(server.url("/blob.bin"), {"Range": f"bytes={len(data)}-"})[0] == 416

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("HEAD", "/blob.bin")
    head = conn.getresponse()
    assert head.status == 200
    assert head.getheader("Content-Length") == str(len(data))
    assert head.read() == b""
    conn.close()

    # The file is read at request time, so a test may replace it between requests.
    file.write_bytes(b"new")
    assert _get(server.url("/blob.bin?cache=bust")) == (200, b"new")
    assert server.count("/blob.bin") == 6


def test_bytes_status_redirect_and_unknown_paths(server: HTTPTestServer) -> None:
    server.serve_bytes("/hello", b"hello", content_type="text/plain")
    server.respond_status("/broken", 503, b"try later")
    server.redirect("/old", server.url("/hello"), status=301)

    assert _get(server.url("/hello")) == (200, b"hello")
    assert _get(server.url("/broken")) == (503, b"try later")
    assert _get(server.url("/old")) == (200, b"hello")  # urllib follows the redirect
    assert _get(server.url("/nothing"))[0] == 404

    response = _raw_get(server, "/old")
    assert response.status == 301
    assert response.getheader("Location") == server.url("/hello")

    assert server.counts() == {"/hello": 2, "/broken": 1, "/old": 2, "/nothing": 1}
    assert [r.path for r in server.requests][:2] == ["/hello", "/broken"]
    server.reset_counts()
    assert server.count("/hello") == 0


def test_counts_are_exact_under_concurrency(server: HTTPTestServer) -> None:
    server.serve_bytes("/c", b"x")
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(10):
                assert _get(server.url("/c")) == (200, b"x")
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert server.count("/c") == 160


def test_slow_response_trickles(server: HTTPTestServer) -> None:
    server.serve_stalling("/slow", b"abcdef", chunk_size=2, delay=0.2)
    started = time.monotonic()
    assert _get(server.url("/slow")) == (200, b"abcdef")
    assert time.monotonic() - started >= 0.4  # two pauses between three chunks


def _recv_until(sock: socket.socket, predicate: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not predicate(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_stalled_response_holds_until_released(server: HTTPTestServer) -> None:
    server.serve_stalling("/stall", b"0123456789", stall_after=4)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /stall HTTP/1.1\r\nHost: test\r\n\r\n")
        head = _recv_until(sock, lambda d: b"\r\n\r\n0123" in d)
        assert b"Content-Length: 10\r\n" in head
        assert head.endswith(b"\r\n\r\n0123")
        readable, _, _ = select.select([sock], [], [], 0.5)
        assert not readable  # stalled: nothing more arrives
        server.release_stalls()
        assert _recv_until(sock, lambda d: False) == b"456789"  # then the rest, then close


def test_stop_does_not_wait_for_stalled_clients() -> None:
    server = HTTPTestServer().start()
    server.serve_stalling("/stall", b"x" * 100, stall_after=10)
    response = _raw_get(server, "/stall", timeout=10)
    assert response.read(10) == b"x" * 10
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(http.client.IncompleteRead):
        response.read()


def test_lying_content_length(server: HTTPTestServer) -> None:
    server.serve_lying_length("/short", b"abc", claimed_length=10)
    server.serve_lying_length("/long", b"abcdefghij", claimed_length=4)

    response = _raw_get(server, "/short")
    assert response.getheader("Content-Length") == "10"
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert caught.value.partial == b"abc"

    assert _raw_get(server, "/long").read() == b"abcd"  # the client trusts the header


def test_context_manager_frees_the_port() -> None:
    with HTTPTestServer() as server:
        port = server.port
        server.serve_bytes("/x", b"x")
        assert _get(server.url("/x")) == (200, b"x")
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    with pytest.raises(RuntimeError):
        _ = server.port
