"""The artifacts API: URLs that may not be fetched, or that serve no disk
image, get a 400 before anything is written; images belong to their
namespace. The portal only reads the first bytes of what a URL serves: no
agent fetches anything here (caching onto nodes is tried in
tests/integration/test_artifacts.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakeagent import FakeAgent
from tests.support.httpserve import HTTPTestServer
from tests.support.inprocess import InProcessPortal

# What the portal's check reads of a qcow2 image: its first bytes.
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


@pytest.mark.parametrize("path_or_url,words", [
    ("http://169.254.169.254/latest/meta-data", "metadata service"),
    ("http://[::ffff:169.254.169.254]/x.qcow2", "metadata service"),
    ("http://10.20.30.40/x.qcow2", "private network address"),
    ("http://0x7f000001.example.invalid/x.qcow2", "could not be resolved"),
    ("ftp://127.0.0.1/x.qcow2", "not an http or https URL"),
    ("/page.html", "web page"),
    ("/notes.txt", "does not start like a disk image"),
    ("/image.qcow2.xz", "xz-compressed"),
    ("/missing.qcow2", "answered 404"),
])
def test_refused_urls_are_400_and_leave_nothing(portal: InProcessPortal, agent: FakeAgent,
                                                server: HTTPTestServer, path_or_url: str,
                                                words: str) -> None:
    url = server.url(path_or_url) if path_or_url.startswith("/") else path_or_url
    before = portal.etcd_keys("images/")
    response = portal.api().post("/artifacts", {"url": url})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert portal.etcd_keys("images/") == before


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
    assert shared.status_code == 400 and "only the system namespace" in shared.json()["error"]
    assert portal.api().delete(f"/artifacts/{mine['uuid']}").status_code == 200
