"""Several mirrors read as one (cloudstate.scopedmirror), as a node agent
reads its share of etcd: a part shown under another prefix, routing by key,
and read-your-writes that waits only on the parts holding what was written."""

from __future__ import annotations

import asyncio
import time

import pytest

from cloudstate.etcd import Put
from cloudstate.scopedmirror import Part, ScopedMirror
from deploy.localetcd import LocalEtcd
from tests.support.cloud import run_async

pytestmark = pytest.mark.integration


def test_parts_read_as_one_mirror(etcd_server: LocalEtcd, etcd_prefix: str) -> None:
    # In a thread's loop of its own: sync Playwright may hold this thread's.
    run_async(_parts_read_as_one_mirror(etcd_server, etcd_prefix.rstrip("/")))


async def _parts_read_as_one_mirror(server: LocalEtcd, p: str) -> None:
    etcd = server.client()
    await etcd.txn([], [Put(f"{p}/nodes/a", b"1"), Put(f"{p}/on/a/instances/i1", b"mine"),
                        Put(f"{p}/on/b/instances/i2", b"theirs"),
                        Put(f"{p}/instances/i1", b"everyone's")])
    mirror = ScopedMirror(etcd, [Part(f"{p}/nodes/"),
                                 Part(f"{p}/on/a/instances/", shown_as=f"{p}/instances/")])
    seen: list[str] = []
    mirror.subscribe(lambda changes: seen.extend(c.key for c in changes))
    task = asyncio.ensure_future(mirror.run())
    try:
        await asyncio.wait_for(mirror.ready.wait(), 10)
        # Its own copy, read where the record lives; nothing of node b's.
        kv = mirror.get(f"{p}/instances/i1")
        assert kv is not None and kv.value == b"mine"
        assert [kv.key for kv in mirror.items(f"{p}/")] == [f"{p}/nodes/a",
                                                           f"{p}/instances/i1"]
        assert mirror.get(f"{p}/on/b/instances/i2") is None
        # A write to one part: waiting on that part alone is prompt, and the
        # change reaches subscribers under the shown key.
        result = await etcd.txn([], [Put(f"{p}/on/a/instances/i3", b"new")])
        started = time.monotonic()
        await mirror.wait_for_revision(result.revision, keys=[f"{p}/instances/i3"])
        assert time.monotonic() - started < 1.0
        assert mirror.get(f"{p}/instances/i3") is not None
        assert f"{p}/instances/i3" in seen
        # Every part, when no key is named (the idle one asks etcd).
        await mirror.wait_for_revision(result.revision)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await etcd.delete_prefix(f"{p}/")
        await etcd.close()


def test_parts_may_not_nest() -> None:
    with pytest.raises(ValueError, match="inside another part"):
        ScopedMirror(None, [Part("/x/"), Part("/x/y/")])  # type: ignore[arg-type]
