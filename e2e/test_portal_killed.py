"""The portal SIGKILLed under open pages: an instance's page with its serial
console open and the instance list, in Chromium, while a client keeps
creating instances through the API.

While the portal is down the guest is paused behind its back (through
libvirt): the agent reports it to etcd and keeps the event on its disk.
Once the portal is started again the pages reconnect and resync by
themselves (the list shows the guest paused), the console comes back with
its scrollback, the pause's event is shown exactly once (on the page and
through the API), and every create the API acknowledged with a 2xx exists.
The recovery times are printed as an EVIDENCE line.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import requests
from playwright.sync_api import Page, expect

from deploy.localetcd import LocalEtcd
from e2e.conftest import log_in
from e2e.test_consoles import TERMINAL_TEXT
from tests.support.cloud import Cloud, wait_for
from tests.support.evidence import record

pytestmark = [pytest.mark.e2e, pytest.mark.stress]
PAUSED_EVENT = "power state on -> paused"


@pytest.fixture
def own_cloud(etcd_server: LocalEtcd, guest_image_dir: Path,
              libvirt_daemon: None) -> Iterator[Cloud]:
    """A cloud of the test's own: its portal is killed."""
    cloud = Cloud(etcd_server, demo_image=guest_image_dir / "disk.qcow2")
    try:
        yield cloud.start()
    finally:
        cloud.stop()


def terminal_shows(page: Page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(f"(t) => ({TERMINAL_TEXT})().includes(t)", arg=text, timeout=timeout)


def type_line(page: Page, text: str) -> None:
    page.locator("#console-serial .xterm").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


class Creator(threading.Thread):
    """Creates instances (blank disks) through the API, one every half
    second, and notes those acknowledged with a 2xx."""

    def __init__(self, cloud: Cloud):
        super().__init__(daemon=True)
        self.cloud = cloud
        self.acknowledged: list[str] = []
        self.refused: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        api = self.cloud.api()
        n = 0
        while not self.stopping.is_set() and len(self.acknowledged) < 3:
            n += 1
            name = f"ack-{n}"
            try:
                response = api.post("/instances", {"name": name, "cpus": 1, "memory": 64,
                                                   "disk": [{"size": 1}]})
            except requests.RequestException:
                self.refused.append(name)  # no answer: the portal was down
            else:
                (self.acknowledged if response.status_code == 200 else self.refused).append(name)
            self.stopping.wait(0.5)


def test_portal_killed_under_live_pages_and_a_console(page: Page, own_cloud: Cloud) -> None:
    cloud = own_cloud
    api = cloud.api()
    uuid = api.post("/instances", {"name": "survivor", "cpus": 1, "memory": 256,
                                   "disk": [{"size": 1, "base": "demo"}]}).json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "on", 60,
             "the guest on")

    log_in(page, cloud.url, "admin", cloud.admin_password, then=f"/instances/{uuid}/console/")
    console = page.locator("#console-serial [data-status]")
    expect(console).to_have_text("Connected", timeout=30_000)
    marker = secrets.token_hex(4)
    type_line(page, f"echo before-{marker}")
    terminal_shows(page, f"before-{marker}\n")
    listing = page.context.new_page()
    listing.goto(f"{cloud.url}/instances/")
    row = listing.locator(f"#instance-{uuid}")
    expect(row).to_have_attribute("data-power", "on")
    live = page.locator("#live")
    expect(live).to_have_attribute("data-state", "connected")
    creator = Creator(cloud)
    creator.start()
    time.sleep(1)

    # --- the portal killed; the guest paused behind its back ----------------------------------
    assert cloud.portal is not None
    cloud.portal.send_signal(signal.SIGKILL)
    cloud.portal.wait(timeout=10)
    cloud.portal = None
    expect(live).not_to_have_attribute("data-state", "connected", timeout=20_000)
    conn = libvirt.open("qemu:///system")
    try:
        conn.lookupByUUIDString(uuid).suspend()
    finally:
        conn.close()
    wait_for(lambda: b'"power_state":"paused"' in (cloud.etcd_call(
        lambda etcd: etcd.get(cloud.keys.observed_instance(uuid))).value), 30,
        "the agent to report the guest paused")
    wait_for(lambda: any(cloud.event_spool()), 30, "the pause's event kept on the node")
    time.sleep(2)

    # --- the portal back ---------------------------------------------------------------------
    restarted = time.monotonic()
    cloud.start_portal()
    portal_up = time.monotonic() - restarted
    expect(live).to_have_attribute("data-state", "connected", timeout=60_000)
    page_back = time.monotonic() - restarted
    expect(row).to_have_attribute("data-power", "paused", timeout=60_000)
    list_back = time.monotonic() - restarted
    expect(console).to_have_text("Connected", timeout=60_000)
    console_back = time.monotonic() - restarted
    terminal_shows(page, f"before-{marker}\n", timeout=15_000)  # its scrollback
    wait_for(lambda: not cloud.event_spool(), 60, "the agent's events delivered")
    events_back = time.monotonic() - restarted
    creator.stopping.set()
    creator.join(timeout=60)

    # The pause's event, exactly once: through the API and on the page.
    events = [e["message"] for e in api.get(f"/instances/{uuid}/events").json()]
    assert events.count(PAUSED_EVENT) == 1, events
    shown = page.locator("#event-rows tr", has_text=PAUSED_EVENT)
    expect(shown).to_have_count(1, timeout=30_000)
    # No acknowledged create was lost.
    names = {i["name"] for i in api.get("/instances").json()}
    assert set(creator.acknowledged) <= names, (creator.acknowledged, names)
    assert creator.acknowledged, "no create was acknowledged around the kill"

    # The console works: the guest resumed through the page's own API.
    assert api.post(f"/instances/{uuid}/unpause").status_code == 200
    expect(row).to_have_attribute("data-power", "on", timeout=60_000)
    type_line(page, f"echo after-{marker}")
    terminal_shows(page, f"after-{marker}\n")
    record("portal-killed", portal_answering_seconds=round(portal_up, 2),
           page_live_again_seconds=round(page_back, 2),
           list_resynced_seconds=round(list_back, 2),
           console_back_seconds=round(console_back, 2),
           spooled_events_delivered_seconds=round(events_back, 2),
           pause_event_shown=1, acknowledged_creates=len(creator.acknowledged),
           lost=0, refused_or_unanswered=len(creator.refused))
    listing.close()
