"""The agent's side of the event log: a spool on disk and a sender.

Every event is written to its own small file in the spool before anything
else happens to it, so an agent that can't reach the portal (down, being
upgraded, a network hiccup) loses none: the sender delivers them in order
once the portal is back, and deletes each file only when the portal has
acknowledged storing it. Idle, the sender waits on an asyncio.Event.

The portal takes events on a listener of its own for agents (not the one
browsers use): TLS, where each side checks the other's certificate from the
cloud's CA, and the agent's certificate must name the node its token names.
Each connection opens with a fresh token, signed with the cluster secret and
good once (its id is spent in etcd by the portal), so a token seen on the
wire can't be used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import websockets

from cloudstate import signing, tls

log = logging.getLogger(__name__)

PURPOSE = "agent-events"  # the portal's portal.events.agents.PURPOSE
EVENTS_PATH = "/ws/agent/events/"
BATCH = 100
ACK_TIMEOUT = 30.0
TOKEN_TTL = 120.0
MAX_BACKOFF = 10.0
# A portal away for very long must not fill the node's disk: past this the
# oldest events go (and the agent says so loudly).
MAX_SPOOLED = 100_000


def events_url(portal_url: str) -> str:
    """``https://portal:13002`` -> ``wss://portal:13002/ws/agent/events/``."""
    parts = urlsplit(portal_url.rstrip("/"))
    if parts.scheme not in ("https", "wss") or not parts.netloc:
        raise ValueError(f"SFCLOUD_PORTAL_URL: {portal_url!r} is not an https URL "
                         "(agents send events over TLS only)")
    return urlunsplit(("wss", parts.netloc, parts.path + EVENTS_PATH, "", ""))


class EventSpool:
    """One JSON file per event, named so that sorting the names orders them."""

    def __init__(self, directory: Path, *, max_events: int = MAX_SPOOLED):
        self.directory = directory
        self.max_events = max_events
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def add(self, event: dict[str, Any]) -> None:
        name = f"{time.time_ns():020d}-{event['id']}.json"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(event, separators=(",", ":")))
        os.replace(tmp, self.directory / name)

    def _names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.directory) if n.endswith(".json"))

    def pending(self, limit: int = BATCH) -> list[tuple[str, dict[str, Any]]]:
        """The oldest ``limit`` events, as (file name, event)."""
        names = self._names()
        if len(names) > self.max_events:
            dropped = names[: len(names) - self.max_events]
            log.error("event spool holds more than %d events; dropping the %d oldest",
                      self.max_events, len(dropped))
            self.remove(dropped)
            names = names[len(dropped):]
        found = []
        for name in names[:limit]:
            try:
                found.append((name, json.loads((self.directory / name).read_text())))
            except (OSError, ValueError):
                # Unreadable (a disk error, or written by hand): not worth
                # blocking every later event for.
                log.warning("dropping unreadable spooled event %s", name)
                (self.directory / name).unlink(missing_ok=True)
        return found

    def remove(self, names: list[str]) -> None:
        for name in names:
            (self.directory / name).unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._names())


class EventLog:
    """What the rest of the agent calls: ``emit`` is cheap and never blocks on
    the network."""

    def __init__(self, spool: EventSpool):
        self.spool = spool
        self.wakeup = asyncio.Event()

    def emit(self, kind: str, object_uuid: str, message: str, *, type: str = "mutate",
             duration: float | None = None, extra: dict[str, Any] | None = None) -> None:
        event = {
            "id": str(uuidlib.uuid4()), "kind": kind, "uuid": object_uuid, "type": type,
            "timestamp": time.time(), "message": message,
            "duration": None if duration is None else round(duration, 3), "extra": extra,
        }
        try:
            self.spool.add(event)
        except OSError:
            log.exception("could not spool event %r", message)
            return
        self.wakeup.set()


class PortalRefused(OSError):
    """The far end of the events socket is not the cloud's portal."""


def event_token(secret: bytes, node: str) -> str:
    """A token for one events connection: names the node, expires soon, and
    carries an id the portal accepts once."""
    return signing.sign(secret, PURPOSE, {"node": node, "jti": secrets.token_urlsafe(16)},
                        ttl=TOKEN_TTL)


class EventSender:
    def __init__(self, events: EventLog, *, url: str, node: str, secret: bytes,
                 client_tls: tls.ClientTls):
        self._events = events
        self._url = url
        self._node = node
        self._secret = secret
        self._tls = client_tls
        self.delivered = 0

    async def run(self) -> None:
        backoff = 1.0
        failing = False
        while True:
            await self._wait_for_events()
            try:
                await self._deliver()
                backoff = 1.0
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                # Said once per outage, not at every retry.
                log.log(logging.DEBUG if failing else logging.WARNING,
                        "cannot deliver events to the portal at %s (%s); keeping %d on disk "
                        "and retrying", self._url, exc, len(self._events.spool))
                failing = True
                await asyncio.sleep(backoff * (0.8 + 0.4 * secrets.randbelow(100) / 100))
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if failing:
                log.info("the portal at %s is reachable again; events delivered", self._url)
                failing = False

    async def _wait_for_events(self) -> None:
        if not len(self._events.spool):
            self._events.wakeup.clear()
            # Spooled between the check and the clear? add() sets it after writing.
            if not len(self._events.spool):
                await self._events.wakeup.wait()

    async def _deliver(self) -> None:
        token = event_token(self._secret, self._node)
        async with websockets.connect(
            self._url, additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10, max_size=1 << 20, ssl=self._tls.current(),
        ) as connection:
            peer = tls.peer_from_transport(connection.transport)
            if peer is None or peer.role != tls.ROLE_PORTAL:
                raise PortalRefused(f"{self._url} answered with the certificate of "
                                    f"{peer or 'something else'}, not the portal's")
            while True:
                batch = self._events.spool.pending(BATCH)
                if not batch:
                    self._events.wakeup.clear()
                    if not len(self._events.spool):
                        # Stay connected while idle; a closed connection
                        # (portal restart) ends the wait and we reconnect.
                        waiter = asyncio.ensure_future(self._events.wakeup.wait())
                        closed = asyncio.ensure_future(connection.wait_closed())
                        try:
                            await asyncio.wait({waiter, closed},
                                               return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            for task in (waiter, closed):
                                task.cancel()
                                with contextlib.suppress(asyncio.CancelledError):
                                    await task
                        if connection.close_code is not None:
                            return
                    continue
                await connection.send(json.dumps({"events": [event for _, event in batch]}))
                reply = json.loads(await asyncio.wait_for(connection.recv(), ACK_TIMEOUT))
                acked = set(reply.get("ack") or [])
                done = [name for name, event in batch if event.get("id") in acked]
                self._events.spool.remove(done)
                self.delivered += len(done)
                if len(done) < len(batch):
                    raise OSError("the portal did not acknowledge every event")
