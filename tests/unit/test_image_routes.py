"""The agent serves, to a holder of a valid grant, only the snapshots it took
itself: never a downloaded image, nor another node's snapshot (or its copy)."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from cloudstate.model import Image
from nodeagent.images.cache import CachedImage
from nodeagent.images.routes import ImageRoutes
from nodeagent.images.sync import cache_key, snapshot_path
from nodeagent.server import AgentServer
from tests.support.pki import make_pki

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
def pki(tmp_path: Path) -> Path:
    make_pki(tmp_path / "pki", agents=["node-a", "node-b"])
    return tmp_path / "pki"


@pytest.fixture
async def server(tmp_path: Path, pki: Path) -> AsyncIterator[AgentServer]:
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
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET,
                          server_tls=tls.ServerTls(tls.agent(pki, "node-a")))
    ImageRoutes(server=running, images=FakeImages("node-a", cache, records)).register()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def other_agent(pki: Path) -> ssl.SSLContext:
    """Another node's agent, copying a snapshot as it would."""
    return tls.client_context(tls.agent(pki, "node-b"))


async def _get(server: AgentServer, uuid: str, context: ssl.SSLContext, *,
               grant: bool = True) -> tuple[int, bytes]:
    path = snapshot_path(uuid)
    claims = grant_claims(node="node-a", method="GET", path=path)
    token = signing.sign(SECRET, AGENT_GRANT_PURPOSE, claims, 30)
    headers = {"Authorization": f"Bearer {token}"} if grant else {}
    async with aiohttp.ClientSession() as http, \
            http.get(f"https://127.0.0.1:{server.port}{path}", headers=headers,
                     ssl=context) as response:
        return response.status, await response.read()


async def test_its_own_snapshot_is_served(server: AgentServer,
                                          other_agent: ssl.SSLContext) -> None:
    status, body = await _get(server, OURS, other_agent)
    assert status == 200 and body == b"bytes of ours" * 1000


@pytest.mark.parametrize("uuid", [THEIRS, DOWNLOADED, "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0aff"])
async def test_nothing_else_is(server: AgentServer, other_agent: ssl.SSLContext,
                               uuid: str) -> None:
    assert (await _get(server, uuid, other_agent))[0] == 404


async def test_not_without_a_grant(server: AgentServer, other_agent: ssl.SSLContext) -> None:
    assert (await _get(server, OURS, other_agent, grant=False))[0] == 401
