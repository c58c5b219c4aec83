"""The Content-Security-Policy header (portal/csp.py) and the templates it must not break: no
inline script, handler or style anywhere in portal/templates (the browser test, e2e/
test_content_security_policy.py, shows the browser refusing them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.test import RequestFactory

from portal import csp
from portal.accounts.templatetags.navigation import main_nav

TEMPLATES = Path(csp.__file__).parent / "templates"


def _directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in parts}


def _run(view, request: HttpRequest | None = None) -> HttpResponse:  # type: ignore[no-untyped-def]
    middleware = csp.content_security_policy(view)
    return middleware(request or RequestFactory().get("/"))


def test_pages_may_load_only_their_own_origin() -> None:
    response = _run(lambda request: HttpResponse("<p>hi</p>"))
    policy = _directives(response[csp.HEADER])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)


def test_json_and_other_answers_may_load_nothing() -> None:
    for response in (_run(lambda request: JsonResponse({"a": 1})),
                     _run(lambda request: HttpResponse("x", content_type="text/plain"))):
        policy = _directives(response[csp.HEADER])
        assert policy["default-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]


def test_a_style_nonce_is_allowed_only_when_a_template_used_it() -> None:
    template = engines["django"].from_string(
        '<script src="/s.js" nonce="{{ request.csp_style_nonce }}"></script>')

    def uses_nonce(request: HttpRequest) -> HttpResponse:
        return HttpResponse(template.render({}, request))

    first, second = _run(uses_nonce), _run(uses_nonce)
    nonces = []
    for response in (first, second):
        sources = _directives(response[csp.HEADER])["style-src"]
        assert sources[0] == "'self'" and len(sources) == 2
        nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{20,})'", sources[1])
        assert nonce is not None
        assert f'nonce="{nonce.group(1)}"' in response.content.decode()
        nonces.append(nonce.group(1))
    assert nonces[0] != nonces[1]
    # Scripts never take the nonce: it is for the <style> elements xterm.js makes.
    assert _directives(first[csp.HEADER])["script-src"] == ["'self'"]


def test_a_policy_set_by_the_view_is_kept() -> None:
    def own(request: HttpRequest) -> HttpResponse:
        response = HttpResponse("<p>x</p>")
        response[csp.HEADER] = "default-src 'none'"
        return response

    assert _run(own)[csp.HEADER] == "default-src 'none'"


async def test_async_views_get_the_policy_too() -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("<p>x</p>")

    response = await csp.content_security_policy(view)(RequestFactory().get("/"))
    assert _directives(response[csp.HEADER])["script-src"] == ["'self'"]


# What a strict CSP refuses in markup, and how each case is named in a failure.
INLINE = {
    "an inline <script>": re.compile(
        r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "an on…= handler": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "a style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "a <style> element": re.compile(r"<style[\s>]", re.I),
    "an hx-on handler (htmx evaluates it)": re.compile(r"\bhx-on", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
}


TEMPLATE_COMMENTS = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.S)


@pytest.mark.parametrize("path", sorted(TEMPLATES.rglob("*.html")),
                         ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_nothing_inline(path: Path) -> None:
    text = TEMPLATE_COMMENTS.sub("", path.read_text())
    found = [what for what, pattern in INLINE.items() if pattern.search(text)]
    assert not found, f"{path.relative_to(TEMPLATES)} has {', '.join(found)}"


def test_the_scan_finds_what_it_looks_for() -> None:
    samples = {
        "an inline <script>": '<script>alert(1)</script>',
        "an on…= handler": '<button type="button" onclick="go()">',
        "a style attribute": '<div class="x" style="color: red">',
        "a <style> element": "<style>p {}</style>",
        "an hx-on handler (htmx evaluates it)": '<form hx-on::after-request="x">',
        "a javascript: URL": '<a href="javascript:go()">',
    }
    for what, sample in samples.items():
        assert INLINE[what].search(sample), what
    allowed = ('<script src="/static/js/a.js" defer></script>'
               '<script type="application/json" id="d">{}</script><p data-on="x">')
    assert not any(pattern.search(allowed) for pattern in INLINE.values())


def _nav(path: str, **roles: bool) -> list[tuple[str, str]]:
    request = RequestFactory().get(path)
    return [(link.label, link.current) for link in main_nav({"request": request, **roles})]


def test_the_nav_shows_sections_by_role_and_marks_the_current_one() -> None:
    assert [label for label, _ in _nav("/")] == [
        "Dashboard", "Instances", "Images", "Networks", "Security groups", "Keypairs"]
    assert dict(_nav("/"))["Dashboard"] == "page"
    # Every path starts with the dashboard's "/": only "/" itself is it.
    assert dict(_nav("/instances/"))["Dashboard"] == ""
    assert [label for label, _ in _nav("/", is_system=True, may_manage=True)][-2:] == [
        "Nodes", "Admin"]
    assert dict(_nav("/instances/"))["Instances"] == "page"
    assert dict(_nav("/instances/0d6c6a38-7f0e-4a55-9a43-6b1f7b3f0a01/"))["Instances"] == "true"
    assert set(dict(_nav("/networks/")).values()) == {"", "page"}
