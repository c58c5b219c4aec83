"""The agent's storage routes, over TLS, to the portal's or another agent's
certificate with a valid grant: the blobs this node holds (whole or a
range), copied by another node as its agent does (its own certificate, the
grant on the first hop only, the sha512 checked), and uploads the portal
appends to, measures, cuts back and seals into blobs (checked against the
checksum the grant carries). No certificate, or an etcd member's, gets
nothing."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from cloudstate.model import Blob
from cloudstate.urlguard import FetchPolicy
from nodeagent.images.blobs import BlobStore, StoredBlob
from nodeagent.images.errors import ImageError
from nodeagent.images.fetch import FirstHop
from nodeagent.images.routes import StorageRoutes
from nodeagent.images.sync import blob_path
from nodeagent.images.uploads import UploadStore
from nodeagent.server import AgentServer
from tests.support.pki import make_pki

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
def pki(tmp_path: Path) -> Path:
    make_pki(tmp_path / "pki", agents=["node-a", "node-b"], etcd=["e1"])
    return tmp_path / "pki"


@pytest.fixture
def portal(pki: Path) -> ssl.SSLContext:
    return tls.client_context(tls.portal(pki))


@pytest.fixture
def other_agent(pki: Path) -> ssl.SSLContext:
    """Node B's agent, copying a blob node A holds."""
    return tls.client_context(tls.agent(pki, "node-b"))


@pytest.fixture
async def server(tmp_path: Path,
                 pki: Path) -> AsyncIterator[tuple[AgentServer, FakeSync, UploadStore]]:
    store = BlobStore(tmp_path / "blobs", FetchPolicy())
    scratch = store.scratch_path("held")
    scratch.write_bytes(DATA)
    await store.adopt(HELD, scratch)
    sync = FakeSync("node-a", store, {HELD: Blob(uuid=HELD, namespace="ns", origin="upload",
                                                 node="node-a")})
    uploads = UploadStore(tmp_path / "uploads")
    running = AgentServer(host="127.0.0.1", port=0, node="node-a", secret=SECRET,
                          server_tls=tls.ServerTls(tls.agent(pki, "node-a")))
    StorageRoutes(server=running, blobs=sync, uploads=uploads).register()  # type: ignore[arg-type]
    await running.start()
    yield running, sync, uploads
    await running.stop()


def _grant(method: str, path: str, **claims: Any) -> str:
    return signing.sign(SECRET, AGENT_GRANT_PURPOSE,
                        grant_claims(node="node-a", method=method, path=path, **claims), 30)


async def _call(server: AgentServer, method: str, path: str, *, context: ssl.SSLContext,
                data: bytes | None = None, headers: dict[str, str] | None = None,
                grant: bool = True, **claims: Any) -> tuple[int, bytes, dict[str, str]]:
    token = _grant(method, path, **claims)
    sent = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if grant else {})}
    async with aiohttp.ClientSession() as http, http.request(
            method, f"https://127.0.0.1:{server.port}{path}", data=data, headers=sent,
            ssl=context) as response:
        return response.status, await response.read(), dict(response.headers)


async def test_a_blob_held_here_is_served_whole_or_in_part(server, other_agent) -> None:  # type: ignore[no-untyped-def]
    running, _, _ = server
    status, body, _ = await _call(running, "GET", f"/blobs/{HELD}", context=other_agent)
    assert status == 200 and body == DATA
    status, body, headers = await _call(running, "GET", f"/blobs/{HELD}", context=other_agent,
                                        headers={"Range": "bytes=100-299"})
    assert status == 206 and body == DATA[100:300]
    assert headers["Content-Range"] == f"bytes 100-299/{len(DATA)}"
    status, _, _ = await _call(running, "GET", f"/blobs/{HELD}", context=other_agent,
                               headers={"Range": f"bytes={len(DATA)}-"})
    assert status == 416


