"""An admin makes a namespace and a person in the browser; that person then
sees only their namespace's instances, and another namespace's instance
page answers "not found" even with its exact URL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud

pytestmark = pytest.mark.e2e


def create_instance(cloud: Cloud, namespace: str, name: str) -> str:
    response = cloud.api().post("/instances", {
        "name": name, "cpus": 1, "memory": 256, "namespace": namespace,
        "disk": [{"size": 1, "base": "demo"}]})
    assert response.status_code == 200, response.text
    return response.json()["uuid"]


@pytest.fixture
def made(cloud: Cloud) -> Iterator[list[str]]:
    """Instances the test makes, deleted afterwards whatever happens."""
    uuids: list[str] = []
    yield uuids
    for uuid in uuids:
        cloud.api().delete(f"/instances/{uuid}")


def test_admin_creates_namespace_and_person_who_sees_only_theirs(
        page: Page, cloud: Cloud, made: list[str]) -> None:
    namespace = f"shop-{secrets.token_hex(3)}"
    username = f"alice-{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_urlsafe(12)

    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.get_by_role("link", name="Admin", exact=True).click()
    new_namespace = page.get_by_role("region", name="Create a namespace")
    new_namespace.get_by_label("Name", exact=True).fill(namespace)
    new_namespace.get_by_role("button", name="Create namespace").click()
    expect(page.get_by_role("heading", name=f"Namespace {namespace}")).to_be_visible()

    page.get_by_role("link", name="People").click()
    new_person = page.get_by_role("region", name="Add a person")
    new_person.get_by_label("Username").fill(username)
    new_person.get_by_label("Password").fill(password)
    new_person.get_by_label("Namespace").select_option(namespace)
    new_person.get_by_label("Role").select_option("member")
    new_person.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("heading", name=username)).to_be_visible()
    expect(page.locator("#memberships")).to_contain_text(namespace)

    theirs = create_instance(cloud, namespace, "shop-vm")
    made.append(theirs)
    not_theirs = create_instance(cloud, "system", "admin-vm")
    made.append(not_theirs)

    page.get_by_role("button", name="Log out").click()
    log_in(page, cloud.url, username, password)
    rows = page.locator("#instance-rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("shop-vm")
    expect(page.locator("#instances")).not_to_contain_text("admin-vm")
    expect(page.locator("#ns-select option")).to_have_text([namespace])
    # No admin or node pages for a plain member.
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="Nodes")).to_have_count(0)

    # Their own instance opens; the other namespace's does not, even by exact URL.
    page.goto(f"{cloud.url}/instances/{theirs}/")
    expect(page.get_by_role("heading", name="shop-vm")).to_be_visible()
    response = page.goto(f"{cloud.url}/instances/{not_theirs}/")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("admin-vm")
    # ...and the live list, after all that, still only has theirs.
    page.goto(f"{cloud.url}/instances/")
    expect(page.locator("#instance-rows tr")).to_have_count(1)
