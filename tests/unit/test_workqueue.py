from __future__ import annotations

import asyncio

from nodeagent.workqueue import WorkQueue


async def test_repeated_keys_collapse_and_never_run_concurrently() -> None:
    running: set[str] = set()
    calls: list[str] = []
    overlap = False
    release = asyncio.Event()

    async def handle(key: str) -> None:
        nonlocal overlap
        overlap |= key in running
        running.add(key)
        calls.append(key)
        await release.wait()
        running.discard(key)

    queue = WorkQueue(handle, workers=3)
    worker = asyncio.create_task(queue.run())
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    await asyncio.sleep(0.05)
    # "a" is running; more events for it while it runs mean one more pass.
    for _ in range(5):
        queue.add("a")
    release.set()
    await asyncio.wait_for(queue.wait_idle(), 2)
    worker.cancel()
    assert sorted(calls) == ["a", "a", "b"]
    assert not overlap


async def test_a_failing_handler_does_not_stop_the_queue() -> None:
    seen: list[str] = []

    async def handle(key: str) -> None:
        seen.append(key)
        if key == "bad":
            raise RuntimeError("boom")

    queue = WorkQueue(handle, workers=1)
    worker = asyncio.create_task(queue.run())
    queue.add("bad")
    queue.add("good")
    await asyncio.wait_for(queue.wait_idle(), 2)
    worker.cancel()
    assert seen == ["bad", "good"]
