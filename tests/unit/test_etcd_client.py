"""cloudstate.etcd logic that needs no etcd: channel lifetime, lease keeping,
grouping watch events by revision."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aetcd
import aetcd.exceptions as aetcd_errors
import grpc
import grpc.aio
import pytest

import cloudstate.etcd
from cloudstate.etcd import Etcd, EtcdUnavailable, _by_revision, _is_unavailable
from cloudstate.tls import Credentials

# These tests replace the channel; the files are never read.
NO_FILES = Credentials(Path("/nonexistent/ca.crt"), Path("/nonexistent/t.crt"),
                       Path("/nonexistent/t.key"))


class FakeClient:
    """Stands in for aetcd.Client. Like a grpc.aio channel, closing it cancels
    the calls still running on it."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.slow_started = asyncio.Event()
        self.release = asyncio.Event()

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        self.closed.set()

    async def get(self, key: bytes) -> None:
        if key == b"/fail":
            raise aetcd_errors.ConnectionFailedError("connection refused")
        if key == b"/slow":
            self.slow_started.set()
            released = asyncio.ensure_future(self.release.wait())
            closed = asyncio.ensure_future(self.closed.wait())
            await asyncio.wait([released, closed], return_when=asyncio.FIRST_COMPLETED)
            released.cancel()
            closed.cancel()
            if not self.release.is_set():
                raise asyncio.CancelledError  # what grpc.aio does
        return None


async def test_a_failed_call_does_not_close_the_channel_under_other_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients: list[FakeClient] = []

    def new_client(self: Etcd) -> Any:
        clients.append(FakeClient())
        return clients[-1]

    monkeypatch.setattr(Etcd, "_new_client", new_client)
    etcd = Etcd([("127.0.0.1", 1)], tls=NO_FILES)
    async with asyncio.timeout(5):
        assert await etcd.get("/ok") is None
        slow = asyncio.create_task(etcd.get("/slow"))
        await clients[0].slow_started.wait()

        with pytest.raises(EtcdUnavailable):
            await etcd.get("/fail")
        assert not clients[0].closed.is_set()  # `slow` still runs on it

        assert await etcd.get("/ok") is None
        assert len(clients) == 2  # later calls got a fresh channel

        clients[0].release.set()
        assert await slow is None  # finished normally, not cancelled
        assert clients[0].closed.is_set()  # and then the old channel went
        assert not clients[1].closed.is_set()

        await etcd.close()
        assert clients[1].closed.is_set()


async def test_missing_certificate_files_make_etcd_unavailable_naming_the_file() -> None:
    """As with etcd down, callers answer 503 or try again later (a renewal
    that took a file away for a moment), rather than fail with a new error."""
    etcd = Etcd([("127.0.0.1", 1)], tls=NO_FILES)
    with pytest.raises(EtcdUnavailable, match="/nonexistent/ca.crt"):
        await etcd.get("/anything")
    await etcd.close()


async def test_renewed_certificate_files_move_new_calls_to_a_new_channel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    files = Credentials(tmp_path / "ca.crt", tmp_path / "p.crt", tmp_path / "p.key")
    for path in (files.ca, files.cert, files.key):
        path.write_text("pem")
    clients: list[FakeClient] = []

    def new_client(self: Etcd) -> Any:
        clients.append(FakeClient())
        return clients[-1]

    monkeypatch.setattr(Etcd, "_new_client", new_client)
    monkeypatch.setattr(cloudstate.etcd, "TLS_RECHECK_INTERVAL", 0.0)
    etcd = Etcd([("127.0.0.1", 1)], tls=files)
    async with asyncio.timeout(5):
        assert await etcd.get("/ok") is None
        slow = asyncio.create_task(etcd.get("/slow"))  # a call (a watch, say) in flight
        await clients[0].slow_started.wait()
        assert await etcd.get("/ok") is None
        assert len(clients) == 1  # nothing changed: the same channel

        files.cert.write_text("renewed pem")  # what `deploy.pki renew` does, by rename
        assert await etcd.get("/ok") is None
        assert len(clients) == 2  # a new channel, with the new files
        assert not clients[0].closed.is_set()  # the call in flight carries on
        clients[0].release.set()
        assert await slow is None
        assert clients[0].closed.is_set()  # and then the old channel goes
        await etcd.close()


