"""The portal's pages as people meet them: error pages with a way back, the
instance page's tabs at their own addresses, an event log a page at a time,
what a shared image tells a namespace, and a network's log of who joins it."""

from __future__ import annotations

import html
import re

from django.test import RequestFactory

from portal import errors
from tests.fast.conftest import OTHER, TEAM
from tests.support.fakeagent import FakeAgent
from tests.support.fleet import Guest, put_fleet
from tests.support.inprocess import InProcessPortal, Person


def test_not_found_offers_a_way_back_and_the_other_namespaces(
        portal: InProcessPortal, alice: Person, bob: Person) -> None:
    made = put_fleet(portal, OTHER, [Guest(name="elsewhere")])
    page = alice.browser.get(f"/instances/{made['elsewhere']}/")
    assert page.status_code == 404
    text = html.unescape(page.text)
    assert "Not found" in text and "No such instance." in text
    assert 'href="/instances/"' in text and "Back to Instances" in text
    assert "Go to the dashboard" in text
    # Someone in one namespace only is offered nowhere else to look.
    assert "Look in" not in text
    unknown = alice.browser.get("/no-such-page/")
    assert unknown.status_code == 404 and "There is nothing at this address" in unknown.text


def test_not_found_says_where_else_it_may_be(portal: InProcessPortal, admin: Person) -> None:
    """Object pages show any of the person's namespaces: what is not found is in none of
    theirs (the hint names them), or, for members of system, who see all, it is gone."""
    person = portal.person("two", {TEAM: "member", OTHER: "viewer"})
    made = put_fleet(portal, "third", [Guest(name="there")])
    page = person.browser.get(f"/instances/{made['there']}/")
    assert page.status_code == 404
    assert re.search(r"an admin of that namespace can add you. You are a member of "
                     rf"<strong>{OTHER}</strong>, <strong>{TEAM}</strong>\.", page.text)
    # Their other namespace's instance is shown whichever namespace they work in.
    theirs = put_fleet(portal, OTHER, [Guest(name="shown")])
    person.browser.post("/namespace/", {"namespace": TEAM})
    assert person.browser.get(f"/instances/{theirs['shown']}/").status_code == 200
    gone = admin.browser.get("/instances/00000000-0000-4000-8000-000000000000/")
    assert gone.status_code == 404 and "it is not in any of them" in gone.text


def test_forbidden_refused_and_server_error_pages(portal: InProcessPortal, viewer: Person,
                                                  alice: Person) -> None:
    denied = viewer.browser.get("/instances/new/")
    assert denied.status_code == 403 and "You may not do this" in denied.text
    assert "Your role here is viewer" in denied.text
    # A form sent without its CSRF token: the portal's page, not Django's.
    stale = alice.browser.post("/keypairs/", {"name": "x"}, csrf=False)
    assert stale.status_code == 403 and "The form could not be sent" in stale.text
    # The 500 page needs no database (it may be why it happened), and still offers a way back.
    request = RequestFactory().get("/instances/whatever/")
    answer = errors.server_error(request)
    assert answer.status_code == 500
    body = answer.content.decode()
    assert "Something went wrong on our side" in body and 'href="/instances/"' in body


def test_the_instance_page_is_in_tabs_at_their_own_addresses(
        portal: InProcessPortal, alice: Person, agent: FakeAgent) -> None:
    made = put_fleet(portal, TEAM, [Guest(name="tabbed", node=agent.node, power_state="on",
                                          address="10.1.2.3")])
    uuid = made["tabbed"]
    for tab in ("summary", "console", "networking", "snapshots", "graphs", "events"):
        path = f"/instances/{uuid}/" if tab == "summary" else f"/instances/{uuid}/{tab}/"
        page = alice.browser.get(path)
        assert page.status_code == 200, tab
        shown = re.findall(r'data-tab-panel="(\w+)"(?! hidden)>', page.text)
        assert shown == [tab], (tab, shown)
        assert re.search(rf'<a href="{re.escape(path)}" data-tab="{tab}" aria-current="page"',
                         page.text), tab
    console = alice.browser.get(f"/instances/{uuid}/console/").text
    assert "<kbd>Ctrl</kbd>+<kbd>]</kbd> leaves it" in console and "Type in the console" in console
    summary = alice.browser.get(f"/instances/{uuid}/").text
    # The state is said once, under the name, with the power buttons.
    assert summary.count('class="badge badge--on"') == 1
    assert "eth0 10.1.2.3" in summary
    assert alice.browser.get(f"/instances/{uuid}/nonsense/").status_code == 404


