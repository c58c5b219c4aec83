"""The portal as people use it (issue 18's evidence), in Chromium against a real cloud:

- every page, light and dark, has no accessibility violation axe-core finds, of any impact;
- at 390x844 no page scrolls sideways; a screenshot of each page, on a desktop and on a phone,
  is kept in test-results/ (portal-<page>-desktop.png, portal-<page>-phone.png);
- a keyboard alone reaches every button of the instance page, and the console never keeps it;
- what can lose work asks first, naming what it acts on;
- forms say what is wrong beside each field, all at once, and keep what was typed;
- the serial console does not answer the queries in the scrollback it replays.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from e2e import axe
from e2e.conftest import REPORT_CSP_VIOLATIONS, RESULTS, log_in
from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "pw-" + secrets.token_urlsafe(12)


@dataclass
class World:
    """What the pages show: a network, a keypair, two running instances (one with a NIC,
    an address and tags, in the default security group), a namespace with a member."""

    suffix: str
    vm: str
    second: str
    network: str
    demo: str
    namespace: str
    member: str
    member_id: int
    node: str
    secgroup: str  # the system namespace's default security group


@pytest.fixture(scope="module")
def world(cloud: Cloud) -> Iterator[World]:
    api = cloud.api()
    suffix = secrets.token_hex(3)
    net = api.post("/networks", {"name": f"ux-net-{suffix}", "netblock": "10.77.0.0/24",
                                 "provide_nat": False})
    assert net.status_code == 200, net.text
    network = net.json()["uuid"]
    made = []
    for name, extra in ((f"ux-vm-{suffix}", {"network": [{"network_uuid": network}],
                                             "metadata": {"tags": ["web", "blue"]}}),
                        (f"ux-second-{suffix}", {})):
        created = api.post("/instances", {"name": name, "cpus": 1, "memory": 256,
                                          "disk": [{"size": 1, "base": "demo"}], **extra})
        assert created.status_code == 200, created.text
        made.append(created.json()["uuid"])
    assert api.post("/keypairs", {"name": f"ux-key-{suffix}", "public_key": (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKu4Sb8bV0dSRiGSI7qHnHjYw5uCqbH5zN2q8cYbZ4bh "
        "ux@test")}).status_code == 200
    namespace = f"ux-{suffix}"
    assert api.post("/auth/namespaces", {"namespace": namespace}).status_code == 200
    member = f"ux-member-{suffix}"
    member_id = cloud.make_person(member, PASSWORD, {namespace: "member"})
    for uuid in made:
        cloud.wait_console(uuid, "SFCLOUD-READY")
        wait_for(lambda u=uuid: api.get(f"/instances/{u}").json()["power_state"] == "on", 30,
                 "the guest to be on")
    demo = api.get("/artifacts/demo").json()["uuid"]
    secgroup = api.get("/security-groups/default").json()["uuid"]
    yield World(suffix=suffix, vm=made[0], second=made[1], network=network, demo=demo,
                namespace=namespace, member=member, member_id=member_id, node=cloud.node,
                secgroup=secgroup)
    for uuid in made:
        api.delete(f"/instances/{uuid}")
    for uuid in made:
        wait_for(lambda u=uuid: api.get(f"/instances/{u}").json()["state"] == "deleted", 90,
                 "the instance to go")
    api.delete(f"/networks/{network}")
    api.delete(f"/keypairs/ux-key-{suffix}")


def pages_of(w: World) -> list[tuple[str, str]]:
    """(name, path) of every page of the portal, as an admin sees them."""
    vm = f"/instances/{w.vm}"
    return [
        ("dashboard", "/"),
        ("instances", "/instances/"),
        ("instances-search", "/instances/?q=ux-vm&sort=name"),
        ("instance-create", "/instances/new/"),
        ("instance-summary", f"{vm}/"),
        ("instance-console", f"{vm}/console/"),
        ("instance-networking", f"{vm}/networking/"),
        ("instance-snapshots", f"{vm}/snapshots/"),
        ("instance-graphs", f"{vm}/graphs/"),
        ("instance-events", f"{vm}/events/"),
        ("console-window", f"{vm}/console/vnc/"),
        ("images", "/images/"),
        ("image", f"/images/{w.demo}/"),
        ("networks", "/networks/"),
        ("network-create", "/networks/new/"),
        ("network", f"/networks/{w.network}/"),
        ("security-groups", "/security-groups/"),
        ("security-group", f"/security-groups/{w.secgroup}/"),
        ("keypairs", "/keypairs/"),
        ("nodes", "/nodes/"),
        ("node", f"/nodes/{w.node}/"),
        ("admin-namespaces", "/manage/namespaces/"),
        ("admin-namespace", f"/manage/namespaces/{w.namespace}/"),
        ("admin-people", "/manage/people/"),
        ("admin-person", f"/manage/people/{w.member_id}/"),
        ("admin-consoles", "/consoles/"),
        ("admin-audit", "/manage/audit/"),
        ("account-tokens", "/account/tokens/"),
        ("account-password", "/account/password/"),
        ("not-found", "/no-such-page/"),
    ]


def _context(browser: Browser, cloud: Cloud, csp_violations: list[dict], *,
             viewport: dict) -> BrowserContext:
    """A context that reports CSP refusals as the page fixture's do, with axe in it."""
    context = browser.new_context(viewport=viewport, color_scheme="light")
    context.expose_binding("__reportCspViolation",
                           lambda _source, report: csp_violations.append(report))
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    axe.give_axe(context)
    return context


