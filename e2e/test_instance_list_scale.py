"""The instance list with thousands of instances, in Chromium: it pages,
sorts, filters and searches, and a row changed through the API updates live.

The cloud is simulated (tests/support/simulated.py): one node agent over
libvirt's test driver runs the instance the test changes; the thousands are
written straight into etcd on a node no agent runs (tests/support/fleet.py),
as the list reads them all the same. `make scale` runs it with 10,000
(--scale-instances); `make test` with fewer, to stay quick.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from deploy.localetcd import LocalEtcd
from deploy.localvirt import stop_process
from e2e.conftest import log_in
from tests.support.cloud import Cloud, wait_for
from tests.support.fleet import Guest, put_fleet
from tests.support.simulated import SIMULATED_ENV, start_agents

pytestmark = pytest.mark.e2e

LIVE = "live-row"


@pytest.fixture(scope="module")
def many(etcd_server: LocalEtcd, request: pytest.FixtureRequest) -> Iterator[tuple[Cloud, str]]:
    """A simulated cloud with --scale-instances instances and one more, LIVE,
    running on its one simulated node; yields (cloud, LIVE's uuid)."""
    count = request.config.getoption("--scale-instances")
    cloud = Cloud(etcd_server, **SIMULATED_ENV)
    agents = {}
    try:
        cloud.prepare()
        cloud.start_portal()
        agents = start_agents(cloud, 1)
        put_fleet(cloud, "system", [
            Guest(name=f"vm-{i:05d}", node="ghost", tags=("blue",) if i % 10 == 0 else (),
                  power_state="off" if i % 3 == 0 else "on", created_at=1.7e9 + i)
            for i in range(count)])
        api = cloud.api()
        made = api.post("/instances", {"name": LIVE, "cpus": 1, "memory": 64,
                                       "disk": [{"size": 1}]})
        assert made.status_code == 200, made.text
        uuid = made.json()["uuid"]
        wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "on", 60,
                 "the simulated node to run it")
        yield cloud, uuid
    finally:
        for agent in agents.values():
            stop_process(agent)
        cloud.stop()


def test_pages_sorts_filters_searches_and_follows_a_row(page: Page,
                                                        many: tuple[Cloud, str]) -> None:
    cloud, uuid = many
    count = len(cloud.etcd_keys("instances/"))
    log_in(page, cloud.url, "admin", cloud.admin_password)
    pager = page.locator("#pager .pager__count")
    expect(pager).to_contain_text(f"of {count} instances")
    rows = page.locator("#instance-rows tr")

    # Pages: the next one starts where the first ended.
    first_page = rows.first.get_attribute("data-name")
    page.get_by_role("link", name="Next").first.click()
    expect(page).to_have_url(re.compile(r"[?&]page=2"))
    expect(rows.first).not_to_have_attribute("data-name", first_page or "")

    # Sorted by name, LIVE comes first (l before v); then a state filter.
    page.goto(f"{cloud.url}/instances/")
    page.locator("#list-sort").select_option("name")
    page.get_by_role("button", name="Show").click()
    expect(rows.first).to_have_attribute("data-name", LIVE)
    page.locator("#list-state").select_option("off")
    page.get_by_role("button", name="Show").click()
    expect(pager).to_contain_text("that match")
    powers = rows.evaluate_all("rows => rows.map(r => r.dataset.power)")
    assert powers and set(powers) == {"off"}, powers

    # A search finds one instance among them all.
    page.goto(f"{cloud.url}/instances/")
    page.get_by_role("searchbox", name="Search").fill("vm-00042")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-name", "vm-00042")

    # LIVE's row follows the API without a reload.
    page.get_by_role("searchbox", name="Search").fill(LIVE)
    page.get_by_role("button", name="Show").click()
    row = page.locator(f"#instance-{uuid}")
    expect(row).to_have_attribute("data-power", "on")
    page.evaluate("window.__sameDocument = true")
    started = time.monotonic()
    response = cloud.api().post(f"/instances/{uuid}/poweroff")
    assert response.status_code == 200, response.text
    expect(row).to_have_attribute("data-power", "off", timeout=30_000)
    assert page.evaluate("window.__sameDocument === true")
    print(f"row updated {time.monotonic() - started:.2f} s after the API call, "
          f"with {count} instances")
