"""A crawl of the whole portal, as an admin and as a member, the way a browser
without JavaScript would use it: every link followed, every form sent with
empty, oversized and malformed values.

Nothing answers 5xx (a view that let an exception out fails the test:
tests.support.inprocess). A form sent back shows each problem beside its field
(the control marked invalid and pointing at its message), in the portal's
words (no field's internal name, no Python), with what was typed kept; no
problem of a field's lands above the form instead.
"""

from __future__ import annotations

import html
import re
from collections import deque
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import pytest

from tests.fast.conftest import TEAM
from tests.support.crawl import (
    Field,
    Form,
    field_errors,
    marked_invalid,
    nonfield_errors,
    read_page,
    same_site,
)
from tests.support.fakeagent import FakeAgent
from tests.support.fleet import Guest, put_fleet
from tests.support.inprocess import Browser, InProcessPortal, Person, Reply
from tests.support.objects import PUBLIC_KEY

MAX_PAGES = 250
# Not pages: what the portal serves to scripts, files, and leaving.
SKIPPED = re.compile(r"^/(static|api|metrics|ws)/|^/logout/|/download/|/ticket$")
# Where any value is a good one and ends the session the crawl runs in: a person's new
# password (empty: a generated one; 10,000 characters: a long one), the admin's own among them.
# Its refusals are tested in tests/fast/test_manage_people.py.
ACCEPTS_ANYTHING = re.compile(r"/manage/people/\d+/password/$")
# Where a problem is not any one field's: which of a name and password was wrong.
NOT_ONE_FIELDS = re.compile(r"^/login/$")
MALFORMED = '<b>"odd"</b> ../\u00e9\u200b 12abc'


def _value(variant: str, control: Field) -> str:
    if variant == "empty":
        return ""
    if variant == "oversized":
        return "x" * 10_000
    if control.kind in ("select", "checkbox", "radio"):
        return "no-such-choice"
    return MALFORMED


def _send(browser: Browser, form: Form, variant: str, htmx: bool) -> tuple[Reply, dict]:
    data: dict[str, list[str]] = {}
    sent: dict[str, str] = {}
    for control in form.fields:
        if control.kind in ("submit", "button", "file"):
            continue
        if control.editable:
            value = _value(variant, control)
            if control.kind not in ("select", "checkbox", "radio"):  # what is typed
                sent[control.element_id or control.name] = value
        elif control.kind == "checkbox" and not control.checked:
            continue
        else:
            value = control.value
        data.setdefault(control.name, []).append(value)
    path = urlsplit(form.action).path
    query = urlsplit(form.action).query
    if form.method == "get":
        answer = browser.get(path + "?" + urlencode(data, doseq=True), htmx=htmx)
    else:
        answer = browser.post(path + (f"?{query}" if query else ""), data, htmx=htmx)
    return answer, sent


def _kept(text: str, element_id: str, value: str) -> bool:
    """Whether the answer shows what was typed into that control."""
    tag = re.search(rf'<(input|textarea)[^>]*\bid="{re.escape(element_id)}"[^>]*>', text)
    if tag is None:
        return True  # not shown again (a form that moved on)
    escaped = html.escape(value)
    if tag.group(1) == "textarea":
        return escaped in text[tag.end():tag.end() + len(escaped) + 10]
    return f'value="{escaped}"' in tag.group(0) or 'type="password"' in tag.group(0)


@pytest.fixture
def world(portal: InProcessPortal, agent: FakeAgent, demo_image: str, alice: Person,
          admin: Person) -> None:
    """Something on every page: instances (running, off, with a NIC and tags), a network,
    a keypair, images, a token, people in namespaces."""
    put_fleet(portal, TEAM, [
        Guest(name="web-1", node=agent.node, power_state="on", tags=("blue",),
              address="10.9.0.5", floating="192.0.2.9"),
        Guest(name="web-2", node=agent.node, power_state="off")])
    api = portal.api()
    network = api.post("/networks", {"name": "crawl-net", "netblock": "10.9.0.0/24",
                                     "provide_nat": False, "namespace": TEAM})
    assert network.status_code == 200, network.text
    agent.report_network(network.json()["uuid"])
    assert api.post("/keypairs", {"name": "crawl-key", "public_key": PUBLIC_KEY,
                                  "namespace": TEAM}).status_code == 200
    alice.token(TEAM, name="crawl")
    alice.browser.post("/namespace/", {"namespace": TEAM})
    admin.browser.post("/namespace/", {"namespace": "*"})  # all namespaces


