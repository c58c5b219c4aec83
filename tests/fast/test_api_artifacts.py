"""The artifacts API: URLs that must never be fetched get a 400 before
anything is written; anything else is taken, as Shaken Fist takes it (what
it serves is the artifact's business once fetched); images belong to their
namespace. No agent fetches anything here (caching onto nodes is tried in
tests/integration/test_artifacts.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudstate.model import Blob
from tests.support.fakeagent import FakeAgent
from tests.support.httpserve import HTTPTestServer
from tests.support.inprocess import InProcessPortal

# The first bytes of a qcow2 image (nothing here reads more of it).
QCOW2_HEAD = b"QFI\xfb\x00\x00\x00\x03" + b"\x00" * 4088


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as served:
        served.serve_bytes("/cirrus.qcow2", QCOW2_HEAD, "application/x-qcow2")
        served.serve_bytes("/page.html", b"<html><body>downloads</body></html>" * 40,
                           "text/html")
        served.serve_bytes("/notes.txt", b"just some text, no disk here\n" * 100, "text/plain")
        served.serve_bytes("/image.qcow2.xz", b"\xfd7zXZ\x00" + b"\x00" * 4000)
        yield served


def storage_keys(portal: InProcessPortal) -> list[str]:
    return portal.etcd_keys("artifacts/") + portal.etcd_keys("blobs/")


@pytest.mark.parametrize("url,words", [
    ("http://169.254.169.254/latest/meta-data", "metadata service"),
    ("http://[::ffff:169.254.169.254]/x.qcow2", "metadata service"),
    ("http://10.20.30.40/x.qcow2", "private network address"),
    ("http://0x7f000001.example.invalid/x.qcow2", "could not be resolved"),
    ("ftp://127.0.0.1/x.qcow2", "not an http or https URL"),
])
def test_urls_that_must_never_be_fetched_are_400_and_leave_nothing(
        portal: InProcessPortal, agent: FakeAgent, url: str, words: str) -> None:
    before = storage_keys(portal)
    response = portal.api().post("/artifacts", {"url": url})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert storage_keys(portal) == before


@pytest.mark.parametrize("path", ["/page.html", "/notes.txt", "/image.qcow2.xz",
                                  "/missing.qcow2"])
def test_any_other_url_is_taken_and_fetched_by_one_node(
        portal: InProcessPortal, agent: FakeAgent, server: HTTPTestServer, path: str) -> None:
    """As in Shaken Fist: a web page, a text file, a compressed file or a
    404 is the fetch's outcome (the artifact's state), not the request's."""
    before = set(portal.etcd_keys("blobs/"))
    response = portal.api().post("/artifacts", {"url": server.url(path)})
    assert response.status_code == 200, response.text
    made = response.json()
    assert (made["state"], made["index"], made["source_url"]) == ("initial", 0, server.url(path))
    (key,) = set(portal.etcd_keys("blobs/")) - before
    kv = portal.etcd_call(lambda etcd: etcd.get(key))
    blob = Blob.from_json(kv.value)
    assert (blob.origin, blob.node, blob.source_url) == ("fetch", agent.node, server.url(path))
    assert server.requests == []  # the portal read nothing of it: the node fetches


def test_images_belong_to_their_namespace(portal: InProcessPortal, agent: FakeAgent,
                                          demo_image: str, server: HTTPTestServer) -> None:
    response = portal.api().post("/artifacts", {"url": server.url("/cirrus.qcow2"),
                                                "name": "private-one"})
    assert response.status_code == 200, response.text
    mine = response.json()
    other = portal.make_namespace("imageother")
    # A private image is invisible to others; a shared one is visible but not theirs.
    assert other.get(f"/artifacts/{mine['uuid']}").status_code == 404
    assert mine["uuid"] not in [a["uuid"] for a in other.get("/artifacts").json()]
    assert other.delete(f"/artifacts/{mine['uuid']}").status_code == 404
    demo = other.get("/artifacts/demo")
    assert demo.status_code == 200 and demo.json()["shared"] is True
    refused = other.delete("/artifacts/demo")
    assert refused.status_code == 403 and "belongs to namespace system" in refused.json()["error"]
    shared = other.post("/artifacts", {"url": server.url("/cirrus.qcow2"), "shared": True})
    assert shared.status_code == 403 and "only the system namespace" in shared.json()["error"]
    assert portal.api().delete(f"/artifacts/{mine['uuid']}").status_code == 200