def _settle(page: Page) -> None:
    """Wait until a page has drawn what it shows: its websockets open, its tab's scripts run."""
    page.wait_for_load_state("load")
    if page.locator("[ws-connect]").count():
        expect(page.locator("#live")).to_have_attribute("data-state", "connected",
                                                         timeout=20_000)
    page.wait_for_timeout(600)


def _visit_all(page: Page, cloud: Cloud, w: World, each) -> list[str]:  # type: ignore[no-untyped-def]
    """Log in as admin, then call each(name, page) on every page, the log-in page, a member's
    refusal, a form sent back with errors and the several-instances confirmation. Returns
    what each call reported."""
    problems: list[str] = []
    page.goto(f"{cloud.url}/login/")
    _settle(page)
    problems += each("login", page)
    log_in(page, cloud.url, "admin", cloud.admin_password, then=None)
    for name, path in pages_of(w):
        page.goto(cloud.url + path)
        _settle(page)
        problems += each(name, page)
    # A form sent back with its problems beside its fields.
    page.goto(f"{cloud.url}/networks/new/")
    page.get_by_label("Name", exact=True).fill("bad name!")
    page.get_by_label("Address range").fill("10.123.0.5/24")
    page.get_by_role("button", name="Create network").click()
    _settle(page)
    problems += each("network-create-errors", page)
    # Several instances at once: asked first on a page naming them.
    page.goto(f"{cloud.url}/instances/?sort=name&q=ux-")
    _settle(page)
    page.get_by_label(f"Select ux-second-{w.suffix}").check()
    page.get_by_label("With the selected instances").select_option("off")
    page.get_by_role("button", name="Apply…").click()
    _settle(page)
    problems += each("instances-several", page)
    # A member of one namespace where only admins may go.
    page.context.clear_cookies()
    log_in(page, cloud.url, w.member, PASSWORD, then="/manage/people/")
    _settle(page)
    problems += each("forbidden", page)
    return problems


