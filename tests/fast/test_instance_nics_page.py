"""An instance's networking tab: NICs plugged in and taken out from the page."""

from __future__ import annotations

from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal, Person


def test_an_instance_page_plugs_and_unplugs_nics(portal: InProcessPortal, agent: FakeAgent,
                                                  admin: Person) -> None:
    """The networking tab's form hot-plugs a NIC; its Remove button asks
    first, naming the NIC, and takes it out."""
    api = portal.api()
    network = api.post("/networks", {"name": "plug", "netblock": "10.92.0.0/24",
                                     "provide_nat": False}).json()["uuid"]
    agent.report_network(network)
    created = api.post("/instances", {"name": "plug", "cpus": 1, "memory": 128,
                                      "disk": [{"size": 1}],
                                      "network": [{"network_uuid": network}]})
    assert created.status_code == 200, created.text
    uuid = created.json()["uuid"]
    agent.report_instance(uuid, state="created", power_state="on")
    section = f"/networks/instance/{uuid}/interfaces/"
    added = admin.browser.post(section + "add/", {"network": network}, htmx=True)
    assert added.status_code == 200, added.text
    nics = api.get(f"/instances/{uuid}/interfaces").json()
    assert sorted(nic["order"] for nic in nics) == [0, 1]
    second = next(nic["uuid"] for nic in nics if nic["order"] == 1)
    # Asked first: a dialog titled with the NIC, whose form posts the removal.
    assert "Remove eth1?" in added.text
    assert f'hx-post="{section}{second}/remove/"' in added.text
    removed = admin.browser.post(f"{section}{second}/remove/", htmx=True)
    assert removed.status_code == 200, removed.text
    assert [nic["order"] for nic in api.get(f"/instances/{uuid}/interfaces").json()] == [0]
    assert "Remove eth1?" not in removed.text and "Remove eth0?" in removed.text


def test_a_nic_plugged_from_the_page_takes_the_groups_ticked(
        portal: InProcessPortal, agent: FakeAgent, admin: Person) -> None:
    """The form offers the namespace's groups: those ticked, else the default;
    a network the instance may not use is refused beside its field."""
    api = portal.api()
    network = api.post("/networks", {"name": "plugsg", "netblock": "10.93.0.0/24",
                                     "provide_nat": False}).json()["uuid"]
    agent.report_network(network)
    web = api.post("/security-groups", {"name": "web"}).json()["uuid"]
    default = api.get("/security-groups/default").json()["uuid"]
    created = api.post("/instances", {"name": "plugsg", "cpus": 1, "memory": 128,
                                      "disk": [{"size": 1}],
                                      "network": [{"network_uuid": network}]})
    uuid = created.json()["uuid"]
    agent.report_instance(uuid, state="created", power_state="on")
    section = f"/networks/instance/{uuid}/interfaces/"
    page = admin.browser.get(f"/instances/{uuid}/networking/")
    assert f'name="security_groups" value="{web}"' in page.text
    admin.browser.post(section + "add/", {"network": network, "security_groups": [web]},
                       htmx=True)
    admin.browser.post(section + "add/", {"network": network}, htmx=True)
    nics = sorted(api.get(f"/instances/{uuid}/interfaces").json(), key=lambda n: n["order"])
    assert [nic["security_groups"] for nic in nics] == [[default], [web], [default]]
    refused = admin.browser.post(section + "add/", {"network": "no-such",
                                                    "security_groups": [web]}, htmx=True)
    assert refused.status_code == 400
    assert 'id="id_network_error"' in refused.text and 'aria-invalid="true"' in refused.text
    assert len(api.get(f"/instances/{uuid}/interfaces").json()) == 3
