"""The serial console relay: one libvirt console stream per domain, shared by
every viewer of it.

libvirt gives out one console stream per domain at a time, so the agent
holds it while anyone watches and fans its output out; any viewer may type
unless their grant is read-only. A newcomer first gets the recent scrollback
from the console log. Each viewer has a bounded buffer: one that stops
reading is disconnected (and may reconnect, with scrollback) instead of
growing the agent or holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
from aiohttp import WSMsgType, web

from cloudstate.consoles import (
    CLOSE_CONSOLE_GONE,
    CLOSE_NOT_FOUND,
    CLOSE_NOT_RUNNING,
    CLOSE_TOO_SLOW,
)
from nodeagent.consoles import logfile
from nodeagent.hypervisor import DomainNotRunning, Hypervisor, HypervisorError
from nodeagent.server import AgentServer

log = logging.getLogger(__name__)

SCROLLBACK_BYTES = 64 * 1024
VIEWER_BUFFER_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024
MAX_INPUT_MESSAGE = 64 * 1024

_STREAM_EVENTS = (libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR
                  | libvirt.VIR_STREAM_EVENT_HANGUP)


class ConsoleStream:
    """A non-blocking libvirt stream driven by libvirt's events on this loop."""

    def __init__(self, stream: libvirt.virStream, on_data: Callable[[bytes], None],
                 on_closed: Callable[[], None]):
        self._stream = stream
        self._on_data = on_data
        self._on_closed = on_closed
        self._writable = asyncio.Event()
        self._wants_write = False
        self.closed = False

    def start(self) -> None:
        self._stream.eventAddCallback(_STREAM_EVENTS, self._event, None)

    def _event(self, _stream: Any, events: int, _opaque: Any) -> None:
        if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._writable.set()
        if events & libvirt.VIR_STREAM_EVENT_READABLE:
            self._drain()
        if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
            self.close()

    def _drain(self) -> None:
        while not self.closed:
            try:
                data = self._stream.recv(READ_CHUNK)
            except libvirt.libvirtError as exc:
                log.info("console stream ended: %s", exc)
                self.close()
                return
            if data == -2:  # nothing more for now
                return
            if not data:  # the guest went away
                self.close()
                return
            self._on_data(data)

    async def write(self, data: bytes) -> None:
        while data and not self.closed:
            try:
                sent = self._stream.send(data)
            except libvirt.libvirtError as exc:
                log.info("console stream refused input: %s", exc)
                self.close()
                return
            if sent == -2:
                # Full: listen for "writable" only while waiting, or the
                # event would fire on every loop turn.
                self._writable.clear()
                self._stream.eventUpdateCallback(
                    _STREAM_EVENTS | libvirt.VIR_STREAM_EVENT_WRITABLE)
                await self._writable.wait()
                if not self.closed:
                    self._stream.eventUpdateCallback(_STREAM_EVENTS)
                continue
            data = data[sent:]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._writable.set()
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.eventRemoveCallback()
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.abort()
        self._on_closed()


class Viewer:
    """One connection's queue of output, bounded in bytes."""

    def __init__(self, read_only: bool, limit: int = VIEWER_BUFFER_BYTES):
        self.read_only = read_only
        self._limit = limit
        self._pending: deque[bytes | str] = deque()
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self.end_code: int | None = None

    def feed(self, item: bytes | str) -> None:
        if self.end_code is not None:
            return
        if self._pending_bytes + len(item) > self._limit:
            self.end(CLOSE_TOO_SLOW)
            return
        self._pending.append(item)
        self._pending_bytes += len(item)
        self._wakeup.set()

    def end(self, code: int) -> None:
        if self.end_code is None:
            self.end_code = code
        self._wakeup.set()

    async def next(self) -> bytes | str | None:
        """The next output (consecutive bytes joined), or None once ended."""
        while not self._pending:
            if self.end_code is not None:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.end_code is not None:
            return None
        first = self._pending.popleft()
        if isinstance(first, bytes):
            parts = [first]
            while self._pending and isinstance(self._pending[0], bytes):
                parts.append(self._pending.popleft())  # type: ignore[arg-type]
            first = b"".join(parts)
        self._pending_bytes -= len(first)
        return first


