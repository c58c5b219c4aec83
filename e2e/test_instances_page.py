"""A person in a real browser: log in, create an instance with the form,
watch it come up without reloading, delete it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud

pytestmark = pytest.mark.e2e


def test_create_watch_live_and_delete(page: Page, cloud: Cloud) -> None:
    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.get_by_role("link", name="Create instance").first.click()
    page.get_by_label("Name", exact=True).fill("browser-vm")
    page.get_by_label("vCPUs").fill("1")
    page.get_by_label("Memory (MiB)").fill("256")
    page.get_by_label("Disk size (GB)").fill("1")
    page.get_by_label("Image", exact=True).select_option("demo")
    page.get_by_role("button", name="Create instance").click()
    page.wait_for_url(f"{cloud.url}/instances/")

    row = page.locator("#instance-rows tr", has_text="browser-vm")
    expect(row).to_have_count(1)
    # From here on the page must not reload: mark this document and check the
    # mark is still there once the row shows the guest running.
    page.evaluate("window.__sameDocument = true")
    expect(row).to_have_attribute("data-state", "created", timeout=90_000)
    expect(row).to_have_attribute("data-power", "on", timeout=30_000)
    assert page.evaluate("window.__sameDocument === true")

    # Actions are in the row's menu; deleting asks first, naming the instance.
    row.get_by_role("button", name="Actions for browser-vm").click()
    page.get_by_role("button", name="Delete…").click()
    dialog = page.locator("dialog#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("browser-vm")
    dialog.get_by_role("button", name="Delete instance").click()
    page.wait_for_url(f"{cloud.url}/instances/")
    expect(page.locator("#instance-rows tr", has_text="browser-vm")).to_have_count(
        0, timeout=60_000
    )
