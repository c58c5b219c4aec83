"""A serial console viewer's output queue: joined, in order, bounded."""

from __future__ import annotations

import asyncio

from cloudstate.consoles import CLOSE_TOO_SLOW
from nodeagent.consoles.serial import Viewer


async def test_output_comes_in_order_with_bytes_joined() -> None:
    viewer = Viewer(read_only=False, limit=100)
    viewer.feed(b"ab")
    viewer.feed(b"cd")
    viewer.feed('{"type": "viewers", "count": 2}')
    viewer.feed(b"ef")
    assert await viewer.next() == b"abcd"
    assert await viewer.next() == '{"type": "viewers", "count": 2}'
    assert await viewer.next() == b"ef"
    waiting = asyncio.create_task(viewer.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing to send: it waits, without polling
    viewer.feed(b"g")
    assert await waiting == b"g"


async def test_a_viewer_that_falls_behind_is_ended_not_buffered() -> None:
    viewer = Viewer(read_only=False, limit=10)
    viewer.feed(b"12345678")
    viewer.feed(b"90x")  # over the limit
    assert viewer.end_code == CLOSE_TOO_SLOW
    viewer.feed(b"more")  # ignored once ended
    assert await viewer.next() is None
