"""The agent serves, to a holder of a valid grant, only the snapshots it took
itself: never a downloaded image, nor another node's snapshot (or its copy)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from cloudstate import signing
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from cloudstate.model import Image
from nodeagent.images.cache import CachedImage
from nodeagent.images.routes import ImageRoutes
from nodeagent.images.sync import cache_key, snapshot_path
from nodeagent.server import AgentServer

SECRET = b"a-test-cluster-secret-of-enough-length"
OURS = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01"
THEIRS = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a02"
DOWNLOADED = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a03"


@dataclass
class FakeCache:
    files: dict[str, Path] = field(default_factory=dict)

    def lookup(self, key: str) -> CachedImage | None:
        path = self.files.get(key)
        if path is None:
            return None
        data = path.read_bytes()
        return CachedImage(path=path, format="qcow2", virtual_size=len(data), size=len(data),
                           sha256=hashlib.sha256(data).hexdigest())


@dataclass
class FakeImages:
    """What ImageRoutes reads of ImageSync."""

    node: str
    cache: FakeCache
    records: dict[str, Image]

    def image(self, uuid: str) -> Image | None:
        return self.records.get(uuid)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AgentServer]:
    records = {
        OURS: Image(uuid=OURS, name="ours", namespace="ns", source_url="sf://x", kind="snapshot",
                    node="node-a"),
        THEIRS: Image(uuid=THEIRS, name="theirs", namespace="ns", source_url="sf://y",
                      kind="snapshot", node="node-b"),
        DOWNLOADED: Image(uuid=DOWNLOADED, name="web", namespace="ns",
                          source_url="http://example.org/disk.qcow2"),
    }
    cache = FakeCache()
    for uuid, image in records.items():  # this node holds a copy of every one
        path = tmp_path / f"{uuid}.qcow2"
        path.write_bytes(f"bytes of {image.name}".encode() * 1000)
        cache.files[cache_key(image)] = path
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET)
    ImageRoutes(server=running, images=FakeImages("node-a", cache, records)).register()
    await running.start()
    yield running
    await running.stop()


async def _get(server: AgentServer, uuid: str, *, grant: bool = True) -> tuple[int, bytes]:
    path = snapshot_path(uuid)
    claims = grant_claims(node="node-a", method="GET", path=path)
    token = signing.sign(SECRET, AGENT_GRANT_PURPOSE, claims, 30)
    headers = {"Authorization": f"Bearer {token}"} if grant else {}
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{server.port}{path}", headers=headers) as response:
        return response.status, await response.read()


async def test_its_own_snapshot_is_served(server: AgentServer) -> None:
    status, body = await _get(server, OURS)
    assert status == 200 and body == b"bytes of ours" * 1000


@pytest.mark.parametrize("uuid", [THEIRS, DOWNLOADED, "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0aff"])
async def test_nothing_else_is(server: AgentServer, uuid: str) -> None:
    assert (await _get(server, uuid))[0] == 404


async def test_not_without_a_grant(server: AgentServer) -> None:
    assert (await _get(server, OURS, grant=False))[0] == 401