def test_every_page_light_and_dark_has_no_accessibility_violations_nor_scrolls_on_a_phone(
        browser: Browser, cloud: Cloud, world: World, csp_violations: list[dict]) -> None:
    """Every page once, three ways: axe-core in the light theme and in the
    dark one (no violation of any impact), then at a phone's width, where
    nothing may be wider than the window. One visit serves all three (the
    theme is the system's, so the emulated colour scheme switches it; the
    phone's layout is CSS media queries on the window's width)."""
    context = _context(browser, cloud, csp_violations, viewport=DESKTOP)
    page = context.new_page()
    RESULTS.mkdir(exist_ok=True)

    def check(name: str, page: Page) -> list[str]:
        problems = []
        page.screenshot(path=str(RESULTS / f"portal-{name}-desktop.png"), full_page=True)
        backgrounds = set()
        for theme in ("light", "dark"):
            page.emulate_media(color_scheme=theme)  # type: ignore[arg-type]
            backgrounds.add(page.evaluate("getComputedStyle(document.body).backgroundColor"))
            found = axe.violations(page)
            if found:
                problems.append(f"{name} ({theme}): {axe.describe(found)}")
        if len(backgrounds) != 2:  # else "dark" checked the light theme again
            problems.append(f"{name}: the same background in both themes: {backgrounds}")
        page.emulate_media(color_scheme="light")
        page.set_viewport_size(PHONE)
        try:
            page.screenshot(path=str(RESULTS / f"portal-{name}-phone.png"), full_page=True)
            width, inner = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]")
            if width > inner:
                problems.append(f"{name}: {width} px wide in a {inner} px phone window")
        finally:
            page.set_viewport_size(DESKTOP)
        return problems

    try:
        problems = _visit_all(page, cloud, world, check)
    finally:
        context.close()
    assert not problems, "\n".join(problems)
    assert not csp_violations, csp_violations


# --- the keyboard ----------------------------------------------------------------------------

# Everything on the page a person could operate: shown, not disabled, in the main content.
MARK = 'el.dataset.kw || (el.dataset.kw = "kw" + Math.random().toString(36).slice(2))'
OPERABLE = """() => Array.from(document.querySelectorAll("main a[href], main button, main select, "
    + "main input:not([type=hidden]), main textarea, main summary"))
  .filter((el) => !el.disabled && el.getClientRects().length > 0
                  && !el.closest("dialog, [popover], [inert], .xterm")
                  // behind a closed disclosure: its summary (reached) opens it first
                  && !el.closest("details:not([open]) > :not(summary)")
                  && getComputedStyle(el).visibility !== "hidden")
  .map((el) => MARK)""".replace("MARK", MARK)
FOCUSED = """() => { const el = document.activeElement;
  return !el || el === document.body ? null : MARK; }""".replace("MARK", MARK)


def _walk(page: Page, limit: int = 250) -> list[str]:
    """Tab from the top of the page until focus comes round again: what was reached, in order."""
    page.evaluate("() => { if (document.activeElement) document.activeElement.blur(); }")
    reached: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        mark = page.evaluate(FOCUSED)
        if mark is not None and mark in reached:
            break
        if mark is not None:
            reached.append(mark)
    return reached


def test_a_keyboard_alone_reaches_every_button_of_the_instance_page(
        page: Page, cloud: Cloud, world: World) -> None:
    log_in(page, cloud.url, "admin", cloud.admin_password, then=None)
    for tab in ("summary", "console", "networking", "snapshots", "graphs", "events"):
        page.goto(f"{cloud.url}/instances/{world.vm}/{tab}/")
        _settle(page)
        operable = page.evaluate(OPERABLE)
        reached = _walk(page)
        missed = page.evaluate(
            "(marks) => marks.map((m) => document.querySelector(`[data-kw='${m}']`)"
            ".outerHTML.slice(0, 120))", [m for m in operable if m not in reached])
        assert not missed, f"the {tab} tab: Tab never reaches {missed}"

    # The console takes the keyboard only when chosen, and Ctrl+] gives it back.
    page.goto(f"{cloud.url}/instances/{world.vm}/console/")
    serial = page.locator("#console-serial")
    expect(serial.locator("[data-status]")).to_have_text("Connected", timeout=30_000)
    assert page.evaluate("() => !document.activeElement.closest('.xterm')")
    type_here = serial.get_by_role("button", name="Type in the console")
    expect(serial).to_contain_text("Ctrl+] leaves it")
    type_here.focus()
    page.keyboard.press("Enter")
    assert page.evaluate("() => !!document.activeElement.closest('.xterm')")
    page.keyboard.press("Tab")  # goes to the guest's shell (completion), not away
    assert page.evaluate("() => !!document.activeElement.closest('.xterm')")
    page.keyboard.press("Control+BracketRight")
    expect(type_here).to_be_focused()
    page.keyboard.press("Tab")
    assert page.evaluate("() => !document.activeElement.closest('.xterm')")


