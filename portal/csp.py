"""The Content-Security-Policy every response carries.

Pages run only the portal's own script files and load only its own styles, images, fonts and
websockets; nothing inline runs, nothing may frame them, forms post only back to the portal. So
markup that an attacker slips into a page (a name, a tag, a console line) stays inert text: an
injected ``<script>``, ``onclick=`` or ``style=`` is refused by the browser and reported.

Responses that are not HTML (the JSON API, metrics, files) are never meant to be rendered as a
document: they get a policy that allows nothing at all.

One exception, on request: xterm.js styles its terminal with ``<style>`` elements whose text it
computes in the browser (theme colours, cell sizes), which no hash can name. A template that
loads it asks for ``request.csp_style_nonce``; that response's ``style-src`` then also accepts
``<style>`` elements carrying that fresh nonce (static/js/xterm-csp.js stamps it on the ones
xterm.js makes). Style attributes stay refused everywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

HEADER = "Content-Security-Policy"

PAGE_POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    # noVNC draws JPEG rectangles and the guest's cursor from data: URLs.
    "img-src": ("'self'", "data:"),
    # 'self' covers ws: and wss: on the page's own host and port (CSP level 3).
    "connect-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'self'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}

# JSON and other non-HTML answers: nothing to run, load or frame.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class StyleNonce:
    """A response's style nonce, made only if a template uses it.

    Templates write it as ``{{ request.csp_style_nonce }}``.
    """

    def __init__(self) -> None:
        self.value: str | None = None

    def __str__(self) -> str:
        if self.value is None:
            self.value = secrets.token_urlsafe(18)
        return self.value


def page_policy(style_nonce: str | None = None) -> str:
    directives = dict(PAGE_POLICY)
    if style_nonce is not None:
        directives["style-src"] = (*directives["style-src"], f"'nonce-{style_nonce}'")
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def _is_html(response: HttpResponseBase) -> bool:
    return response.get("Content-Type", "").split(";", 1)[0].strip().lower() == "text/html"


def apply_policy(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Set the policy for this response, unless its view chose one itself."""
    if HEADER not in response:
        if _is_html(response):
            nonce: StyleNonce | None = getattr(request, "csp_style_nonce", None)
            response[HEADER] = page_policy(nonce.value if nonce is not None else None)
        else:
            response[HEADER] = DATA_POLICY
    return response


Handler = Callable[[HttpRequest], HttpResponseBase]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


@sync_and_async_middleware
def content_security_policy(get_response: Handler | AsyncHandler) -> Handler | AsyncHandler:
    """Middleware: give the request its (lazy) style nonce, the response its policy."""
    if iscoroutinefunction(get_response):
        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            request.csp_style_nonce = StyleNonce()  # type: ignore[attr-defined]
            response = await get_response(request)  # type: ignore[misc]
            return apply_policy(request, response)
        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        request.csp_style_nonce = StyleNonce()  # type: ignore[attr-defined]
        return apply_policy(request, get_response(request))  # type: ignore[arg-type]
    return middleware
