"""Live pages say when etcd is unreachable and resync when it is back.

The hub's watch reconnects by itself, so it never tells the pages that etcd
went away; its store probe does (portal/live/storehealth.py). Here the
probe's etcd call is made to fail as it does when etcd is gone (the real
outage, with a real etcd killed, is e2e/test_etcd_outage_pages.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudstate.etcd import EtcdUnavailable
from portal.live import hub as live_hub
from tests.fast.conftest import TEAM
from tests.support.inprocess import InProcessPortal, Person, Socket
from tests.support.objects import put_instance

UNREACHABLE = 'data-store="unreachable"'
REACHABLE = 'data-store="reachable"'


def until(ws: Socket, marker: str, timeout: float = 15) -> list[str]:
    seen = []
    while not seen or marker not in seen[-1]:
        seen.append(ws.recv(timeout=timeout))
    return seen


@pytest.fixture
def etcd_gone(portal: InProcessPortal) -> Iterator[None]:
    """The hub's probe finds etcd gone until the test ends (or says otherwise)."""

    async def gone() -> int:
        raise EtcdUnavailable("connection refused (the test's)")

    async def cut() -> None:
        (await live_hub.hub()).store._etcd.revision = gone  # type: ignore[method-assign]

    portal.loop.run(cut())
    try:
        yield
    finally:
        portal.loop.run(mend())


async def mend() -> None:
    store = (await live_hub.hub()).store
    store._etcd.__dict__.pop("revision", None)


def test_a_live_page_shows_the_banner_and_resyncs(portal: InProcessPortal, alice: Person,
                                                  etcd_gone: None) -> None:
    alice.browser.post("/namespace/", {"namespace": TEAM})
    page = alice.browser.get("/instances/")
    assert 'id="store-banner"' in page.text and REACHABLE in page.text
    with alice.browser.socket("/ws/instances/") as ws:
        seen = until(ws, UNREACHABLE)
        assert "not reachable" in seen[-1] and 'hx-swap-oob="true"' in seen[-1]
        uuid = put_instance(portal, TEAM, "made-meanwhile")
        until(ws, uuid)
        portal.loop.run(mend())
        assert "not reachable" not in until(ws, REACHABLE)[-1]
        # Then the page's live parts again, whole: its resync.
        resync = ws.recv(timeout=10)
        assert 'id="instance-rows"' in resync and uuid in resync


def test_a_page_opened_while_etcd_is_gone_gets_the_banner_at_once(
        portal: InProcessPortal, alice: Person, etcd_gone: None) -> None:
    with alice.browser.socket("/ws/instances/") as ws:
        until(ws, UNREACHABLE)  # the probe noticed
    with alice.browser.socket("/ws/dashboard/") as ws:
        assert UNREACHABLE in ws.recv(timeout=10)
