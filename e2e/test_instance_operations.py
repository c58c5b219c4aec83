"""A person in Chromium: add a keypair, create an instance with it and some
user data from the form, pause and unpause it with the buttons and watch its
state change without reloading, take a snapshot, and read its events."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import libvirt
import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.e2e


def domain_state(uuid: str) -> int:
    conn = libvirt.open("qemu:///system")
    try:
        return conn.lookupByUUIDString(uuid).state()[0]
    finally:
        conn.close()


def test_key_user_data_pause_snapshot_and_events(page: Page, cloud: Cloud,
                                                  tmp_path: Path) -> None:
    key_path = tmp_path / "browser"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "browser@test",
                    "-f", str(key_path)], check=True)
    public_key = key_path.with_suffix(".pub").read_text().strip()
    marker = f"BROWSER-{secrets.token_hex(4)}"

    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.get_by_role("link", name="Keypairs").click()
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label("Public key").fill(public_key)
    page.get_by_role("button", name="Add keypair").click()
    expect(page.locator("#keypairs tr[data-name=laptop]")).to_have_count(1)

    page.get_by_role("link", name="Instances").click()
    page.get_by_role("link", name="Create instance").first.click()
    page.get_by_label("Name", exact=True).fill("opsvm")
    page.get_by_label("Memory (MiB)").fill("128")
    page.get_by_label("Image", exact=True).select_option("demo")
    page.get_by_label("SSH key").select_option("laptop")
    page.get_by_role("textbox", name="User data").fill(f"#!/bin/sh\necho {marker}\n")
    page.get_by_role("button", name="Create instance").click()
    page.wait_for_url(f"{cloud.url}/instances/")
    page.locator("#instance-rows a", has_text="opsvm").click()
    page.wait_for_url(f"{cloud.url}/instances/*/")
    uuid = page.url.rstrip("/").rsplit("/", 1)[-1]

    power = page.locator("#section-power")
    page.evaluate("window.__sameDocument = true")
    expect(power).to_have_attribute("data-power", "on", timeout=90_000)
    log = cloud.wait_console(uuid, "SFCLOUD-READY")
    assert f"SFCLOUD-KEY: {public_key}" in log and marker in log

    power.get_by_role("button", name="Pause").click()
    expect(power).to_have_attribute("data-power", "paused", timeout=30_000)
    assert domain_state(uuid) == libvirt.VIR_DOMAIN_PAUSED
    expect(power.locator(".badge")).to_contain_text("paused")
    power.get_by_role("button", name="Unpause").click()
    expect(power).to_have_attribute("data-power", "on", timeout=30_000)
    assert domain_state(uuid) == libvirt.VIR_DOMAIN_RUNNING

    # The page's tabs change without a reload (the same document, checked below).
    page.get_by_role("link", name="Snapshots").click()
    page.wait_for_url(f"{cloud.url}/instances/{uuid}/snapshots/")
    page.get_by_role("button", name="Take snapshot").click()
    snapshot = page.locator("#snapshots tbody tr[data-device=vda]")
    expect(snapshot).to_have_count(1, timeout=30_000)
    expect(snapshot).to_have_attribute("data-state", "created", timeout=90_000)

    page.get_by_role("link", name="Events").click()
    rows = page.locator("#event-rows")
    for text in ("pause requested by admin", "power action pause applied",
                 "power state on -> paused", "power action unpause applied",
                 "snapshot of vda taken"):
        expect(rows).to_contain_text(text, timeout=30_000)
    assert page.evaluate("window.__sameDocument === true")

    # Clean up through the API.
    api = cloud.api()
    images = [s["uuid"] for s in api.get(f"/instances/{uuid}/snapshot").json()]
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")
    for image in images:
        api.delete(f"/artifacts/{image}")
    api.delete("/keypairs/laptop")