# --- asking first ----------------------------------------------------------------------------

def test_what_can_lose_work_asks_first_naming_it(page: Page, cloud: Cloud,
                                                 world: World) -> None:
    second = f"ux-second-{world.suffix}"
    api = cloud.api()
    log_in(page, cloud.url, "admin", cloud.admin_password, then=f"/instances/?q={second}")
    row = page.locator(f"#instance-{world.second}")
    for item, title in (("Power off…", f"Power off {second}?"),
                        ("Hard reboot…", f"Hard reboot {second}?"),
                        ("Delete…", f"Delete {second}?")):
        row.get_by_role("button", name=f"Actions for {second}").click()
        page.get_by_role("button", name=item).click()
        dialog = page.locator("dialog[open]")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_role("heading")).to_have_text(title)
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
    assert api.get(f"/instances/{world.second}").json()["power_state"] == "on"

    # On its page too; confirming there does it.
    page.goto(f"{cloud.url}/instances/{world.second}/")
    bar = page.locator("#section-power")
    bar.get_by_role("button", name="Power off…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.get_by_role("heading")).to_have_text(f"Power off {second}?")
    dialog.get_by_role("button", name="Power off").click()
    expect(bar).to_have_attribute("data-power", "off", timeout=60_000)
    assert api.post(f"/instances/{world.second}/poweron").status_code == 200
    expect(bar).to_have_attribute("data-power", "on", timeout=60_000)

    # A person's account: disabling and deleting ask first, away from the password form.
    page.goto(f"{cloud.url}/manage/people/{world.member_id}/")
    page.get_by_role("button", name="Disable account").click()
    expect(page.locator("dialog[open] h2")).to_have_text(f"Disable {world.member}?")
    page.locator("dialog[open]").get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Delete account").click()
    expect(page.locator("dialog[open] h2")).to_have_text(f"Delete {world.member}?")
    page.locator("dialog[open]").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", name=world.member)).to_be_visible()


# --- forms -------------------------------------------------------------------------------------

def test_forms_say_what_is_wrong_beside_each_field_and_keep_the_input(
        page: Page, cloud: Cloud, world: World) -> None:
    log_in(page, cloud.url, "admin", cloud.admin_password, then="/manage/namespaces/")
    # An invalid namespace name was a 500: now it is said beside the field.
    for bad in ("UX NS", "-ux", "UX-NS"):
        region = page.get_by_role("region", name="Create a namespace")
        region.get_by_label("Name", exact=True).fill(bad)
        region.get_by_role("button", name="Create namespace").click()
        field = page.get_by_role("region", name="Create a namespace").get_by_label(
            "Name", exact=True)
        expect(field).to_have_value(bad)
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#id_name_error")).to_contain_text("is not a valid namespace name")

    # Host bits are named, with the range to give instead; both fields' problems at once.
    page.goto(f"{cloud.url}/networks/new/")
    page.get_by_label("Name", exact=True).fill("bad name!")
    page.get_by_label("Address range").fill("10.123.0.5/24")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator("#id_netblock_error")).to_have_text(
        "10.123.0.5/24 has host bits set: the range that address is in is 10.123.0.0/24; "
        "give that.")
    expect(page.locator("#id_name_error")).to_contain_text("is not a valid network name")
    expect(page.get_by_label("Address range")).to_have_value("10.123.0.5/24")
    page.get_by_label("Address range").fill("10.123.0.0/33")
    page.get_by_role("button", name="Create network").click()
    expect(page.locator("#id_netblock_error")).to_have_text(
        "/33 is not a prefix length: give one from /8 to /29, such as 10.0.0.0/24.")

    # A refused image URL: beside the field, in the portal's words, both fields kept.
    page.goto(f"{cloud.url}/images/")
    form = page.locator("#image-cache-form")
    form.get_by_label("Image URL").fill("http://169.254.169.254/latest.qcow2")
    form.get_by_label("Name").fill("metadata")
    form.get_by_role("button", name="Cache on every node").click()
    error = page.locator("#image-cache-form #id_url_error")
    expect(error).to_contain_text("it is a cloud metadata service address")
    assert not error.inner_text().lower().startswith("url:")
    expect(page.locator("#image-cache-form").get_by_label("Image URL")).to_have_value(
        "http://169.254.169.254/latest.qcow2")
    expect(page.locator("#image-cache-form").get_by_label("Name")).to_have_value("metadata")

    # A keypair: every problem on the first submit.
    page.goto(f"{cloud.url}/keypairs/")
    page.get_by_label("Name", exact=True).fill("no spaces please")
    page.get_by_label("Public key").fill("ssh-rsa not-base64!")
    page.get_by_role("button", name="Add keypair").click()
    expect(page.locator("#id_name_error")).to_contain_text("is not a valid keypair name")
    expect(page.locator("#id_public_key_error")).to_contain_text("This is not a usable key")
    expect(page.get_by_label("Name", exact=True)).to_have_value("no spaces please")

    # A tag on the instance: answered in place, the input kept.
    page.goto(f"{cloud.url}/instances/{world.vm}/")
    tag_form = page.locator("#tag-form")
    tag_form.get_by_label("Key").fill("-bad")
    tag_form.get_by_label("Value").fill("kept")
    tag_form.get_by_role("button", name="Set tag").click()
    expect(page.locator("#tag-form #id_key_error")).to_contain_text("is not a valid metadata key")
    expect(page.locator("#tag-form").get_by_label("Value")).to_have_value("kept")


