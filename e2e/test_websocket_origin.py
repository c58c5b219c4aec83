"""Cross-site websocket hijacking: a logged-in person visits a page served
by something else on the same host (another loopback port, or localhost);
that page's websocket to the portal is refused, though the browser would
send the person's cookie. The same script on the portal's own page connects."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from e2e.conftest import log_in
from tests.support.cloud import Cloud
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.e2e

OPEN_SOCKET = """url => new Promise(resolve => {
    const ws = new WebSocket(url);
    ws.onopen = () => { resolve("open"); ws.close(); };
    ws.onclose = event => resolve("closed " + event.code);
})"""


def test_pages_from_other_origins_cannot_open_the_portals_websockets(
        page: Page, cloud: Cloud) -> None:
    log_in(page, cloud.url, "admin", cloud.admin_password)
    socket_url = cloud.url.replace("http://", "ws://") + "/ws/instances/"
    assert page.evaluate(OPEN_SOCKET, socket_url) == "open"

    with HTTPTestServer() as attacker:
        attacker.serve_bytes("/", b"<!doctype html><title>elsewhere</title><p>hello</p>",
                             "text/html")
        for origin in (attacker.base_url, f"http://localhost:{attacker.port}"):
            page.goto(f"{origin}/")
            assert page.evaluate("location.origin") == origin
            assert page.evaluate(OPEN_SOCKET, socket_url) == "closed 1006", origin
