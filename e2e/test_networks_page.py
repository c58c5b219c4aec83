"""A person in a real browser: create a network from the Networks page and
watch it become ready, create an instance on it, float and defloat its
interface from the instance's page, see the interface on the network's page
and watch it go when the instance is deleted, then delete the network and
watch it leave the list. The network pages follow the cloud without reloads."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.e2e


def test_network_pages_and_floating_buttons(page: Page, netcloud: Cloud) -> None:
    log_in(page, netcloud.url, "admin", netcloud.admin_password)
    page.get_by_role("link", name="Networks").click()
    page.get_by_role("link", name="Create network").first.click()

    # Bad input reads as the API words it, and makes nothing.
    page.get_by_label("Name", exact=True).fill("web-net")
    page.get_by_label("Address range").fill("10.88.0.0/30")
    page.get_by_role("button", name="Create network").click()
    expect(page.get_by_text("smaller than a /29")).to_be_visible()
    assert netcloud.api().get("/networks/web-net").status_code == 404

    page.get_by_label("Address range").fill("10.88.0.0/24")
    page.get_by_label("Answer DNS for the network's instance names").check()
    page.get_by_role("button", name="Create network").click()
    expect(page.get_by_role("heading", name="web-net")).to_be_visible()
    network = netcloud.api().get("/networks/web-net").json()
    # The page was drawn while the network node was still at work: it turns
    # "created" by itself (and the same document stays loaded).
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#network-overview .badge--created")).to_be_visible(timeout=60_000)
    assert page.evaluate("window.__sameDocument === true")
    page.get_by_role("link", name="Networks").first.click()
    row = page.locator("#network-rows tr", has_text="web-net")
    expect(row).to_contain_text("10.88.0.0/24")
    expect(row).to_have_attribute("data-state", "created")

    page.get_by_role("link", name="Instances").first.click()
    page.get_by_role("link", name="Create instance").first.click()
    page.get_by_label("Name", exact=True).fill("web-vm")
    page.get_by_label("Memory (MiB)").fill("128")
    page.get_by_label("web-net (10.88.0.0/24)").check()
    page.get_by_role("button", name="Create instance").click()
    page.wait_for_url(f"{netcloud.url}/instances/")
    page.locator("#instance-rows tr", has_text="web-vm").get_by_role("link",
                                                                     name="web-vm").click()
    page.get_by_role("link", name="Networking").click()
    section = page.locator("#instance-interfaces")
    expect(section).to_contain_text("web-net")
    expect(section).to_contain_text("10.88.0.")
    section.get_by_role("button", name="Add floating address").click()
    expect(section.get_by_role("button", name="Remove floating address")).to_be_visible()
    uuid = re.search(r"/instances/([0-9a-f-]{36})/", page.url).group(1)  # type: ignore[union-attr]
    nic = netcloud.api().get(f"/instances/{uuid}/interfaces").json()[0]
    assert nic["floating"]
    expect(section).to_contain_text(nic["floating"])
    # Giving the address back asks first, naming it.
    section.get_by_role("button", name="Remove floating address").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading")).to_have_text(f"Give back {nic['floating']}?")
    dialog.get_by_role("button", name="Remove floating address").click()
    expect(section.get_by_role("button", name="Add floating address")).to_be_visible()
    assert netcloud.api().get(f"/interfaces/{nic['uuid']}").json()["floating"] is None

    # The network's page lists the interface, and refuses to delete while used.
    section.get_by_role("link", name="web-net").click()
    expect(page.locator("#network-interfaces")).to_contain_text("web-vm")
    page.get_by_role("button", name="Delete").click()
    page.locator("dialog").get_by_role("button", name="Delete network").click()
    expect(page.locator("#messages")).to_contain_text("is in use by instance web-vm")

    # Deleted through the API, the instance's interface leaves the page by itself.
    page.evaluate("window.__sameDocument = true")
    netcloud.api().delete(f"/instances/{uuid}")
    expect(page.locator("#network-interface-rows tr")).to_have_count(0, timeout=60_000)
    expect(page.get_by_text("No instance uses this network")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true")
    wait_for(lambda: netcloud.api().get(f"/instances/{uuid}").json()["state"] == "deleted",
             60, "the instance deleted")
    page.get_by_role("button", name="Delete").click()
    page.locator("dialog").get_by_role("button", name="Delete network").click()
    page.wait_for_url(f"{netcloud.url}/networks/")
    expect(page.locator("#messages")).to_contain_text("Network web-net is being deleted")
    # The list drops it once the network node has taken it down.
    expect(page.locator("#network-rows tr", has_text="web-net")).to_have_count(0,
                                                                              timeout=60_000)
    assert netcloud.api().get(f"/networks/{network['uuid']}").json()["state"] == "deleted"
