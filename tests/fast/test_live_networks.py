"""The network pages' websockets (ws/networks/) push what changes: a network
being ready, an instance's interface arriving and leaving, and the list
following networks as they come and go. The fake agent reports the network
built; nothing is built and no guest boots.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal, Person, Socket


def _until(ws: Socket, wanted: Callable[[str], bool], timeout: float = 20) -> str:
    """Read messages until one satisfies ``wanted``; fail with the last one."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if wanted(last):
            return last
    raise AssertionError(f"no such message within {timeout:.0f} s; the last: {last[:500]!r}")


def test_network_page_follows_its_interfaces(portal: InProcessPortal, agent: FakeAgent,
                                             demo_image: str, admin: Person) -> None:
    api = portal.api()
    response = api.post("/networks", {"name": "live-net", "netblock": "10.83.0.0/24"})
    assert response.status_code == 200, response.text
    network = response.json()["uuid"]
    agent.report_network(network)
    with admin.browser.socket(f"/ws/networks/{network}/") as ws:
        # Each message starts with the element it replaces (htmx parses a
        # table body only at the start of a message).
        overview, rows = ws.recv(timeout=10), ws.recv(timeout=10)
        assert overview.startswith('<div class="card" id="network-overview"')
        assert "badge--created" in overview
        assert rows.startswith('<tbody id="network-interface-rows"') and "<tr>" not in rows

        made = api.post("/instances", {"name": "live-vm", "cpus": 1, "memory": 128,
                                       "disk": [{"size": 1, "base": "demo"}],
                                       "network": [{"network_uuid": network}]})
        assert made.status_code == 200, made.text
        uuid = made.json()["uuid"]
        _until(ws, lambda m: m.startswith('<tbody id="network-interface-rows"') and "live-vm" in m)

        assert api.delete(f"/instances/{uuid}").status_code == 200
        # Its node removes it, and with it the interface.
        agent.tear_down_instance(uuid)
        _until(ws, lambda m: m.startswith('<tbody id="network-interface-rows"')
               and "live-vm" not in m)
    assert api.get(f"/instances/{uuid}").json()["state"] == "deleted"

    with admin.browser.socket("/ws/networks/") as ws:
        assert "live-net" in ws.recv(timeout=10)
        assert api.delete(f"/networks/{network}").status_code == 200
        _until(ws, lambda m: 'id="network-rows"' in m and 'data-state="deleting"' in m)
        # The network node removes it.
        agent.report_network(network, state="deleted")
        _until(ws, lambda m: 'id="network-rows"' in m and "live-net" not in m)
