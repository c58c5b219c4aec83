"""The network pages' websockets push what changes: a network becoming
ready, an instance's interface arriving and leaving, and the list following
networks as they come and go."""

from __future__ import annotations

import time

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.consoles import open_socket, web_login
from tests.support.fixtures_networks import create_network

pytestmark = pytest.mark.integration


def _until(ws, wanted, timeout: float = 60) -> str:  # type: ignore[no-untyped-def]
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


def test_network_page_follows_its_interfaces(netcloud: Cloud) -> None:
    api = netcloud.api()
    session = web_login(netcloud.url, "admin", netcloud.admin_password)
    network = create_network(netcloud, "live-net", "10.83.0.0/24")
    with open_socket(session, netcloud.url, f"/ws/networks/{network['uuid']}/") as ws:
        # Each message starts with the element it replaces (htmx parses a
        # table body only at the start of a message).
        overview, rows = ws.recv(timeout=10), ws.recv(timeout=10)
        assert overview.startswith('<div class="card" id="network-overview"')
        assert "badge--created" in overview
        assert rows.startswith('<tbody id="network-interface-rows"') and "<tr>" not in rows

        made = api.post("/instances", {"name": "live-vm", "cpus": 1, "memory": 128,
                                       "disk": [{"size": 1, "base": "demo"}],
                                       "network": [{"network_uuid": network["uuid"]}]})
        assert made.status_code == 200, made.text
        uuid = made.json()["uuid"]
        _until(ws, lambda m: m.startswith('<tbody id="network-interface-rows"') and "live-vm" in m)

        assert api.delete(f"/instances/{uuid}").status_code == 200
        _until(ws, lambda m: m.startswith('<tbody id="network-interface-rows"')
               and "live-vm" not in m)
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")

    with open_socket(session, netcloud.url, "/ws/networks/") as ws:
        assert "live-net" in ws.recv(timeout=10)
        assert api.delete(f"/networks/{network['uuid']}").status_code == 200
        _until(ws, lambda m: 'id="network-rows"' in m and "live-net" not in m)
