"""A flood of request body: a gigabyte POSTed to the portal, unauthenticated,
is refused with a 413 as it arrives, without the portal's disk (Django's
spooled temporary files) or memory growing."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.support.cloud import Cloud

pytestmark = pytest.mark.integration

GiB = 1024**3
CHUNK = 1024 * 1024


def _largest_open_file(pid: int) -> int:
    """The size of the largest unlinked regular file the process holds open:
    Django spools a body to an unlinked temporary file, so it shows only
    here (the database and its journal are files with names, and grow)."""
    largest = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            details = os.stat(fd)
        except OSError:
            continue
        if stat.S_ISREG(details.st_mode) and target.endswith(" (deleted)"):
            largest = max(largest, details.st_size)
    return largest


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def _post_headers(cloud: Cloud, path: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {cloud.address}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("path,kind", [("/api/instances", "json"), ("/api/auth", "json"),
                                       ("/login/", "page")])
def test_a_declared_gigabyte_is_refused_before_its_body_is_read(
        cloud: Cloud, path: str, kind: str) -> None:
    with socket.create_connection(("127.0.0.1", cloud.port), timeout=10) as sock:
        sock.sendall(_post_headers(cloud, path, f"Content-Length: {GiB}\r\n"))
        started = time.monotonic()
        status, headers, body = _read_response(sock)  # without sending a byte of the body
    assert status == 413
    assert time.monotonic() - started < 5
    assert headers.get("connection") == "close"
    if kind == "json":
        assert json.loads(body) == {"status": 413, "error": "the request body is larger than "
                                    "this route's limit of 1048576 bytes"}
    else:
        assert b"Too large" in body and b"<html" in body.lower()
        assert "content-security-policy" in headers


def test_upload_chunks_have_their_own_limit(cloud: Cloud) -> None:
    """Shaken Fist's client sends chunks of up to 2 MiB (tests/integration/
    test_sf_client_storage.py sends them); one byte more is refused before
    anything reads it, before any credentials are looked at."""
    path = "/api/upload/0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0aff"
    with socket.create_connection(("127.0.0.1", cloud.port), timeout=10) as sock:
        sock.sendall(_post_headers(cloud, path, f"Content-Length: {2 * CHUNK + 1}\r\n"))
        status, _, body = _read_response(sock)
    assert status == 413
    assert json.loads(body)["error"].endswith("this route's limit of 2097152 bytes")


def test_a_streamed_gigabyte_is_cut_off_as_it_arrives(cloud: Cloud) -> None:
    """Chunked, so no length says it is too large: the portal reads up to its
    limit, answers 413 and stops, holding at most the limit meanwhile."""
    assert cloud.portal is not None
    portal = psutil.Process(cloud.portal.pid)
    rss_before = portal.memory_info().rss
    largest = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            largest[0] = max(largest[0], _largest_open_file(portal.pid))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", cloud.port), timeout=20) as sock:
            sock.sendall(_post_headers(cloud, "/api/instances", "Transfer-Encoding: chunked\r\n"))
            chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
            try:
                while sent < GiB:
                    sock.sendall(chunk)
                    sent += CHUNK
            except (BrokenPipeError, ConnectionResetError):
                pass  # the portal closed the connection: what we want
            status, _, body = _read_response(sock)
    finally:
        done.set()
        watcher.join()
    assert status == 413, body
    # A few socket buffers' worth beyond the limit at most, never the gigabyte.
    assert sent < 64 * CHUNK, f"{sent} bytes went before the portal stopped reading"
    assert largest[0] <= 2 * CHUNK, f"the portal spooled {largest[0]} bytes to disk"
    assert portal.memory_info().rss - rss_before < 64 * CHUNK
    # The portal still answers, and a body within the limit is read as before.
    response = cloud.api().post("/instances", {"name": "x" * 10, "padding": "y" * 500_000})
    assert response.status_code == 400 and "cpus" in response.text
