"""Consoles in a real browser against a real guest: the serial console in the
instance page (typing, a second viewer, scrollback after a reload, reconnecting
after the node agent restarts) and the graphical console through noVNC, in the
page and in its pop-out window."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import RESULTS, log_in
from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.e2e

TERMINAL_TEXT = """() => {
  const buffer = window.term && window.term.buffer.active;
  if (!buffer) return "";
  const lines = [];
  for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}"""

# Pixels of the noVNC canvas that are neither noVNC's background nor black, and
# the number of distinct colours (testing-anchors.md §5.3).
CANVAS_STATS = """() => {
  const canvas = document.querySelector("#console-vnc canvas");
  if (!canvas || !canvas.width) return null;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0; const colours = new Set();
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (!(r === 40 && g === 40 && b === 40) && (r | g | b)) lit++;
    if (colours.size < 64) colours.add((r << 16) | (g << 8) | b);
  }
  return {width: canvas.width, height: canvas.height, lit: lit / (data.length / 4),
          colours: colours.size};
}"""


@pytest.fixture(scope="module")
def guest(cloud: Cloud) -> Iterator[dict]:
    name = f"e2e-console-{secrets.token_hex(3)}"
    response = cloud.api().post("/instances", {
        "name": name, "cpus": 1, "memory": 256, "disk": [{"size": 1, "base": "demo"}]})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["power_state"] == "on",
             30, "the guest to be on")
    yield {"uuid": uuid, "name": name}
    cloud.api().delete(f"/instances/{uuid}")


def _terminal_shows(page: Page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(f"(t) => ({TERMINAL_TEXT})().includes(t)", arg=text, timeout=timeout)


def _type(page: Page, text: str) -> None:
    page.locator("#console-serial .xterm").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_serial_console_in_the_page(page: Page, cloud: Cloud, guest: dict) -> None:
    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.goto(f"{cloud.url}/instances/{guest['uuid']}/console/")
    status = page.locator("#console-serial [data-status]")
    expect(status).to_have_text("Connected", timeout=30_000)
    _type(page, "")
    _terminal_shows(page, "# ")
    marker = secrets.token_hex(4)
    _type(page, f"echo browser-{marker} $((6*7))")
    _terminal_shows(page, f"browser-{marker} 42")

    # 24-bit colour reaches the screen under the page's CSP (xterm.js styles such cells with a
    # style attribute: static/js/xterm-csp.js); a refusal would also fail the test (conftest.py).
    _type(page, f"printf '\\033[38;2;255;0;0m%s-%s\\033[0m\\n' TRUE {marker}")
    _terminal_shows(page, f"TRUE-{marker}\n")
    coloured = page.locator("#console-serial .xterm-rows span", has_text=f"TRUE-{marker}")
    expect(coloured.last).to_have_css("color", "rgb(255, 0, 0)")

    # A second page on the same console sees what happens there.
    second = page.context.new_page()
    second.goto(f"{cloud.url}/instances/{guest['uuid']}/console/")
    expect(second.locator("#console-serial [data-status]")).to_have_text("Connected",
                                                                         timeout=30_000)
    expect(second.locator("#console-serial [data-viewers]")).to_have_text("2 people watching")
    _type(page, f"echo shared-{marker}")
    _terminal_shows(second, f"shared-{marker}\n")
    second.close()

    # After a reload the scrollback is there again.
    page.reload()
    expect(status).to_have_text("Connected", timeout=30_000)
    _terminal_shows(page, f"browser-{marker} 42", timeout=15_000)
    page.screenshot(path=str(_results("serial-console.png")))

    # The node agent restarting is a network blip to the page: it reconnects by itself.
    cloud.stop_agent()
    expect(status).to_contain_text("Reconnecting", timeout=20_000)
    cloud.start_agent()
    expect(status).to_have_text("Connected", timeout=60_000)
    _type(page, f"echo after-{marker}")
    _terminal_shows(page, f"after-{marker}\n")

    # Powered off, the console says so; powered on again, the page opens it by itself.
    api = cloud.api()
    boots = cloud.console_log(guest["uuid"]).count("SFCLOUD-READY")
    assert api.post(f"/instances/{guest['uuid']}/poweroff").status_code == 200
    expect(status).to_contain_text("not running", timeout=60_000)
    # The console closes as the guest stops, maybe before its node has said it is off.
    wait_for(lambda: api.get(f"/instances/{guest['uuid']}").json()["power_state"] == "off",
             60, "the guest to be off")
    assert api.post(f"/instances/{guest['uuid']}/poweron").status_code == 200
    expect(status).to_have_text("Connected", timeout=60_000)
    wait_for(lambda: cloud.console_log(guest["uuid"]).count("SFCLOUD-READY") > boots, 90,
             "the guest to boot again")
    _type(page, f"echo rebooted-{marker}")
    _terminal_shows(page, f"rebooted-{marker}\n")
    # Nothing was typed into the new boot's shell behind the person's back: the scrollback
    # replayed on reconnecting held the old boot's cursor position requests, which the
    # terminal used to answer ("8;16R" at the prompt, then "-/bin/sh: 8: not found").
    shown = page.evaluate(TERMINAL_TEXT)
    after = shown[shown.rfind(f"echo rebooted-{marker}") - 200:]
    assert "not found" not in after and not re.search(r"\d+;\d+R", after), after


def test_graphical_console_in_the_page_and_popped_out(
        page: Page, cloud: Cloud, guest: dict) -> None:
    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.goto(f"{cloud.url}/instances/{guest['uuid']}/console/")
    # A blank frame to compare with: noVNC's canvas before it has drawn anything.
    page.get_by_role("tab", name="Graphical").click()
    expect(page.locator("#console-vnc [data-status]")).to_have_text("Connected", timeout=30_000)
    page.wait_for_function("() => window.rfb && document.querySelector("
                           "'#console-vnc [data-screen]').dataset.connected === 'true'",
                           timeout=30_000)
    # Paste as keystrokes into tty1's shell (US layout: ">" needs Shift); the command
    # writes to the serial port, so its log shows the keys arrived.
    marker = secrets.token_hex(4)
    page.locator("#console-vnc [data-act='paste-keys']").click()
    page.locator("#console-vnc [data-paste-text]").fill(f"echo VNC-{marker} > /dev/ttyS0\n")
    page.locator("#console-vnc dialog").get_by_role("button", name="Type it").click()
    cloud.wait_console(guest["uuid"], f"VNC-{marker}", timeout=30)
    stats = wait_for(lambda: (s := page.evaluate(CANVAS_STATS)) and s["lit"] > 0.01 and s,
                     30, "the guest's screen on the canvas")
    assert (stats["width"], stats["height"]) in ((720, 400), (640, 480), (800, 600)), stats
    assert stats["colours"] >= 2, stats
    screen = page.locator("#console-vnc [data-screen]")
    shot = screen.screenshot(path=str(_results("vnc-console.png")))
    blank = page.evaluate("""() => { const c = document.createElement('canvas');
        c.width = 720; c.height = 400; const g = c.getContext('2d');
        g.fillStyle = 'rgb(40,40,40)'; g.fillRect(0, 0, 720, 400); return c.toDataURL(); }""")
    assert len(shot) > 2000 and blank  # a real picture, not an empty one
    page.evaluate("(url) => { window.__blank = url; }", blank)
    differs = page.evaluate("""() => document.querySelector('#console-vnc canvas').toDataURL()
        !== window.__blank""")
    assert differs

    # Ctrl-Alt-Del and function keys are buttons.
    expect(page.locator("#console-vnc [data-act='ctrl-alt-del']")).to_be_enabled()

    # Pop out: the window has its own graphical console.
    with page.expect_popup() as popup_info:
        page.locator("#console-vnc [data-act='popout']").click()
    popup = popup_info.value
    expect(popup.locator("#console-vnc [data-status]")).to_have_text("Connected", timeout=30_000)
    wait_for(lambda: (s := popup.evaluate(CANVAS_STATS)) and s["lit"] > 0.01, 30,
             "the guest's screen in the pop-out window")
    popup.close()


def _results(name: str):  # type: ignore[no-untyped-def]
    RESULTS.mkdir(exist_ok=True)
    return RESULTS / name
