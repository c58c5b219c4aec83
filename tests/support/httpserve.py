"""A small threaded HTTP server on 127.0.0.1 for tests that download things (images, mostly).

    with HTTPTestServer() as server:
        server.serve_file("/demo.qcow2", path)
        server.redirect("/old", server.url("/demo.qcow2"))
        server.serve_stalling("/hang", b"x" * 1000, stall_after=100)
        server.serve_lying_length("/short", b"abc", claimed_length=10)
        fetch(server.url("/old"))
        assert server.count("/demo.qcow2") == 1

Routes match the path exactly; the query string is ignored for matching and counting. GET and
HEAD are served; a path without a route gets 404 (and is still counted). No Django here.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

_CHUNK = 64 * 1024
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # without the query string
    target: str  # as sent, query string included
    headers: dict[str, str]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(send_body=False)

    def _dispatch(self, send_body: bool) -> None:
        path = urlsplit(self.path).path
        owner = self.server.owner
        owner._record(RequestRecord(self.command, path, self.path, dict(self.headers.items())))
        route = owner._route(path)
        try:
            if route is None:
                _send_simple(self, 404, b"no such route\n", send_body)
            else:
                route(self, send_body)
        except _CLIENT_GONE:
            # The client hung up mid-response, which some tests do on purpose.
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # requests are recorded in HTTPTestServer.requests; stderr stays quiet


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Stalled handlers are released by stop(); never wait on a client that keeps a socket open.
    block_on_close = False
    # socketserver's default backlog of 5 makes concurrent clients wait for a SYN retry (1 s).
    request_queue_size = 128

    def __init__(self, owner: HTTPTestServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


Responder = Callable[[_Handler, bool], None]


def _send_headers(
    handler: _Handler, status: int, headers: Iterable[tuple[str, str]], close: bool = False
) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if close:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()


def _send_simple(
    handler: _Handler,
    status: int,
    body: bytes,
    send_body: bool,
    content_type: str = "text/plain",
    extra: Iterable[tuple[str, str]] = (),
) -> None:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
    _send_headers(handler, status, headers)
    if send_body:
        handler.wfile.write(body)


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _Unsatisfiable(Exception):
    pass


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single "bytes=" range, None to send the whole body."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # multiple or malformed ranges: answering with the whole body is allowed
    first_text, last_text = match.groups()
    if first_text == "":  # suffix form: the last N bytes
        length = int(last_text)
        if length == 0:
            raise _Unsatisfiable
        return max(0, size - length), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        raise _Unsatisfiable
    return first, last


def _ranged_response(
    handler: _Handler,
    send_body: bool,
    size: int,
    content_type: str,
    extra: Iterable[tuple[str, str]],
    write_span: Callable[[int, int], object],
) -> None:
    try:
        wanted = _byte_range(handler.headers.get("Range"), size)
    except _Unsatisfiable:
        _send_simple(handler, 416, b"", send_body, extra=[("Content-Range", f"bytes */{size}")])
        return
    first, last = wanted if wanted is not None else (0, size - 1)
    headers = [("Content-Type", content_type), ("Accept-Ranges", "bytes"), *extra]
    headers.append(("Content-Length", str(max(0, last - first + 1))))
    status = 200
    if wanted is not None:
        status = 206
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    _send_headers(handler, status, headers)
    if send_body and last >= first:
        write_span(first, last + 1)


@dataclass
class _Stall:
    """Shared with stalling responses: release lets them finish, stopping abandons them."""

    released: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)


class HTTPTestServer:
    """Threaded HTTP/1.1 server on 127.0.0.1 with a random free port."""

    def __init__(self) -> None:
        self._routes: dict[str, Responder] = {}
        self._counts: Counter[str] = Counter()
        self._requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._stall = _Stall()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stall = _Stall()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"httpserve-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stall.stopping.set()
        self._stall.released.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    # ---- bookkeeping --------------------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._counts[record.path] += 1
            self._requests.append(record)

    def _route(self, path: str) -> Responder | None:
        with self._lock:
            return self._routes.get(path)

    def count(self, path: str) -> int:
        """Requests received for path (any method, any outcome)."""
        with self._lock:
            return self._counts[path]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()

    def release_stalls(self) -> None:
        """Let stalled responses send the rest of their body; later ones no longer stall."""
        self._stall.released.set()

    # ---- routes -------------------------------------------------------------------------------

    def route(self, path: str, responder: Responder) -> None:
        """Register a custom responder(handler, send_body) for path."""
        with self._lock:
            self._routes[path] = responder

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    def serve_file(
        self,
        path: str,
        file: Path,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Stream a file from disk in chunks (read at request time, so it may change)."""
        extra = list((headers or {}).items())

        def respond(handler: _Handler, send_body: bool) -> None:
            try:
                source = open(file, "rb")  # noqa: SIM115 (closed below, after the headers)
            except FileNotFoundError:
                _send_simple(handler, 404, b"file is gone\n", send_body)
                return
            with source:
                size = Path(file).stat().st_size

                def write_span(start: int, end: int) -> None:
                    source.seek(start)
                    remaining = end - start
                    while remaining > 0:
                        chunk = source.read(min(_CHUNK, remaining))
                        if not chunk:
                            break
                        handler.wfile.write(chunk)
                        remaining -= len(chunk)

                _ranged_response(handler, send_body, size, content_type, extra, write_span)

        self.route(path, respond)

    def serve_bytes(
        self,
        path: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = list((headers or {}).items())
        if status != 200:
            self.route(path, lambda h, b: _send_simple(h, status, data, b, content_type, extra))
            return

        def respond(handler: _Handler, send_body: bool) -> None:
            _ranged_response(
                handler,
                send_body,
                len(data),
                content_type,
                extra,
                lambda start, end: handler.wfile.write(data[start:end]),
            )

        self.route(path, respond)

    def respond_status(
        self, path: str, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Answer with a bare status (404, 500, 503 ...) and an optional body."""
        self.serve_bytes(path, body, "text/plain", status=status, headers=headers)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        def respond(handler: _Handler, send_body: bool) -> None:
            _send_simple(handler, status, b"", send_body, extra=[("Location", location)])

        self.route(path, respond)

    def serve_stalling(
        self,
        path: str,
        data: bytes,
        *,
        chunk_size: int = 1024,
        delay: float = 0.0,
        stall_after: int | None = None,
        stall_for: float | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        """A slow or stuck download, with a truthful Content-Length.

        Sends data in chunk_size pieces with delay seconds between them (a slow server). With
        stall_after, stops sending after that many bytes and holds the connection open for
        stall_for seconds (None: until release_stalls() or stop()), then sends the rest.
        """

        def respond(handler: _Handler, send_body: bool) -> None:
            headers = [("Content-Type", content_type), ("Content-Length", str(len(data)))]
            _send_headers(handler, 200, headers, close=True)
            if not send_body:
                return
            stall = self._stall
            sent = 0
            while sent < len(data):
                if stall_after is not None and sent == stall_after:
                    stall.released.wait(stall_for)
                    if stall.stopping.is_set():
                        return  # abandon the response: the client sees a short body
                elif delay and sent and stall.stopping.wait(delay):
                    return
                end = len(data)
                if stall_after is not None and sent < stall_after:
                    end = stall_after
                piece = data[sent : min(end, sent + chunk_size)]
                handler.wfile.write(piece)
                handler.wfile.flush()
                sent += len(piece)

        self.route(path, respond)

    def serve_lying_length(
        self,
        path: str,
        data: bytes,
        claimed_length: int,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Declare claimed_length but send data (shorter or longer), then close the socket."""

        def respond(handler: _Handler, send_body: bool) -> None:
            headers = [("Content-Type", content_type), ("Content-Length", str(claimed_length))]
            _send_headers(handler, 200, headers, close=True)
            if send_body:
                handler.wfile.write(data)
                handler.wfile.flush()

        self.route(path, respond)


def serving(routes: dict[str, Path | bytes]) -> Iterator[HTTPTestServer]:
    """Generator for a fixture: files (Path) and bodies (bytes) on a running server."""
    with HTTPTestServer() as server:
        for path, what in routes.items():
            if isinstance(what, Path):
                server.serve_file(path, what)
            else:
                server.serve_bytes(path, what)
        yield server
