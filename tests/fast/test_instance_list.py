"""The instance list (instances/): one design for a few instances and for
thousands. It pages, sorts, filters and searches over the live hub's mirror
and renders one page; its websocket, opened with the page's query, sends
only what that page shows; a query string that makes no sense is said beside
its control, never a 5xx; acting on several instances asks first, naming them.
"""

from __future__ import annotations

import html
import re
import time

import pytest

from tests.fast.conftest import OTHER, TEAM
from tests.support.fakeagent import FakeAgent
from tests.support.fleet import Guest, put_fleet
from tests.support.inprocess import Browser, InProcessPortal, Person, Socket

ROW = re.compile(r'<tr id="instance-([0-9a-f-]{36})"')


def row_ids(text: str) -> list[str]:
    return ROW.findall(text)


def names_in(text: str) -> list[str]:
    return re.findall(r'<tr id="instance-[0-9a-f-]{36}"[^>]*data-name="([^"]+)"', text)


def listed(browser: Browser, params: dict[str, str], count: int) -> str:
    """The list once the live hub's mirror holds what the test wrote."""
    deadline = time.monotonic() + 10
    while True:
        page = browser.get("/instances/", params)
        assert page.status_code < 500, page.text
        if len(row_ids(page.text)) == count or time.monotonic() > deadline:
            return page.text
        time.sleep(0.1)


@pytest.fixture
def fleet(portal: InProcessPortal, alice: Person) -> dict[str, str]:
    """120 instances of TEAM: on two nodes, some tagged, some with addresses,
    in several power states; created a second apart, web-000 first."""
    start = time.time() - 1000
    guests = []
    for i in range(120):
        guests.append(Guest(
            name=f"web-{i:03d}", node="node-a" if i % 2 else "node-b",
            tags=("blue",) if i % 10 == 0 else (), created_at=start + i,
            address=f"10.7.{i // 100}.{i % 100 + 2}" if i < 30 else None,
            floating="192.0.2.77" if i == 7 else None,
            power_state="off" if i % 3 == 0 else "on",
            cpus=1 + i % 4))
    made = put_fleet(portal, TEAM, guests)
    put_fleet(portal, OTHER, [Guest(name="stranger")])
    alice.browser.post("/namespace/", {"namespace": TEAM})
    listed(alice.browser, {"per_page": "200"}, 120)
    return made


def test_the_list_pages_sorts_filters_and_searches(alice: Person,
                                                   fleet: dict[str, str]) -> None:
    browser = alice.browser
    first = browser.get("/instances/").text
    # One page is rendered, newest first: 50 rows of 120.
    assert names_in(first) == [f"web-{i:03d}" for i in range(119, 69, -1)]
    assert "1–50 of 120 instances" in first and "stranger" not in first
    last = browser.get("/instances/", {"page": "3"}).text
    assert names_in(last) == [f"web-{i:03d}" for i in range(19, -1, -1)]
    assert 'rel="prev"' in last and 'rel="next"' not in last
    # Past the end is the last page, not an empty one.
    assert names_in(browser.get("/instances/", {"page": "99"}).text) == names_in(last)

    by_name = browser.get("/instances/", {"sort": "name", "per_page": "25"}).text
    assert names_in(by_name) == [f"web-{i:03d}" for i in range(25)]
    assert names_in(browser.get("/instances/", {"sort": "-name", "per_page": "25"}).text)[0] \
        == "web-119"
    most_cpus = names_in(browser.get("/instances/", {"sort": "-cpus", "per_page": "25"}).text)
    assert all(int(name[4:]) % 4 == 3 for name in most_cpus)  # 4 vCPUs each

    def found(**params: str) -> list[str]:
        return sorted(names_in(browser.get("/instances/", {"per_page": "200",
                                                           **params}).text))

    assert found(state="off") == sorted(f"web-{i:03d}" for i in range(0, 120, 3))
    assert found(node="node-b") == sorted(f"web-{i:03d}" for i in range(0, 120, 2))
    assert found(tag="blue") == sorted(f"web-{i:03d}" for i in range(0, 120, 10))
    assert found(tag="blue", state="on") == sorted(
        f"web-{i:03d}" for i in range(0, 120, 10) if i % 3)
    # Search: a name, an address or a floating one (their start), a UUID's start, a tag.
    assert found(q="WEB-11") == [f"web-{i:03d}" for i in range(110, 120)]
    assert found(q="10.7.0.2") == sorted(["web-000"] + [f"web-0{i}" for i in range(18, 28)])
    assert found(q="192.0.2.77") == ["web-007"]
    assert found(q=fleet["web-042"][:8]) == ["web-042"]
    assert found(q="blue", node="node-a") == []  # tagged ones are all even: on node-b
    narrowed = browser.get("/instances/", {"q": "web-11"}).text
    assert "1–10 of 10 instances that match, of 120" in narrowed
    # The row shows what people look for: addresses (and floating), image, tags.
    row = browser.get("/instances/", {"q": "web-007"}).text
    assert "10.7.0.9" in row and "192.0.2.77" in row and ">demo<" in row
    assert '<span class="tag">blue</span>' in browser.get("/instances/", {"q": "web-010"}).text
    nothing = browser.get("/instances/", {"q": "no-such-thing"}).text
    assert "No instance matches" in nothing and not row_ids(nothing)


