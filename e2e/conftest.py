"""Browser tests: Playwright driving Debian's Chromium against a real cloud.

Playwright cannot download its own browsers here, so it is pointed at
/usr/bin/chromium. On failure the page's screenshot and a trace are kept in
test-results/ for a human to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cloudstate.config import REPO_ROOT
from cloudstate.settings import read

CHROMIUM = str(read("SFCLOUD_CHROMIUM"))
# Guests boot under software emulation beside the portal on two cores: a
# click's answer can take longer than Playwright's default 5 s to show.
expect.set_options(timeout=15_000)
RESULTS = REPO_ROOT / "test-results"
# Chromium's own background traffic would only be refused on these machines.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-deps` (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


# Every page (pop-ups too) reports what the portal's Content-Security-Policy refused. Playwright's
# init scripts and bindings come through the DevTools protocol, which the policy does not govern.
REPORT_CSP_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (e) => {
  window.__reportCspViolation({directive: e.effectiveDirective, blocked: e.blockedURI,
                               source: e.sourceFile, line: e.lineNumber, page: location.href});
});"""


@pytest.fixture
def csp_violations() -> list[dict]:
    """What the pages of this test reported as refused by their CSP. The page fixture fails the
    test if any is left here: a test that provokes some on purpose takes them out."""
    return []


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest,
         csp_violations: list[dict]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.expose_binding("__reportCspViolation",
                           lambda _source, report: csp_violations.append(report))
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    context.tracing.start(screenshots=True, snapshots=True)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        RESULTS.mkdir(exist_ok=True)
        opened.screenshot(path=str(RESULTS / f"{request.node.name}.png"), full_page=True)
        context.tracing.stop(path=str(RESULTS / f"{request.node.name}-trace.zip"))
    else:
        context.tracing.stop()
    context.close()
    if csp_violations:
        pytest.fail("the Content-Security-Policy refused: "
                    + "; ".join(f"{v['directive']} {v['blocked']!r} ({v['source']}:{v['line']} "
                                f"on {v['page']})" for v in csp_violations))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def log_in(page: Page, base_url: str, username: str, password: str,
           then: str | None = "/instances/") -> None:
    """Log in (which lands on the dashboard), then go to ``then`` if given."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")
    if then is not None:
        page.goto(f"{base_url}{then}")