# --- the console's scrollback ------------------------------------------------------------------

CURSOR_REPORT = re.compile(rb"\x1b\[\d+;\d+R")


def test_the_console_does_not_answer_queries_in_replayed_scrollback(
        page: Page, cloud: Cloud, world: World) -> None:
    """What put "8;16R" at a guest's prompt after a power cycle: busybox's shell asks where
    the cursor is (ESC[6n) after every prompt; the console log keeps the question; the relay
    replays the log to a browser that (re)connects, and xterm.js answered each replayed question
    into the live guest. The relay stood in for here says which bytes are scrollback, as the
    agent does, and records what the page sends."""
    replay = b"root@ux:~# \x1b[6n\r\nroot@ux:~# \x1b[6n"
    sent: list[bytes] = []
    sockets: list[WebSocketRoute] = []

    def relay(ws: WebSocketRoute) -> None:
        sockets.append(ws)

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str) and "ticket" in message:
                ws.send(json.dumps({"type": "ready", "read_only": False, "session": "s"}))
                ws.send(json.dumps({"type": "scrollback", "bytes": len(replay)}))
                ws.send(replay)
            elif isinstance(message, bytes):
                sent.append(message)

        ws.on_message(from_page)

    page.route(f"**/instances/{world.vm}/console/serial/ticket", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"ticket": "t", "websocket": "/ws/stood-in-console/"})))
    page.route_web_socket("**/ws/stood-in-console/", relay)
    log_in(page, cloud.url, "admin", cloud.admin_password, then=f"/instances/{world.vm}/console/")
    expect(page.locator("#console-serial [data-status]")).to_have_text("Connected",
                                                                      timeout=30_000)
    page.wait_for_function("() => window.term && window.term.buffer.active.getLine(1)"
                           " && window.term.buffer.active.getLine(1).translateToString(true)"
                           ".includes('root@ux')")
    page.wait_for_timeout(500)
    assert not any(CURSOR_REPORT.search(message) for message in sent), sent
    # The same question asked now, live, is answered: the guest is waiting for it.
    sockets[0].send(b"\r\nroot@ux:~# \x1b[6n")
    for _ in range(100):  # Playwright delivers the page's messages while it is waited on
        if any(CURSOR_REPORT.search(message) for message in sent):
            break
        page.wait_for_timeout(100)
    assert any(CURSOR_REPORT.search(message) for message in sent), sent
