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

    queue = WorkQueue(handle, workers=1, retry_first=60)
    worker = asyncio.create_task(queue.run())
    queue.add("bad")
    queue.add("good")
    await asyncio.sleep(0.2)
    worker.cancel()
    assert seen == ["bad", "good"]
    assert queue.waiting == 1  # "bad", waiting to be tried again


async def test_a_failed_pass_is_tried_again_with_backoff_until_it_works() -> None:
    """Nothing else may ever ask for that key again (an instance deleted while
    etcd was gone): the queue retries it by itself, waiting longer each time."""
    attempts: list[float] = []

    async def handle(key: str) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 4:
            raise RuntimeError("etcd is gone")

    queue = WorkQueue(handle, workers=1, retry_first=0.05, retry_max=0.15)
    worker = asyncio.create_task(queue.run())
    queue.add("deleting")
    await asyncio.wait_for(queue.wait_idle(), 3)
    worker.cancel()
    assert len(attempts) == 4
    gaps = [round(b - a, 2) for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and 0.15 <= gaps[2] < 0.3, gaps
    assert queue.waiting == 0