def crawl(browser: Browser, origin: str, check: Callable[[str, Form, str, Reply, dict], None]
          ) -> dict[str, int]:
    """Follow every link from the dashboard; send each form found, in each way."""
    seen: dict[str, int] = {}
    forms_sent: set[tuple[str, str, tuple[str, ...]]] = set()
    queue = deque(["/"])
    while queue and len(seen) < MAX_PAGES:
        path = queue.popleft()
        if path in seen:
            continue
        answer = browser.get(path)
        seen[path] = answer.status_code
        assert answer.status_code < 500, f"GET {path}: {answer.status_code}"
        if answer.status_code in (301, 302):
            location = answer.headers["Location"]
            if same_site(location, origin) and not SKIPPED.search(urlsplit(location).path):
                queue.append(location)
            continue
        if "text/html" not in answer.headers.get("Content-Type", ""):
            continue
        page = read_page(f"{origin}{path}", answer.text)
        for link in page.links:
            parts = urlsplit(link)
            if same_site(link, origin) and not SKIPPED.search(parts.path):
                queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        for form in page.forms:
            if not form.editable:
                continue  # a button (delete, revoke, end): nothing to type into
            shape = (urlsplit(form.action).path, form.method,
                     tuple(sorted(f.name for f in form.fields)))
            if shape in forms_sent or ACCEPTS_ANYTHING.search(shape[0]):
                continue
            forms_sent.add(shape)
            for variant in ("empty", "oversized", "malformed"):
                for htmx in ((False, True) if form.htmx else (False,)):
                    answer, sent = _send(browser, form, variant, htmx)
                    check(path, form, variant, answer, sent)
    return seen


def _checker(problems: list[str], beside: list[str]
             ) -> Callable[[str, Form, str, Reply, dict], None]:
    """Checks each answer; ``beside`` collects the fields an answer put a problem beside."""

    def check(page: str, form: Form, variant: str, answer: Reply, sent: dict) -> None:
        where = f"{form.method.upper()} {urlsplit(form.action).path} ({variant}, from {page})"
        if answer.status_code >= 500:
            problems.append(f"{where}: {answer.status_code}")
            return
        text = answer.text
        errors = field_errors(text)
        for element_id in errors:
            if not marked_invalid(text, element_id):
                problems.append(f"{where}: the error of {element_id} is not beside it")
            beside.append(f"{urlsplit(form.action).path} {element_id}")
        for message in [m for ms in errors.values() for m in ms] + nonfield_errors(text):
            if re.match(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)?: ", message) or "Traceback" in message \
                    or "does not appear to be" in message or re.search(r"'[^' ]*'", message):
                problems.append(f"{where}: not in the portal's words: {message!r}")
        if variant != "empty" and nonfield_errors(text) and not NOT_ONE_FIELDS.search(
                urlsplit(form.action).path):
            problems.append(f"{where}: above the form, not beside a field: "
                            f"{nonfield_errors(text)}")
        if errors:
            for element_id, value in sent.items():
                if value and not _kept(text, element_id, value):
                    problems.append(f"{where}: what was typed into {element_id} was lost")
    return check


@pytest.mark.parametrize("who", ["admin", "alice"])
def test_every_link_and_every_form_answers_without_5xx_and_with_errors_beside_fields(
        portal: InProcessPortal, world: None, request: pytest.FixtureRequest, who: str) -> None:
    person: Person = request.getfixturevalue(who)
    problems: list[str] = []
    beside: list[str] = []
    seen = crawl(person.browser, "http://testserver", _checker(problems, beside))
    assert not any(path.startswith("/login/?") for path in seen), "the crawl was logged out"
    # It went everywhere a person goes.
    for section in ("/instances/", "/images/", "/networks/", "/keypairs/", "/account/tokens/"):
        assert section in seen, sorted(seen)
    assert any(re.match(r"/instances/[0-9a-f-]{36}/console/$", p) for p in seen)
    if who == "admin":
        assert {"/manage/people/", "/manage/audit/", "/nodes/"} <= set(seen)
    # Refusals were many, each beside its field (the crawl did send bad values).
    assert len(set(beside)) >= 20, sorted(set(beside))
    assert not problems, "\n".join(problems)
