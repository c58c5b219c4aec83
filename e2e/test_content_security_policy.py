"""The portal's Content-Security-Policy in a real browser: the header is sent; markup injected
into a page (an inline script, an inline handler, a style attribute) is refused and reported, not
run; the page's own scripts and websockets still work under it. (Every other browser test fails
on any violation a page reports: e2e/conftest.py.)"""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, expect

from e2e.conftest import log_in
from tests.support.cloud import Cloud

pytestmark = pytest.mark.e2e

INJECT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.__injectedScriptRan = true;";
  document.body.appendChild(script);
  document.body.insertAdjacentHTML("beforeend",
    '<img id="injected-img" src="/static/img/favicon.svg"' +
    ' onload="window.__injectedHandlerRan = true">' +
    '<p id="injected-style" style="display: none">injected</p>');
}"""


def _directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in parts}


def _wait_for_reports(page: Page, reports: list[dict], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(reports) < count and time.monotonic() < deadline:
        page.wait_for_timeout(100)


def test_injected_inline_code_is_refused_and_reported(
        page: Page, cloud: Cloud, csp_violations: list[dict]) -> None:
    console: list[ConsoleMessage] = []
    page.on("console", lambda message: console.append(message))
    log_in(page, cloud.url, "admin", cloud.admin_password)
    response = page.goto(f"{cloud.url}/instances/")
    assert response is not None
    policy = _directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"

    # The page's own scripts run: sfcloud.js marks the document, and the live list's websocket
    # (connect-src 'self' covers ws: on the same host and port) connects.
    expect(page.locator("html")).to_have_class(re.compile(r"\bjs\b"))
    expect(page.locator("#live")).to_have_attribute("data-state", "connected")

    page.evaluate(INJECT)
    expect(page.locator("#injected-img")).to_have_js_property("complete", True)
    _wait_for_reports(page, csp_violations, 3)
    assert page.evaluate("window.__injectedScriptRan") is None
    assert page.evaluate("window.__injectedHandlerRan") is None
    expect(page.locator("#injected-style")).to_be_visible()
    refused = {report["directive"] for report in csp_violations}
    assert refused == {"script-src-elem", "script-src-attr", "style-src-attr"}, csp_violations
    assert any("Content Security Policy" in message.text for message in console
               if message.type == "error")
    csp_violations.clear()  # provoked on purpose


def test_the_api_answers_with_a_policy_that_allows_nothing(page: Page, cloud: Cloud) -> None:
    response = page.request.get(f"{cloud.url}/api/instances")
    assert response.status == 401
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_what_inline_code_did_still_works(page: Page, cloud: Cloud) -> None:
    """The create form's fields shown by a choice, and the image form emptying itself once the
    portal took the URL, were inline code before the CSP: now sfcloud.js reads data- attributes."""
    log_in(page, cloud.url, "admin", cloud.admin_password)
    page.goto(f"{cloud.url}/instances/new/")
    url_field, key_box = page.get_by_label("Image URL"), page.get_by_label("Public key")
    for field in (url_field, key_box):
        expect(field).to_be_attached()
        expect(field).to_be_hidden()
    page.get_by_label("Image", exact=True).select_option("__url__")
    expect(url_field).to_be_visible()
    page.get_by_label("SSH key").select_option("__paste__")
    expect(key_box).to_be_visible()
    page.get_by_label("Image", exact=True).select_option("demo")
    expect(url_field).to_be_hidden()

    # A refused URL comes back as the form with the reason beside the field (swapped in by
    # htmx, no script run); the portal's answer to an accepted one is stood in for, as a real
    # fetch would leave an image behind in the shared cloud.
    form = page.locator("#image-cache-form")
    page.goto(f"{cloud.url}/images/")
    form.get_by_label("Image URL").fill("http://169.254.169.254/csp.qcow2")
    form.get_by_role("button", name="Cache on every node").click()
    expect(page.locator("#image-cache-form #id_url_error")).to_contain_text("metadata service")
    expect(form.get_by_label("Image URL")).to_have_value("http://169.254.169.254/csp.qcow2")

    def accepted(route: Route) -> None:
        route.fulfill(status=200, headers={"HX-Trigger": json.dumps(
            {"sfcloud:toast": {"text": "Fetching csp onto every node.", "level": "success"}})},
            content_type="text/html", body=(
                '<form id="image-cache-form"><label for="id_url">Image URL</label>'
                '<input id="id_url" name="url" value=""></form>'))

    page.route(f"{cloud.url}/images/cache/", accepted)
    form.get_by_label("Image URL").fill("http://127.0.0.1:9/csp.qcow2")
    form.get_by_role("button", name="Cache on every node").click()
    expect(page.locator("#messages")).to_contain_text("Fetching csp onto every node.")
    expect(form.get_by_label("Image URL")).to_have_value("")