def test_an_event_log_is_shown_a_page_and_a_type_at_a_time(
        portal: InProcessPortal, alice: Person, agent: FakeAgent) -> None:
    from portal.events import log as eventlog

    made = put_fleet(portal, TEAM, [Guest(name="busy", node=agent.node, power_state="on")])
    uuid = made["busy"]

    async def record() -> None:
        for i in range(60):
            await eventlog.record("instance", uuid, f"event {i:02d}",
                                  type="audit" if i % 2 else "mutate")

    portal.loop.run(record())
    page = alice.browser.get(f"/instances/{uuid}/events/").text
    rows = re.findall(r"event (\d\d)", page)
    assert len(rows) == 50 and rows[0] == "59"
    older = html.unescape(re.search(r'href="([^"]+)">Older events', page).group(1))
    second = alice.browser.get(older).text
    assert re.findall(r"event (\d\d)", second) == [f"{i:02d}" for i in range(9, -1, -1)]
    assert "Show the newest" in second
    audits = alice.browser.get(f"/instances/{uuid}/events/", {"events_type": "audit"}).text
    assert set(re.findall(r'<tr data-type="(\w+)"', audits)) == {"audit"}
    wrong = alice.browser.get(f"/instances/{uuid}/events/", {"events_type": "gossip"})
    assert wrong.status_code == 400 and "That is not a type of event" in wrong.text


def test_a_shared_image_tells_a_namespace_only_of_its_own(
        portal: InProcessPortal, alice: Person, admin: Person, agent: FakeAgent,
        demo_image: str) -> None:
    api = portal.api()
    assert api.post("/auth/namespaces", {"namespace": OTHER}).status_code == 200
    made = {}
    for namespace, name in ((TEAM, "mine"), (OTHER, "theirs")):
        created = api.post("/instances", {"name": name, "cpus": 1, "memory": 128,
                                          "namespace": namespace,
                                          "disk": [{"size": 1, "base": "demo"}]})
        assert created.status_code == 200, created.text
        made[name] = created.json()["uuid"]
    alice.browser.post("/namespace/", {"namespace": TEAM})
    page = alice.browser.get(f"/images/{demo_image}/").text
    assert made["mine"] in page and made["theirs"] not in page
    assert "file:" not in page and "a file on the cloud&#x27;s own servers" in page
    row = alice.browser.get("/images/").text.split(f'id="image-{demo_image}"', 1)[1]
    assert re.search(r'data-label="In use by">1<', row) and "file:" not in row
    # Members of system run the servers: they see the file, and every instance using it.
    admin.browser.post("/namespace/", {"namespace": "system"})
    theirs = admin.browser.get(f"/images/{demo_image}/").text
    assert "file:" in theirs and made["theirs"] in theirs and made["mine"] in theirs


def test_a_network_logs_the_interfaces_that_join_and_leave_it(
        portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> None:
    api = portal.api()
    network = api.post("/networks", {"name": "joined", "netblock": "10.44.0.0/24",
                                     "provide_nat": False}).json()
    agent.report_network(network["uuid"])
    created = api.post("/instances", {"name": "joiner", "cpus": 1, "memory": 128,
                                      "disk": [{"size": 1, "base": "demo"}],
                                      "network": [{"network_uuid": network["uuid"]}]})
    assert created.status_code == 200, created.text
    instance = created.json()["uuid"]
    events = api.get(f"/networks/{network['uuid']}/events").json()
    added = [e["message"] for e in events if "added" in e["message"]]
    assert added and re.match(r"interface [0-9a-f-]{36} added: eth0 of instance joiner, "
                              r"10\.44\.0\.\d+ by ", added[0]), added
    assert api.delete(f"/instances/{instance}").status_code == 200
    events = api.get(f"/networks/{network['uuid']}/events").json()
    assert any("goes (its instance is being deleted)" in e["message"] for e in events)
