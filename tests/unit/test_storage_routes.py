"""The agent's storage routes, to a holder of a valid grant: the blobs this
node holds (whole or a range), and uploads appended to, measured, cut back
and sealed into blobs (checked against the checksum the grant carries)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudstate import signing
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from cloudstate.model import Blob
from cloudstate.urlguard import FetchPolicy
from nodeagent.images.blobs import BlobStore, StoredBlob
from nodeagent.images.routes import StorageRoutes
from nodeagent.images.uploads import UploadStore
from nodeagent.server import AgentServer

SECRET = b"a-test-cluster-secret-of-enough-length"
HELD = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01"
ELSEWHERE = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a02"
UPLOAD = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a03"
SEALED = "0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a04"
DATA = bytes(range(256)) * 400


@dataclass
class FakeSync:
    """What StorageRoutes reads of BlobSync."""

    node: str
    blobs: BlobStore
    records: dict[str, Blob] = field(default_factory=dict)

    def blob(self, uuid: str) -> Blob | None:
        return self.records.get(uuid)

    async def ensure(self, blob: Blob) -> StoredBlob:
        raise AssertionError("only file blobs are made on demand")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[AgentServer, FakeSync, UploadStore]]:
    store = BlobStore(tmp_path / "blobs", FetchPolicy())
    scratch = store.scratch_path("held")
    scratch.write_bytes(DATA)
    await store.adopt(HELD, scratch)
    sync = FakeSync("node-a", store, {HELD: Blob(uuid=HELD, namespace="ns", origin="upload",
                                                 node="node-a")})
    uploads = UploadStore(tmp_path / "uploads")
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET)
    StorageRoutes(server=running, blobs=sync, uploads=uploads).register()  # type: ignore[arg-type]
    await running.start()
    yield running, sync, uploads
    await running.stop()


async def _call(server: AgentServer, method: str, path: str, *, data: bytes | None = None,
                headers: dict[str, str] | None = None, grant: bool = True,
                **claims: Any) -> tuple[int, bytes, dict[str, str]]:
    token = signing.sign(SECRET, AGENT_GRANT_PURPOSE,
                         grant_claims(node="node-a", method=method, path=path, **claims), 30)
    sent = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if grant else {})}
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{server.port}{path}", data=data,
            headers=sent) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_a_blob_held_here_is_served_whole_or_in_part(server) -> None:  # type: ignore[no-untyped-def]
    running, _, _ = server
    status, body, _ = await _call(running, "GET", f"/blobs/{HELD}")
    assert status == 200 and body == DATA
    status, body, headers = await _call(running, "GET", f"/blobs/{HELD}",
                                        headers={"Range": "bytes=100-299"})
    assert status == 206 and body == DATA[100:300]
    assert headers["Content-Range"] == f"bytes 100-299/{len(DATA)}"
    status, _, _ = await _call(running, "GET", f"/blobs/{HELD}",
                               headers={"Range": f"bytes={len(DATA)}-"})
    assert status == 416


@pytest.mark.parametrize("uuid", [ELSEWHERE, "not-a-uuid"])
async def test_a_blob_not_held_is_not(server, uuid: str) -> None:  # type: ignore[no-untyped-def]
    assert (await _call(server[0], "GET", f"/blobs/{uuid}"))[0] in (400, 404)


async def test_nothing_without_a_grant(server) -> None:  # type: ignore[no-untyped-def]
    assert (await _call(server[0], "GET", f"/blobs/{HELD}", grant=False))[0] == 401
    assert (await _call(server[0], "POST", f"/uploads/{UPLOAD}", data=b"x", grant=False))[0] \
        == 401


async def test_a_recorded_blob_is_not_dropped(server) -> None:  # type: ignore[no-untyped-def]
    running, sync, _ = server
    assert (await _call(running, "DELETE", f"/blobs/{HELD}"))[0] == 409
    assert sync.blobs.lookup(HELD) is not None


async def test_an_upload_is_appended_cut_back_and_sealed(server) -> None:  # type: ignore[no-untyped-def]
    running, sync, uploads = server
    path = f"/uploads/{UPLOAD}"
    assert json.loads((await _call(running, "GET", path))[1]) == {"size": 0}
    refused = await _call(running, "POST", f"{path}/seal/{SEALED}")
    assert refused[0] == 400 and b"empty" in refused[1]
    for piece in (DATA[:5000], b"garbage", ):
        status, body, _ = await _call(running, "POST", path, data=piece)
        assert status == 200
    assert json.loads(body) == {"size": 5007}
    # The last piece went wrong: cut back, send the rest.
    assert json.loads((await _call(running, "POST", f"{path}/truncate/5000"))[1]) == \
        {"size": 5000}
    assert (await _call(running, "POST", f"{path}/truncate/9999"))[0] == 400
    assert json.loads((await _call(running, "POST", path, data=DATA[5000:]))[1]) == \
        {"size": len(DATA)}
    # A checksum that does not match refuses the seal and keeps the upload.
    wrong = await _call(running, "POST", f"{path}/seal/{SEALED}", sha512="0" * 128)
    assert wrong[0] == 409 and b"sha512" in wrong[1]
    assert uploads.size(UPLOAD) == len(DATA)
    digest = hashlib.sha512(DATA).hexdigest()
    status, body, _ = await _call(running, "POST", f"{path}/seal/{SEALED}", sha512=digest)
    assert status == 200, body
    facts = json.loads(body)
    assert facts["size"] == len(DATA) and facts["sha512"] == digest
    assert uploads.size(UPLOAD) == 0
    stored = sync.blobs.lookup(SEALED)
    assert stored is not None and stored.path.read_bytes() == DATA
    # Not recorded (yet): the portal may drop it, when it duplicates another.
    assert (await _call(running, "DELETE", f"/blobs/{SEALED}"))[0] == 200
    assert sync.blobs.lookup(SEALED) is None
