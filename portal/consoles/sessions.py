"""Live console sessions, visible to every portal process through etcd.

Each session holds one of its person's numbered slots (at most the per-user
limit exist, and claiming one is a create-if-absent transaction, so the
limit holds across processes) and a record the admin page lists, both on a
lease the serving process keeps alive. An administrator ends a session from
any process by deleting its keys; the serving process sees the delete (its
live mirror, or at the latest its next refresh) and closes the connection.
If the process dies, the lease expires and the keys go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

from cloudstate.consoles import ConsoleSession
from cloudstate.etcd import Compare, Delete, Etcd, EtcdUnavailable, Put
from cloudstate.keys import Keys
from cloudstate.mirror import Change, Mirror
from cloudstate.vocabulary import ObjectKind

log = logging.getLogger(__name__)

LEASE_TTL = 15
PORTAL_ID = f"{socket.gethostname()}:{os.getpid()}"


class SessionLease:
    """One session's keys in etcd, from claim to release."""

    def __init__(self, etcd: Etcd, keys: Keys, record: ConsoleSession):
        self._etcd = etcd
        self._keys = keys
        self.record = record
        self._lease = 0
        self._revision = 0  # the record's mod revision, as we last wrote it

    @property
    def key(self) -> str:
        return self._keys.console_session(self.record.id)

    def _slot_key(self) -> str:
        return self._keys.console_slot(self.record.user_id, self.record.slot)

    async def claim(self, limit: int) -> bool:
        """Take a free slot of the person's; False if all ``limit`` are taken."""
        self._lease = await self._etcd.grant_lease(LEASE_TTL)
        for slot in range(limit):
            record = self.record.replace(slot=slot, portal=PORTAL_ID, updated_at=time.time())
            slot_key = self._keys.console_slot(record.user_id, slot)
            result = await self._etcd.txn(
                [Compare.absent(slot_key)],
                [Put(slot_key, record.id, lease=self._lease),
                 Put(self.key, record.to_json(), lease=self._lease)],
            )
            if result.succeeded:
                self.record, self._revision = record, result.revision
                return True
        await self._revoke()
        return False

    async def keep(self, counters: Callable[[], tuple[int, int]],
                   on_ended: Callable[[], None]) -> None:
        """Keep the lease alive and the byte counts current until cancelled;
        call ``on_ended`` if the session was ended elsewhere."""
        while True:
            await asyncio.sleep(LEASE_TTL / 3)
            try:
                if await self._etcd.refresh_lease(self._lease) <= 0:
                    on_ended()  # the lease lapsed (etcd was out of reach too long)
                    return
                to_browser, from_browser = counters()
                if (to_browser, from_browser) == (self.record.bytes_to_browser,
                                                  self.record.bytes_from_browser):
                    # Nothing to write; a read tells whether it was ended.
                    current = await self._etcd.get(self.key)
                    if current is None or current.mod_revision != self._revision:
                        on_ended()
                        return
                    continue
                record = self.record.replace(bytes_to_browser=to_browser,
                                             bytes_from_browser=from_browser,
                                             updated_at=time.time())
                result = await self._etcd.txn(
                    [Compare.unchanged_since(self.key, self._revision)],
                    [Put(self.key, record.to_json(), lease=self._lease)],
                )
                if not result.succeeded:
                    on_ended()
                    return
                self.record, self._revision = record, result.revision
            except EtcdUnavailable as exc:
                log.warning("console session %s: etcd unavailable: %s", self.record.id, exc)

    async def release(self) -> None:
        with contextlib.suppress(EtcdUnavailable):
            await self._etcd.txn(
                [Compare.value_is(self._slot_key(), self.record.id)],
                [Delete(self._slot_key()), Delete(self.key)],
            )
        await self._revoke()

    async def _revoke(self) -> None:
        if self._lease:
            lease, self._lease = self._lease, 0
            with contextlib.suppress(EtcdUnavailable):
                await self._etcd.revoke_lease(lease)


def listed(mirror: Mirror, keys: Keys) -> list[ConsoleSession]:
    """Every live session in the cloud, oldest first."""
    sessions = [ConsoleSession.from_json(kv.value) for kv in mirror.items(keys.console_sessions)]
    return sorted(sessions, key=lambda s: (s.started_at, s.id))


def count_for(mirror: Mirror, keys: Keys, user_id: int) -> int:
    return sum(1 for _ in mirror.items(keys.console_slots(user_id)))


async def end(etcd: Etcd, keys: Keys, session_id: str) -> bool:
    """End a session from any portal process; False if it was gone already."""
    kv = await etcd.get(keys.console_session(session_id))
    if kv is None:
        return False
    record = ConsoleSession.from_json(kv.value)
    slot_key = keys.console_slot(record.user_id, record.slot)
    ops = [Delete(kv.key)]
    slot = await etcd.get(slot_key)
    if slot is not None and slot.value == record.id.encode():
        ops.append(Delete(slot_key))
    result = await etcd.txn([Compare.unchanged_since(kv.key, kv.mod_revision)], ops)
    return result.succeeded


class LocalSessions:
    """The sessions this process serves: told when one is ended elsewhere,
    and when its person's access changed (in any process)."""

    def __init__(self, mirror: Mirror, keys: Keys):
        self._keys = keys
        self._enders: dict[str, Callable[[], None]] = {}
        self._checkers: dict[str, tuple[int, Callable[[], None]]] = {}
        mirror.subscribe(self._on_changes)

    def add(self, session_id: str, end: Callable[[], None], *, user_id: int,
            recheck: Callable[[], None]) -> None:
        self._enders[session_id] = end
        self._checkers[session_id] = (user_id, recheck)

    def discard(self, session_id: str) -> None:
        self._enders.pop(session_id, None)
        self._checkers.pop(session_id, None)

    def _on_changes(self, changes: list[Change]) -> None:
        for change in changes:
            user_id = self._keys.user_of_access_change(change.key)
            if user_id is not None:
                for owner, recheck in list(self._checkers.values()):
                    if owner == user_id:
                        recheck()
                continue
            found = self._keys.classify(change.key)
            if change.new is None and found is not None and found.kind == ObjectKind.CONSOLE:
                self._checkers.pop(found.uuid, None)
                ender = self._enders.pop(found.uuid, None)
                if ender is not None:
                    ender()
