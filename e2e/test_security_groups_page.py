"""A person in Chromium: create a security group and its rule on the
Security groups page, attach it to a running, floated instance's interface
from the instance's page, watch the page show the rule applied (pushed, no
reload) and the rule take effect from outside; then remove the rule on the
group's page and watch it go, and the guest closed again."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import create_network, delete_instances, delete_networks
from tests.support.fixtures_networks import script as user_data
from tests.support.networld import UPSTREAM_NETWORK, OutsideWorld
from tests.support.pseudoguests import sock

pytestmark = pytest.mark.e2e

SERVER = """
cat > /tmp/tick <<'TICK'
#!/bin/sh
echo open
TICK
chmod +x /tmp/tick
nc -ll -p 8080 -e /tmp/tick &
"""


def answers(netns: str, address: str, port: int) -> bool:
    client = sock(netns)
    client.settimeout(2)
    try:
        client.connect((address, port))
        return client.recv(16).startswith(b"open")
    except OSError:
        return False
    finally:
        client.close()


def test_a_group_attached_from_the_instance_page_takes_effect(
        page: Page, netcloud: Cloud, outside_world: OutsideWorld) -> None:
    net = create_network(netcloud, "e2e-sg-net", "10.95.0.0/24")
    response = netcloud.api().post("/instances", {
        "name": "e2e-sg-vm", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
        "network": [{"network_uuid": net["uuid"], "float": True}],
        "user_data": user_data(SERVER)})
    assert response.status_code == 200, response.text
    vm = response.json()
    floating = vm["interfaces"][0]["floating"]
    try:
        log_in(page, netcloud.url, "admin", netcloud.admin_password)
        page.get_by_role("link", name="Security groups").click()
        expect(page.locator("#secgroup-rows tr[data-name=default]")).to_have_count(1)
        page.locator("#id_group-name").fill("e2e-web")
        page.locator("#id_group-description").fill("the outside may use 8080")
        page.get_by_role("button", name="Create security group").click()
        expect(page.get_by_role("heading", name="e2e-web")).to_be_visible()
        expect(page.get_by_text("No rules: nothing in, nothing out")).to_be_visible()

        # A rule: in, TCP 8080, from the outside network.
        page.get_by_label("Direction").select_option("ingress")
        page.get_by_label("Protocol").select_option("tcp")
        page.get_by_label("Ports").fill("8080")
        page.get_by_label("From / to").select_option("cidrs")
        page.get_by_label("CIDRs").fill(UPSTREAM_NETWORK)
        page.get_by_role("button", name="Add rule").click()
        rules = page.locator("#secgroup-rules tr")
        expect(rules).to_have_count(1)
        expect(rules.first).to_contain_text("8080")
        expect(rules.first).to_contain_text(UPSTREAM_NETWORK)
        group_url = page.url

        netcloud.wait_console(vm["uuid"], "SFCLOUD-READY", 150)
        assert not answers(outside_world.www, floating, 8080)  # default: members only

        # The instance's page: tick the group on eth0 and apply.
        page.goto(f"{netcloud.url}/instances/{vm['uuid']}/networking/")
        section = page.locator("#instance-interfaces")
        cell = section.locator("td.secgroups-cell")
        expect(cell).to_contain_text("default")
        page.evaluate("window.__sameDocument = true")
        cell.get_by_text("Change").click()
        cell.get_by_label("e2e-web").check()
        cell.get_by_role("button", name="Apply to eth0").click()
        expect(section.locator("td.secgroups-cell")).to_contain_text("e2e-web")
        # What the hypervisor applied arrives over the page's websocket.
        expect(section.locator("td.secgroups-cell .badge--applied")).to_be_visible(
            timeout=30_000)
        assert page.evaluate("window.__sameDocument === true")
        wait_for(lambda: answers(outside_world.www, floating, 8080), 30,
                 "8080 open from outside")

        # The group's page lists the interface; removing the rule closes it again.
        page.goto(group_url)
        users = page.locator("#secgroup-interfaces tr")
        expect(users).to_have_count(1)
        expect(users.first).to_contain_text("e2e-sg-vm")
        expect(users.first.locator(".badge--applied")).to_be_visible()
        page.evaluate("window.__sameDocument = true")
        page.locator("#secgroup-rules tr").first.get_by_role("button", name="Remove").click()
        expect(page.locator("#secgroup-rules tr")).to_have_count(0)
        assert page.evaluate("window.__sameDocument === true")
        wait_for(lambda: not answers(outside_world.www, floating, 8080), 30,
                 "8080 closed again")
    finally:
        delete_instances(netcloud, vm["uuid"])
        delete_networks(netcloud, net["uuid"])
        groups = netcloud.api().get("/security-groups").json()
        for group in groups:
            if group["name"] == "e2e-web":
                netcloud.api().delete(f"/security-groups/{group['uuid']}")