class SerialHub:
    """The console of one domain and the viewers sharing it."""

    def __init__(self, uuid: str, hypervisor: Hypervisor, on_idle: Callable[[str], None]):
        self.uuid = uuid
        self._hv = hypervisor
        self._on_idle = on_idle
        self._stream: ConsoleStream | None = None
        self._opening = asyncio.Lock()
        self.viewers: set[Viewer] = set()

    async def ensure_open(self) -> None:
        async with self._opening:
            if self._stream is None or self._stream.closed:
                raw = await self._hv.open_console(self.uuid)
                self._stream = ConsoleStream(raw, self._broadcast, self._stream_closed)
                self._stream.start()

    def add(self, viewer: Viewer) -> None:
        self.viewers.add(viewer)
        self._announce()

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        if self.viewers:
            self._announce()
            return
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()
        self._on_idle(self.uuid)

    def _announce(self) -> None:
        message = json.dumps({"type": "viewers", "count": len(self.viewers)})
        for viewer in list(self.viewers):
            viewer.feed(message)

    def _broadcast(self, data: bytes) -> None:
        for viewer in list(self.viewers):
            viewer.feed(data)

    def _stream_closed(self) -> None:
        for viewer in list(self.viewers):
            viewer.end(CLOSE_CONSOLE_GONE)

    async def write(self, data: bytes) -> None:
        if self._stream is not None:
            await self._stream.write(data)


class SerialConsoles:
    """The websocket route: one connection per viewer."""

    def __init__(self, server: AgentServer, hypervisor: Hypervisor,
                 log_path: Callable[[str], Path | None]):
        self._server = server
        self._hv = hypervisor
        self._log_path = log_path  # None: the instance is not on this node
        self._hubs: dict[str, SerialHub] = {}

    def _hub(self, uuid: str) -> SerialHub:
        hub = self._hubs.get(uuid)
        if hub is None:
            hub = self._hubs[uuid] = SerialHub(uuid, self._hv, self._forget)
        return hub

    def _forget(self, uuid: str) -> None:
        hub = self._hubs.get(uuid)
        if hub is not None and not hub.viewers:
            del self._hubs[uuid]

    async def handle(self, request: web.Request, claims: dict[str, Any]) -> web.StreamResponse:
        uuid = request.match_info["uuid"]
        log_path = self._log_path(uuid)
        ws = await self._server.websocket(request, max_msg_size=MAX_INPUT_MESSAGE, heartbeat=30)
        if log_path is None:
            await ws.close(code=CLOSE_NOT_FOUND, message=b"no such instance on this node")
            return ws
        hub = self._hub(uuid)
        try:
            await hub.ensure_open()
        except (DomainNotRunning, HypervisorError) as exc:
            # Still worth showing what it printed before it stopped.
            await send_scrollback(ws, self._scrollback(log_path))
            self._forget(uuid)
            # Not running is final (the page reopens it when the instance
            # powers on); a console that failed to open on a running guest
            # (one shutting down, say) is worth another try.
            code = CLOSE_NOT_RUNNING if isinstance(exc, DomainNotRunning) else CLOSE_CONSOLE_GONE
            await ws.close(code=code, message=str(exc).encode()[:120])
            return ws
        # No await between reading the log and joining: nothing the stream
        # delivers can fall between the two.
        scrollback = self._scrollback(log_path)
        viewer = Viewer(read_only=bool(claims.get("read_only")))
        hub.add(viewer)
        try:
            await send_scrollback(ws, scrollback)
            await _relay(ws, hub, viewer)
        finally:
            hub.remove(viewer)
        if not ws.closed:
            await ws.close(code=viewer.end_code or 1000)
        return ws

    @staticmethod
    def _scrollback(path: Path) -> bytes:
        data = logfile.tail(path, SCROLLBACK_BYTES)
        return logfile.from_line_start(data) if len(data) == SCROLLBACK_BYTES else data


async def send_scrollback(ws: web.WebSocketResponse, scrollback: bytes) -> None:
    """The recent output, said to be so first: a terminal must not answer
    the queries in it (a cursor position request the guest made long ago,
    ESC[6n, which busybox's shell sends with every prompt). The answer would
    reach the guest now, typed into whatever reads its console."""
    await ws.send_str(json.dumps({"type": "scrollback", "bytes": len(scrollback)}))
    await ws.send_bytes(scrollback)


async def _relay(ws: web.WebSocketResponse, hub: SerialHub, viewer: Viewer) -> None:
    async def output() -> None:
        while (item := await viewer.next()) is not None:
            if isinstance(item, bytes):
                await ws.send_bytes(item)
            else:
                await ws.send_str(item)

    async def input() -> None:
        async for message in ws:
            if message.type == WSMsgType.BINARY and not viewer.read_only:
                await hub.write(message.data)
        viewer.end(1000)

    tasks = [asyncio.create_task(output()), asyncio.create_task(input())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
