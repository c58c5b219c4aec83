"""The agent's periodic chores survive a failed round (nodeagent/periodic.py):
regression for the agent dying when etcd was gone longer than its node
record's refresh interval (the 3-minute etcd outage)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from cloudstate.etcd import EtcdUnavailable
from cloudstate.keys import Keys
from nodeagent import agent, periodic


async def run_rounds(failures: list[BaseException]) -> list[int]:
    rounds: list[int] = []
    done = asyncio.Event()

    async def chore() -> None:
        rounds.append(len(rounds))
        if failures:
            raise failures.pop(0)
        done.set()

    task = asyncio.create_task(periodic.every(0.01, chore, "a chore"))
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return rounds


async def test_etcd_gone_for_rounds_on_end_is_tried_again(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    rounds = await run_rounds([EtcdUnavailable("connection refused")] * 3)
    assert rounds == [0, 1, 2, 3]
    assert "a chore: etcd unavailable (connection refused)" in caplog.text


async def test_any_failed_round_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    assert await run_rounds([RuntimeError("bug")]) == [0, 1]
    assert "a chore failed" in caplog.text and "RuntimeError: bug" in caplog.text


async def test_cancelling_stops_it() -> None:
    async def chore() -> None:
        pass

    task = asyncio.create_task(periodic.every(0.01, chore, "nothing"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class GoneEtcd:
    """etcd gone for the first ``down`` writes, then back."""

    def __init__(self, down: int):
        self.down = down
        self.written: list[str] = []

    async def put(self, key: str, value: object) -> None:
        if self.down:
            self.down -= 1
            raise EtcdUnavailable("connection refused")
        self.written.append(key)


async def test_the_node_record_refresh_outlives_an_etcd_outage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "NODE_INFO_REFRESH", 0.01)
    etcd = GoneEtcd(down=3)
    node = SimpleNamespace(
        etcd=etcd, keys=Keys("/sfcloud-test"), settings=SimpleNamespace(node_name="n1"),
        mirror=SimpleNamespace(get=lambda key: None),  # no record yet: it is written
        _node_info=lambda virt: SimpleNamespace(to_json=lambda: "{}"))
    task = asyncio.create_task(agent.Agent._refresh_node_info(node, None))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            while not etcd.written:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert etcd.written[0] == Keys("/sfcloud-test").node("n1")