async def test_another_node_copies_a_blob_as_its_agent_does(server, pki: Path,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    """Node B's BlobStore fetching from node A's server, as BlobSync._copy
    asks it to: B's certificate and the grant on the first hop, A's
    certificate checked, the bytes checked against A's sha512."""
    running, _, _ = server
    path = blob_path(HELD)
    url = f"https://127.0.0.1:{running.port}{path}"
    only_a = FetchPolicy(allowed_networks=[ipaddress.ip_network("127.0.0.1")])
    node_b = BlobStore(tmp_path / "node-b-blobs", only_a)
    node_b.cleanup_partials()

    def hop(context: ssl.SSLContext | None) -> FirstHop:
        return FirstHop(headers={"Authorization": f"Bearer {_grant('GET', path)}"},
                        ssl=context)

    # Without node B's certificate (the system's CAs), A's server is not
    # even trusted, and A would not let B in: nothing is stored.
    with pytest.raises(ImageError):
        await node_b.fetch(HELD, url, first_hop=hop(None))
    assert node_b.lookup(HELD) is None
    digest = hashlib.sha512(DATA).hexdigest()
    with pytest.raises(ImageError, match="sha512"):
        await node_b.fetch(HELD, url, expected_sha512="0" * 128,
                           first_hop=hop(tls.client_context(tls.agent(pki, "node-b"))))
    copied = await node_b.fetch(HELD, url, expected_sha512=digest,
                                first_hop=hop(tls.client_context(tls.agent(pki, "node-b"))))
    assert copied.sha512 == digest and copied.path.read_bytes() == DATA


async def test_no_certificate_or_an_etcd_members_gets_nothing(server, pki: Path) -> None:  # type: ignore[no-untyped-def]
    running, _, uploads = server
    member = tls.client_context(tls.etcd_member(pki, "e1"))
    assert (await _call(running, "GET", f"/blobs/{HELD}", context=member))[0] == 403
    assert (await _call(running, "POST", f"/uploads/{UPLOAD}", data=b"x",
                        context=member))[0] == 403
    bare = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    for method, path in (("GET", f"/blobs/{HELD}"), ("POST", f"/uploads/{UPLOAD}")):
        with pytest.raises(aiohttp.ClientError):
            await _call(running, method, path, data=b"x", context=bare)
    assert uploads.size(UPLOAD) == 0


@pytest.mark.parametrize("uuid", [ELSEWHERE, "not-a-uuid"])
async def test_a_blob_not_held_is_not(server, other_agent, uuid: str) -> None:  # type: ignore[no-untyped-def]
    assert (await _call(server[0], "GET", f"/blobs/{uuid}", context=other_agent))[0] \
        in (400, 404)


async def test_nothing_without_a_grant(server, portal, other_agent) -> None:  # type: ignore[no-untyped-def]
    assert (await _call(server[0], "GET", f"/blobs/{HELD}", context=other_agent,
                        grant=False))[0] == 401
    assert (await _call(server[0], "POST", f"/uploads/{UPLOAD}", data=b"x", context=portal,
                        grant=False))[0] == 401


async def test_a_recorded_blob_is_not_dropped(server, portal) -> None:  # type: ignore[no-untyped-def]
    running, sync, _ = server
    assert (await _call(running, "DELETE", f"/blobs/{HELD}", context=portal))[0] == 409
    assert sync.blobs.lookup(HELD) is not None


async def test_an_upload_is_appended_cut_back_and_sealed(server, portal) -> None:  # type: ignore[no-untyped-def]
    running, sync, uploads = server

    async def call(method: str, path: str, **options: Any) -> tuple[int, bytes, dict[str, str]]:
        return await _call(running, method, path, context=portal, **options)

    path = f"/uploads/{UPLOAD}"
    assert json.loads((await call("GET", path))[1]) == {"size": 0}
    refused = await call("POST", f"{path}/seal/{SEALED}")
    assert refused[0] == 400 and b"empty" in refused[1]
    for piece in (DATA[:5000], b"garbage", ):
        status, body, _ = await call("POST", path, data=piece)
        assert status == 200
    assert json.loads(body) == {"size": 5007}
    # The last piece went wrong: cut back, send the rest.
    assert json.loads((await call("POST", f"{path}/truncate/5000"))[1]) == {"size": 5000}
    assert (await call("POST", f"{path}/truncate/9999"))[0] == 400
    assert json.loads((await call("POST", path, data=DATA[5000:]))[1]) == {"size": len(DATA)}
    # A checksum that does not match refuses the seal and keeps the upload.
    wrong = await call("POST", f"{path}/seal/{SEALED}", sha512="0" * 128)
    assert wrong[0] == 409 and b"sha512" in wrong[1]
    assert uploads.size(UPLOAD) == len(DATA)
    digest = hashlib.sha512(DATA).hexdigest()
    status, body, _ = await call("POST", f"{path}/seal/{SEALED}", sha512=digest)
    assert status == 200, body
    facts = json.loads(body)
    assert facts["size"] == len(DATA) and facts["sha512"] == digest
    assert uploads.size(UPLOAD) == 0
    stored = sync.blobs.lookup(SEALED)
    assert stored is not None and stored.path.read_bytes() == DATA
    # Not recorded (yet): the portal may drop it, when it duplicates another.
    assert (await call("DELETE", f"/blobs/{SEALED}"))[0] == 200
    assert sync.blobs.lookup(SEALED) is None
