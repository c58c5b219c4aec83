"""An admin sets a namespace's quotas in the admin pages; the namespace's page
then shows its use against them and follows a create live, without a
reload; a create over the quota is refused naming it, and the page stays
as it was."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def made(cloud: Cloud) -> Iterator[list[str]]:
    uuids: list[str] = []
    yield uuids
    for uuid in uuids:
        cloud.api().delete(f"/instances/{uuid}")


def test_quotas_set_in_the_admin_pages_and_use_followed_live(
        page: Page, cloud: Cloud, made: list[str]) -> None:
    namespace = f"quota-{secrets.token_hex(3)}"
    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.get_by_role("link", name="Admin", exact=True).click()
    new_namespace = page.get_by_role("region", name="Create a namespace")
    new_namespace.get_by_label("Name", exact=True).fill(namespace)
    new_namespace.get_by_role("button", name="Create namespace").click()
    expect(page.get_by_role("heading", name=f"Namespace {namespace}")).to_be_visible()

    vcpus = page.locator('#quota-lines tr[data-resource="vcpus"]')
    expect(vcpus).to_have_attribute("data-used", "0")
    form = page.locator("#quota-form")
    # A bad value is refused beside its field, as typed.
    form.get_by_label("vCPUs").fill("lots")
    form.get_by_role("button", name="Set quotas").click()
    expect(form.get_by_label("vCPUs")).to_have_value("lots")
    expect(form.locator("#id_vcpus_error")).to_contain_text("is not a limit")
    form.get_by_label("vCPUs").fill("3")
    form.get_by_label("Instances").fill("2")
    form.get_by_role("button", name="Set quotas").click()
    expect(vcpus).to_have_attribute("data-limit", "3")
    expect(page.locator('#quota-lines tr[data-resource="instances"]')) \
        .to_have_attribute("data-limit", "2")

    # A create elsewhere (the API) shows on the open page by itself.
    api = cloud.api()
    created = api.post("/instances", {"name": "q1", "cpus": 2, "memory": 128,
                                      "namespace": namespace,
                                      "disk": [{"size": 1, "base": "demo"}]})
    assert created.status_code == 200, created.text
    made.append(created.json()["uuid"])
    expect(vcpus).to_have_attribute("data-used", "2", timeout=15_000)
    expect(vcpus).to_contain_text("2")
    expect(page.locator('#quota-lines tr[data-resource="instances"]')) \
        .to_have_attribute("data-used", "1")

    refused = api.post("/instances", {"name": "q2", "cpus": 2, "memory": 128,
                                      "namespace": namespace,
                                      "disk": [{"size": 1, "base": "demo"}]})
    assert refused.status_code == 403
    assert refused.json()["error"] == "quota exceeded: vcpus limit 3, in use 2, asked 2"
    expect(vcpus).to_have_attribute("data-used", "2")

    # Deleted: given back, live.
    api.delete(f"/instances/{made[0]}")
    expect(vcpus).to_have_attribute("data-used", "0", timeout=15_000)
