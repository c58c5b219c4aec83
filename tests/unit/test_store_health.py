"""The live hub's etcd probe (portal/live/storehealth.py): it tells its
owner once when etcd stops answering and once when it answers again, and
only after the mirror has caught up."""

from __future__ import annotations

import asyncio

import pytest

from cloudstate.etcd import EtcdUnavailable
from portal.live import storehealth
from portal.live.storehealth import StoreHealth


class FakeEtcd:
    def __init__(self) -> None:
        self.up = True
        self.hang = False
        self.rev = 7

    async def revision(self) -> int:
        if self.hang:
            await asyncio.sleep(3600)
        if not self.up:
            raise EtcdUnavailable("connection refused")
        return self.rev


class FakeMirror:
    def __init__(self) -> None:
        self.revision = 7
        self.asked: list[int] = []

    async def wait_for_revision(self, revision: int, timeout: float = 10.0) -> None:
        self.asked.append(revision)
        if self.revision < revision:
            raise TimeoutError


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storehealth, "PROBE_INTERVAL", 0.01)
    monkeypatch.setattr(storehealth, "PROBE_TIMEOUT", 0.05)


async def until(condition, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_told_once_when_etcd_goes_and_once_when_the_mirror_caught_up() -> None:
    etcd, mirror, told = FakeEtcd(), FakeMirror(), []

    async def on_change(reachable: bool) -> None:
        told.append(reachable)

    health = StoreHealth(etcd, mirror, on_change)  # type: ignore[arg-type]
    task = asyncio.create_task(health.run())
    try:
        await asyncio.sleep(0.05)
        assert told == [] and health.reachable
        etcd.up = False
        await until(lambda: told == [False])
        await asyncio.sleep(0.05)
        assert told == [False] and not health.reachable
        # etcd answers, at a revision the mirror has not reached: still gone.
        etcd.up, etcd.rev = True, 9
        await until(lambda: 9 in mirror.asked)
        assert told == [False]
        mirror.revision = 9
        await until(lambda: told == [False, True])
        assert health.reachable
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_etcd_that_hangs_counts_as_gone() -> None:
    etcd, told = FakeEtcd(), []
    etcd.hang = True

    async def on_change(reachable: bool) -> None:
        told.append(reachable)

    health = StoreHealth(etcd, FakeMirror(), on_change)  # type: ignore[arg-type]
    task = asyncio.create_task(health.run())
    try:
        await until(lambda: told == [False])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_listener_that_fails_does_not_stop_the_probe() -> None:
    etcd, told = FakeEtcd(), []

    async def on_change(reachable: bool) -> None:
        told.append(reachable)
        raise RuntimeError("channel layer gone")

    health = StoreHealth(etcd, FakeMirror(), on_change)  # type: ignore[arg-type]
    task = asyncio.create_task(health.run())
    try:
        etcd.up = False
        await until(lambda: told == [False])
        etcd.up = True
        await until(lambda: told == [False, True])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
