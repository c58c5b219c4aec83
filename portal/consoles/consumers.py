"""The browser's console websocket: ticket in, relay to the node agent.

The socket is only accepted from the portal's own origins with a logged-in
session (asgi.py); its first message must be a one-time ticket bound to this
person, instance and console kind. Then bytes flow both ways, each send
awaited: uvicorn stops reading from a side whose peer does not keep up, so
a browser that stops reading holds up its agent connection, which holds up
the agent, rather than growing this process. Input from read-only viewers is
dropped here (serial) or by the agent's protocol filter (VNC).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from cloudstate.consoles import (
    CLOSE_ACCESS_CHANGED,
    CLOSE_AGENT_UNREACHABLE,
    CLOSE_ENDED_BY_ADMIN,
    CLOSE_IDLE,
    CLOSE_LIMIT,
    CLOSE_NOT_FOUND,
    CLOSE_REFUSED,
    ConsoleSession,
    agent_path,
    new_session_id,
)
from portal.accounts.access import access_for_scope, access_now
from portal.cloud import store
from portal.cloud.errors import CloudError
from portal.consoles import agent, changes, tickets
from portal.consoles.access import console_target
from portal.consoles.sessions import LocalSessions, SessionLease
from portal.live.hub import hub

log = logging.getLogger(__name__)

TICKET_WAIT = 10.0
# Changes to a person's access reach their consoles at once through etcd;
# this re-check is the safety net when that message was lost.
ACCESS_RECHECK_INTERVAL = 30.0
CLOSE_UNAUTHENTICATED = 4401
_local: dict[int, LocalSessions] = {}


async def _local_sessions() -> LocalSessions:
    live = await hub()
    found = _local.get(id(live))
    if found is None:
        found = _local[id(live)] = LocalSessions(live.mirror, live.keys)
    return found


class ConsoleConsumer(AsyncWebsocketConsumer):
    kind: str
    uuid: str

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id: int = user.pk
        self.username: str = user.get_username()
        self.kind = self.scope["url_route"]["kwargs"]["kind"]
        self.uuid = str(self.scope["url_route"]["kwargs"]["uuid"])
        self.agent_ws: aiohttp.ClientWebSocketResponse | None = None
        self.lease: SessionLease | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.opening = False
        self.ending = False
        self.read_only = True
        self.to_browser = 0
        self.from_browser = 0
        self.last_input = time.monotonic()
        await self.accept()
        self.tasks.append(asyncio.create_task(self._ticket_deadline()))

    async def _ticket_deadline(self) -> None:
        await asyncio.sleep(TICKET_WAIT)
        if self.agent_ws is None:
            await self._end(code=CLOSE_REFUSED, reason="no ticket given")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ending:
            return  # closing (access changed, ended by an admin...): nothing more goes in
        if self.agent_ws is None:
            if not self.opening and text_data is not None:
                self.opening = True
                await self._open(text_data)
            return
        if bytes_data is None:
            return  # the page's own control messages need no answer
        self.last_input = time.monotonic()
        if self.read_only and self.kind == "serial":
            return
        self.from_browser += len(bytes_data)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.agent_ws.send_bytes(bytes_data)

    async def _open(self, text: str) -> None:
        try:
            ticket = json.loads(text).get("ticket")
        except (ValueError, AttributeError):
            ticket = None
        etcd, keys = store.etcd(), store.keys()
        granted = await tickets.consume(etcd, keys, ticket)
        if granted is None or not granted.matches(
                user_id=self.user_id, instance=self.uuid, kind=self.kind):
            await self._end(code=CLOSE_REFUSED, reason="the console ticket is not valid here")
            return
        # The ticket is a minute old at most, but memberships may have changed since.
        access = await access_for_scope(self.scope)
        try:
            record, read_only = await console_target(access, self.uuid)
        except CloudError:
            await self._end(code=CLOSE_NOT_FOUND, reason="no such instance")
            return
        if granted.node != record.spec.node:
            await self._end(code=CLOSE_REFUSED, reason="the console ticket is not valid here")
            return
        self.read_only = read_only or granted.read_only
        lease = SessionLease(etcd, keys, ConsoleSession(
            id=new_session_id(), user_id=self.user_id, username=self.username,
            instance=self.uuid, instance_name=record.spec.name,
            namespace=record.spec.namespace, kind=self.kind, node=record.spec.node,
            read_only=self.read_only, started_at=time.time(),
        ))
        limit = settings.CONSOLE_SESSIONS_PER_USER
        if not await lease.claim(limit):
            await self._end(code=CLOSE_LIMIT,
                             reason=f"you have {limit} consoles open; close one first")
            return
        self.lease = lease
        try:
            self.agent_ws = await agent.open_websocket(
                record.spec.node, agent_path(self.kind, self.uuid),
                read_only=self.read_only, session=lease.record.id, user=self.username,
            )
        except CloudError as exc:
            await self._end(code=CLOSE_AGENT_UNREACHABLE, reason=exc.message[:120])
            return
        local = await _local_sessions()
        local.add(lease.record.id, self._ended_elsewhere, user_id=self.user_id,
                  recheck=self._access_may_have_changed)
        await changes.opened(access.actor(self.scope), lease.record)
        log.info("console session %s: %s opened the %s console of %s (read-only: %s)",
                 lease.record.id, self.username, self.kind, self.uuid, self.read_only)
        await self.send(text_data=json.dumps({
            "type": "ready", "session": lease.record.id, "read_only": self.read_only,
            "idle_timeout": settings.CONSOLE_IDLE_TIMEOUT,
        }))
        self.tasks += [
            asyncio.create_task(self._from_agent()),
            asyncio.create_task(self._idle_watch()),
            asyncio.create_task(self._access_watch()),
            asyncio.create_task(lease.keep(lambda: (self.to_browser, self.from_browser),
                                           self._ended_elsewhere)),
        ]

    async def _from_agent(self) -> None:
        assert self.agent_ws is not None
        while True:
            message = await self.agent_ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                self.to_browser += len(message.data)
                await self.send(bytes_data=message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                if self.kind == "serial":
                    await self.send(text_data=message.data)
            else:
                break
        code = self.agent_ws.close_code
        reason = message.extra if isinstance(message.extra, str) and message.extra else \
            "the console closed"
        if code is None or code < 4000:
            # The agent went away (restarting, say): the page may try again.
            code, reason = 1011, "lost the connection to the node"
        await self._end(code=code, reason=reason[:120])

    async def _idle_watch(self) -> None:
        timeout = settings.CONSOLE_IDLE_TIMEOUT
        while True:
            remaining = self.last_input + timeout - time.monotonic()
            if remaining <= 0:
                await self._end(code=CLOSE_IDLE,
                                 reason=f"closed after {timeout} s without input")
                return
            await asyncio.sleep(remaining)

    def _access_may_have_changed(self) -> None:
        """A portal process changed this person's access (etcd told us)."""
        self.tasks.append(asyncio.get_running_loop().create_task(self._check_access()))

    async def _access_watch(self) -> None:
        """Re-check now and then as well, should a change not have reached
        us (etcd out of reach when it was made)."""
        while True:
            await asyncio.sleep(ACCESS_RECHECK_INTERVAL)
            await self._check_access()

    async def _check_access(self) -> None:
        """Close the console if its person may no longer use it as opened:
        the account disabled or logged out, the instance out of their sight,
        or (for a read-write console) their role now only a viewer's. The
        page reconnects by itself, and gets what they may have now."""
        if self.ending:
            return
        try:
            _, read_only = await console_target(await access_now(self.scope), self.uuid)
        except CloudError:
            allowed = False
        else:
            allowed = read_only <= self.read_only
        if not allowed:
            log.info("console session %s: the access of %s changed; closing it",
                     self.lease.record.id if self.lease else "-", self.username)
            await self._end(code=CLOSE_ACCESS_CHANGED, reason="your access changed")

    def _ended_elsewhere(self) -> None:
        asyncio.get_running_loop().create_task(
            self._end(code=CLOSE_ENDED_BY_ADMIN, reason="ended by an administrator"))

    async def _end(self, code: int, reason: str = "") -> None:
        """Close once, whoever asks first (the agent, the idle timer, an admin)."""
        if not self.ending:
            self.ending = True
            await self.close(code=code, reason=reason or None)

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", []):
            task.cancel()
        if getattr(self, "agent_ws", None) is not None:
            with contextlib.suppress(Exception):
                await self.agent_ws.close()
        if getattr(self, "lease", None) is not None:
            (await _local_sessions()).discard(self.lease.record.id)
            await self.lease.release()
            log.info("console session %s closed (%s bytes out, %s in)",
                     self.lease.record.id, self.to_browser, self.from_browser)
