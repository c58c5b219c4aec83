"""The graphical console relay: a websocket spliced to the domain's VNC socket.

QEMU's VNC server listens on a unix socket libvirt placed (no network port).
For each session the agent sets a fresh random VNC password that expires in
seconds, authenticates with it itself, and then relays bytes both ways,
awaiting each write, so a reader that stops reading stops the flow instead
of filling memory. One domain's handshakes take turns, so two sessions
starting together never race on its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from cloudstate.consoles import (
    CLOSE_CONSOLE_GONE,
    CLOSE_NOT_FOUND,
    CLOSE_NOT_RUNNING,
    CLOSE_PROTOCOL,
)
from nodeagent.consoles import rfb
from nodeagent.hypervisor import DomainNotRunning, Hypervisor, HypervisorError
from nodeagent.server import AgentServer

log = logging.getLogger(__name__)

PASSWORD_LIFETIME = 30  # seconds; the agent uses it within milliseconds
READ_CHUNK = 256 * 1024
MAX_INPUT_MESSAGE = 2 * 1024 * 1024  # a pasted clipboard, at most


class WebSocketBytes:
    """Reads exact byte counts from a websocket's binary messages."""

    def __init__(self, ws: web.WebSocketResponse):
        self._ws = ws
        self._buffer = bytearray()

    async def read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            message = await self._ws.receive()
            if message.type != WSMsgType.BINARY:
                raise rfb.RFBError("the browser closed the console during the handshake")
            self._buffer += message.data
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def leftover(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class VncConsoles:
    def __init__(self, server: AgentServer, hypervisor: Hypervisor,
                 on_this_node: Callable[[str], bool]):
        self._server = server
        self._hv = hypervisor
        self._on_this_node = on_this_node  # uuid -> bool
        # One per domain ever opened here: a few bytes each, and dropping one
        # while a session waits on it would let two handshakes overlap.
        self._handshakes: dict[str, asyncio.Lock] = {}

    async def handle(self, request: web.Request, claims: dict[str, Any]) -> web.StreamResponse:
        uuid = request.match_info["uuid"]
        ws = await self._server.websocket(request, max_msg_size=MAX_INPUT_MESSAGE, heartbeat=30)
        if not self._on_this_node(uuid):
            await ws.close(code=CLOSE_NOT_FOUND, message=b"no such instance on this node")
            return ws
        try:
            reader, writer = await self._connect(uuid)
        except DomainNotRunning as exc:
            await ws.close(code=CLOSE_NOT_RUNNING, message=str(exc).encode()[:120])
            return ws
        except (HypervisorError, rfb.RFBError, OSError) as exc:
            log.warning("VNC console of %s: %s", uuid, exc)
            await ws.close(code=CLOSE_CONSOLE_GONE, message=str(exc).encode()[:120])
            return ws
        try:
            browser = WebSocketBytes(ws)

            async def send(data: bytes) -> None:
                await ws.send_bytes(data)

            await rfb.accept_client(browser.read, send)

            async def to_qemu(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            await rfb.relay_client_init(browser.read, to_qemu)
            view_only = rfb.ViewOnlyFilter() if claims.get("read_only") else None
            code = await _splice(ws, browser.leftover(), reader, writer, view_only)
        except rfb.RFBError as exc:
            log.info("VNC console of %s: %s", uuid, exc)
            code = CLOSE_PROTOCOL
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not ws.closed:
            await ws.close(code=code)
        return ws

    async def _connect(self, uuid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the VNC socket and authenticate with a password made for this
        session alone."""
        lock = self._handshakes.setdefault(uuid, asyncio.Lock())
        async with lock:
            path, graphics = await self._hv.vnc_socket(uuid)
            password = secrets.token_urlsafe(6)[:8]  # VNC uses 8 bytes, no more
            expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=PASSWORD_LIFETIME)
            try:
                await self._hv.set_vnc_password(
                    uuid, graphics, password, expires.strftime("%Y-%m-%dT%H:%M:%S"))
            except DomainNotRunning:
                raise
            except HypervisorError as exc:
                # A domain defined without a first password (before sfcloud set
                # one) runs VNC without authentication, and QEMU then refuses
                # any. Its socket is still reachable by root alone.
                log.warning("instance %s: no per-session VNC password (%s); "
                            "recreate it to get one", uuid, exc)
            reader, writer = await rfb.open_unix(path)
            try:
                async def write(data: bytes) -> None:
                    writer.write(data)
                    await writer.drain()

                await asyncio.wait_for(
                    rfb.authenticate_to_server(reader.readexactly, write, password), 10)
            except BaseException:
                writer.close()
                raise
        return reader, writer


async def _splice(ws: web.WebSocketResponse, pending: bytes, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, view_only: rfb.ViewOnlyFilter | None) -> int:
    """Relay until either side ends; returns the close code for the browser."""

    async def to_guest(data: bytes) -> None:
        if view_only is not None:
            data = view_only.feed(data)
        if data:
            writer.write(data)
            await writer.drain()

    async def from_browser() -> int:
        if pending:
            await to_guest(pending)
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await to_guest(message.data)
        return 1000

    async def to_browser() -> int:
        while data := await reader.read(READ_CHUNK):
            await ws.send_bytes(data)
        return CLOSE_CONSOLE_GONE

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(to_browser())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finished = done.pop()
        try:
            return finished.result()
        except rfb.RFBError:
            return CLOSE_PROTOCOL
        except (ConnectionError, OSError):
            return CLOSE_CONSOLE_GONE
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