class LeaseEtcd(Etcd):
    """Lease calls answered in memory."""

    def __init__(self) -> None:
        super().__init__([("127.0.0.1", 1)], tls=NO_FILES)
        self.granted: list[int] = []
        self.revoked: list[int] = []
        self.expired: set[int] = set()

    async def grant_lease(self, ttl: int) -> int:
        self.granted.append(len(self.granted) + 1)
        return self.granted[-1]

    async def refresh_lease(self, lease_id: int) -> int:
        return 0 if lease_id in self.expired else 2

    async def revoke_lease(self, lease_id: int) -> None:
        self.revoked.append(lease_id)


class _QuickAsyncio:
    """asyncio with sleeps cut short, for hold_lease's refresh pacing."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float) -> None:
        await asyncio.sleep(min(delay, 0.01))


async def test_hold_lease_recovers_from_a_failed_attach_and_a_lost_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cloudstate.etcd, "asyncio", _QuickAsyncio())
    etcd = LeaseEtcd()
    attached: list[int] = []
    changed = asyncio.Event()
    lost = asyncio.Event()
    failures = [EtcdUnavailable("etcd went away mid-attach")]

    async def attach(lease: int) -> None:
        if failures:
            raise failures.pop()
        attached.append(lease)
        changed.set()

    task = asyncio.create_task(etcd.hold_lease(2, attach, on_lost=lost.set))
    try:
        async with asyncio.timeout(5):
            await changed.wait()
            # The half-attached lease 1 is left to its TTL; 2 is attached whole.
            assert etcd.granted == [1, 2] and attached == [2]
            changed.clear()
            etcd.expired.add(2)
            await lost.wait()
            await changed.wait()
        assert attached == [2, 3]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert etcd.revoked == [3]  # the live lease goes with the task


def raw_event(kind: int, key: str, revision: int) -> Any:
    kv = aetcd.rpc.KeyValue(key=key.encode(), value=b"v", mod_revision=revision)
    return aetcd.rpc.Event(type=kind, kv=kv)


def test_events_are_grouped_by_revision() -> None:
    put, delete = aetcd.rpc.Event.PUT, aetcd.rpc.Event.DELETE
    raw = [
        raw_event(put, "/a", 5),
        raw_event(put, "/b", 6),
        raw_event(delete, "/c", 6),
        raw_event(put, "/a", 7),
    ]
    batches = list(_by_revision(raw))
    assert [[(e.kind, e.kv.key, e.revision) for e in b] for b in batches] == [
        [("put", "/a", 5)],
        [("put", "/b", 6), ("delete", "/c", 6)],
        [("put", "/a", 7)],
    ]
    assert list(_by_revision([])) == []


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def as_raised_by_aetcd(error: grpc.aio.AioRpcError) -> Exception:
    try:
        aetcd_errors._handle_exception(error)
    except aetcd_errors.ClientError as exc:
        return exc
    raise AssertionError("aetcd did not raise")


@pytest.mark.parametrize(
    ("code", "details", "unavailable"),
    [
        (grpc.StatusCode.UNAVAILABLE, "connection refused", True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", True),
        (grpc.StatusCode.CANCELLED, "context canceled", True),  # etcd stopping
        (grpc.StatusCode.UNKNOWN, "raft: stopped", True),  # etcd stopping, 3.4
        # etcd stopping with TLS connections open: the stream ends unanswered.
        (grpc.StatusCode.UNKNOWN, "No status received", True),
        (grpc.StatusCode.UNKNOWN, "Stream removed (Data frame with END_STREAM flag received)",
         True),
        # A member that lost its quorum, keeping a lease alive (3.4).
        (grpc.StatusCode.UNKNOWN, "context deadline exceeded", True),
        (grpc.StatusCode.UNKNOWN, "something else", False),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided", False),
        (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: requested lease not found", False),
    ],
)
def test_which_errors_mean_unavailable(
    code: grpc.StatusCode, details: str, unavailable: bool
) -> None:
    error = rpc_error(code, details)
    assert _is_unavailable(error) is unavailable  # raw stubs (txn, revision)
    assert _is_unavailable(as_raised_by_aetcd(error)) is unavailable  # aetcd's methods
