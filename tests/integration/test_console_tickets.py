"""Console tickets and session slots against a real etcd, with several clients
standing in for several portal processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from cloudstate.consoles import ConsoleSession
from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from deploy.localetcd import LocalEtcd
from portal.consoles import sessions, tickets

pytestmark = pytest.mark.integration


def _bound(**overrides: object) -> dict:
    return {"user_id": 7, "instance": "i-1", "kind": "serial", "node": "n1",
            "read_only": False, **overrides}


async def test_a_ticket_is_used_once_and_holds_its_binding(etcd: Etcd, etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    ticket = await tickets.issue(etcd, keys, **_bound(read_only=True))
    # Only a hash of the ticket is stored.
    stored, _ = await etcd.get_prefix(keys.console_tickets)
    assert len(stored) == 1 and ticket not in stored[0].key and ticket.encode() not in \
        stored[0].value
    used = await tickets.consume(etcd, keys, ticket)
    assert used is not None
    assert used.matches(user_id=7, instance="i-1", kind="serial")
    assert used.read_only and used.node == "n1"
    assert not used.matches(user_id=8, instance="i-1", kind="serial")
    assert not used.matches(user_id=7, instance="i-2", kind="serial")
    assert not used.matches(user_id=7, instance="i-1", kind="vnc")
    assert await tickets.consume(etcd, keys, ticket) is None
    assert await tickets.consume(etcd, keys, "not-a-ticket-but-long-enough") is None
    assert await tickets.consume(etcd, keys, None) is None


async def test_an_expired_ticket_is_refused(etcd: Etcd, etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    ticket = await tickets.issue(etcd, keys, **_bound(), ttl=1)
    await asyncio.sleep(1.3)
    # Refused whether or not etcd has expired the lease yet.
    assert await tickets.consume(etcd, keys, ticket) is None


async def test_concurrent_uses_exactly_one_wins(etcd_server: LocalEtcd, etcd: Etcd,
                                                etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    clients = [etcd_server.client() for _ in range(8)]  # eight "portal processes"
    try:
        for _ in range(5):
            ticket = await tickets.issue(etcd, keys, **_bound())
            results = await asyncio.gather(*(tickets.consume(c, keys, ticket) for c in clients))
            assert sum(r is not None for r in results) == 1
    finally:
        await asyncio.gather(*(c.close() for c in clients))


def _session(session_id: str, user_id: int = 7) -> ConsoleSession:
    return ConsoleSession(id=session_id, user_id=user_id, username="u", instance="i-1",
                          instance_name="vm", namespace="ns", kind="serial", node="n1",
                          read_only=False, started_at=time.time())


async def test_slots_limit_sessions_per_person_across_processes(
        etcd_server: LocalEtcd, etcd: Etcd, etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    other = etcd_server.client()
    try:
        attempts = [sessions.SessionLease(client, keys, _session(f"s{n}"))
                    for n, client in enumerate([etcd, other, etcd, other, etcd])]
        claimed = await asyncio.gather(*(lease.claim(limit=3) for lease in attempts))
        assert sorted(claimed) == [False, False, True, True, True]
        assert {a.record.slot for a, ok in zip(attempts, claimed, strict=True) if ok} == {0, 1, 2}
        # Someone else has their own slots.
        assert await sessions.SessionLease(other, keys, _session("x", user_id=8)).claim(3)
        # Closing one frees its slot.
        first = next(a for a, ok in zip(attempts, claimed, strict=True) if ok)
        await first.release()
        assert await sessions.SessionLease(other, keys, _session("late")).claim(3)
    finally:
        await other.close()


async def test_ending_a_session_from_another_process(
        etcd_server: LocalEtcd, etcd: Etcd, etcd_prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    monkeypatch.setattr(sessions, "LEASE_TTL", 3)
    lease = sessions.SessionLease(etcd, keys, _session("ends"))
    assert await lease.claim(limit=2)
    ended = asyncio.Event()
    keeper = asyncio.create_task(lease.keep(lambda: (100, 5), ended.set))
    try:
        await asyncio.sleep(1.5)  # one refresh: the byte counts are written
        kv = await etcd.get(keys.console_session("ends"))
        assert ConsoleSession.from_json(kv.value).bytes_total == 105
        admin = etcd_server.client()
        try:
            assert await sessions.end(admin, keys, "ends")
            assert not await sessions.end(admin, keys, "ends")
        finally:
            await admin.close()
        assert (await etcd.get_prefix(keys.console_slots(7)))[0] == []
        # The serving process notices at its next refresh (its mirror, sooner).
        await asyncio.wait_for(ended.wait(), 5)
    finally:
        keeper.cancel()
        await lease.release()