@pytest.mark.parametrize("params,field,message", [
    ({"page": "abc"}, "page", "Pages are numbered from 1"),
    ({"page": "-4"}, "page", "Pages are numbered from 1"),
    ({"sort": "price"}, "list-sort", "not a way this list can be sorted"),
    ({"per_page": "100000"}, "list-per-page", "Show 25, 50, 100 or 200 a page"),
    ({"q": "x" * 300}, "list-q", "at most 200 characters"),
])
def test_a_query_that_makes_no_sense_is_said_beside_its_control(
        alice: Person, fleet: dict[str, str], params: dict[str, str], field: str,
        message: str) -> None:
    page = alice.browser.get("/instances/", params)
    assert page.status_code == 400
    text = html.unescape(page.text)
    assert message in text
    if field != "page":
        # Beside the control it is about, which says so to assistive technology.
        assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', text)
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', text)
    # The list is still there, as if the value had not been given (the search: cut short).
    assert 'id="instance-rows"' in page.text
    assert len(row_ids(page.text)) == (0 if field == "list-q" else 50)


def test_the_list_socket_sends_only_what_its_page_shows(
        portal: InProcessPortal, alice: Person, agent: FakeAgent,
        fleet: dict[str, str]) -> None:
    with alice.browser.socket("/ws/instances/?sort=name&per_page=25") as ws:
        first = _until(ws, 'id="instance-rows"')
        assert names_in(first) == [f"web-{i:03d}" for i in range(25)]
        _drain(ws)
        # A change to a row on another page changes nothing here: nothing is sent.
        agent.report_instance(fleet["web-100"], power_state="paused")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)
        # A change to a row shown is that row.
        agent.report_instance(fleet["web-003"], power_state="paused")
        changed = _until(ws, fleet["web-003"])
        assert 'id="instance-rows"' not in changed and 'data-power="paused"' in changed
        # An instance that comes into the page is the page again: rows, count, pager.
        put_fleet(portal, TEAM, [Guest(name="aaa-first")])
        again = _until(ws, 'id="instance-rows"')
        assert names_in(again)[:2] == ["aaa-first", "web-000"] and len(row_ids(again)) == 25
        assert "1–25 of 121 instances" in _until(ws, 'id="pager"')
        _drain(ws)
        # Another namespace's instances never reach this socket.
        put_fleet(portal, OTHER, [Guest(name="aaa-other")])
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)

    # A filtered page follows its filter: an instance leaving it is the page again.
    with alice.browser.socket("/ws/instances/?state=paused") as ws:
        assert sorted(names_in(_until(ws, 'id="instance-rows"'))) == ["web-003", "web-100"]
        _drain(ws)
        agent.report_instance(fleet["web-003"], power_state="on")
        assert names_in(_until(ws, 'id="instance-rows"')) == ["web-100"]


def test_several_instances_at_once_ask_first_naming_them(
        portal: InProcessPortal, alice: Person, viewer: Person, agent: FakeAgent) -> None:
    alice.browser.post("/namespace/", {"namespace": TEAM})
    made = put_fleet(portal, TEAM, [Guest(name=n, node=agent.node, power_state="on")
                                     for n in ("db-1", "db-2", "db-3")])
    chosen = [made["db-1"], made["db-2"]]
    asked = alice.browser.post("/instances/bulk/", {"action": "off", "uuid": chosen,
                                                    "next": "/instances/?sort=name"})
    assert asked.status_code == 200
    text = asked.text
    assert "Power off these 2 instances?" in text and "as if its plug were pulled" in text
    assert "<strong>db-1</strong>" in text and "<strong>db-2</strong>" in text
    assert "db-3" not in text
    # Nothing happened yet.
    api = portal.api()
    assert all(api.get(f"/instances/{u}").json()["power_state"] == "on" for u in chosen)

    done = alice.browser.post("/instances/bulk/", {"action": "off", "uuid": chosen,
                                                   "confirmed": "yes",
                                                   "next": "/instances/?sort=name"})
    assert done.status_code == 302 and done.headers["Location"] == "/instances/?sort=name"
    listing = alice.browser.get("/instances/?sort=name").text
    assert "2 instances power off sent: db-1, db-2." in listing
    # Each got the same power intent the API gives.
    for uuid in chosen:
        intent = portal.etcd_call(lambda etcd, u=uuid: etcd.get(portal.keys.instance(u)))
        assert b'"action":"off"' in intent.value

    # Nothing ticked, or no action chosen: said on the page, nothing done.
    for sent, message in (({"action": "off"}, "No instance was selected"),
                          ({"action": "", "uuid": chosen}, "Choose what to do")):
        refused = alice.browser.post("/instances/bulk/", sent)
        assert refused.status_code == 400 and message in refused.text
    # A viewer may not, and what someone may not see is not found.
    assert viewer.browser.post("/instances/bulk/", {"action": "pause", "uuid": chosen}) \
        .status_code == 403


def _until(ws: Socket, marker: str, timeout: float = 10) -> str:
    while True:
        message = ws.recv(timeout=timeout)
        if marker in message:
            return message


def _drain(ws: Socket) -> None:
    """Read what the socket still has to say (the rest of a page: pager, empty state)."""
    try:
        while True:
            ws.recv(timeout=0.5)
    except TimeoutError:
        pass
