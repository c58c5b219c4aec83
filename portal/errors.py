"""The portal's own error pages, and the safety net that turns a refusal
escaping a page's view into one of them.

Every error page says what happened in the portal's words and offers a way
back: the section the person was in, and the dashboard. A 404 also says the
object may belong to another namespace, and offers to look there. The 500
page is rendered without the database (which may be why it happened).

Forms are meant to catch their own refusals and show them beside the field
(portal.formerrors); a refusal that still gets out of a page's view becomes
a 4xx page naming the problem here, never a 500, and is logged so that the
form can be taught to catch it.
"""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import loader
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin

from cloudstate.validation import ValidationError
from portal.accounts.templatetags.navigation import SECTIONS
from portal.cloud.errors import CloudError

log = logging.getLogger(__name__)


def sentence(text: str) -> str:
    """A service's message ("no node can run ...") as a sentence on a page."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def way_back(request: HttpRequest) -> dict[str, str]:
    """The list of the section the path is in (Instances, Networks, ...),
    else the dashboard."""
    best = ("Dashboard", reverse("home"))
    for section in SECTIONS:
        url = reverse(section.url_name)
        if url != "/" and request.path.startswith(url) and request.path != url:
            best = (section.label, url)
    return {"back_label": best[0], "back_url": best[1]}


def _message(exception: Exception | None) -> str:
    """A message the portal wrote (Http404("No such instance")), not one of
    Django's own (the resolver's, which names URL patterns)."""
    if exception is None or not exception.args or not isinstance(exception.args[0], str):
        return ""
    return sentence(exception.args[0])


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    user = getattr(request, "user", None)
    return render(request, "errors/404.html", {
        **way_back(request),
        "message": _message(exception) if isinstance(exception, Http404) else "",
        "signed_in": user is not None and user.is_authenticated,
        "here": request.path,
    }, status=404)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "errors/403.html", {
        **way_back(request), "message": _message(exception),
    }, status=403)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "errors/400.html", {
        **way_back(request), "message": _message(exception),
    }, status=400)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form sent without (or with a stale) CSRF token: most often a page
    left open across a log-in elsewhere, or cookies turned off."""
    return render(request, "errors/403_csrf.html", way_back(request), status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    # A plain context: no context processors, so no database query.
    html = loader.get_template("errors/500.html").render({
        "request": request, **way_back(request)})
    return HttpResponse(html, status=500)


def refusal_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """A refusal as a page: 404 and 403 as their own pages, the rest as the
    'not done' page with the service's message."""
    if status == 404:
        return page_not_found(request, Http404(message))
    if status == 403:
        return permission_denied(request, PermissionError(message))
    return render(request, "errors/refused.html", {
        **way_back(request), "message": sentence(message), "status": status,
    }, status=status)


class RefusalsMiddleware(MiddlewareMixin):
    """Pages only (the API answers its own errors in JSON): a validation
    error or a service's refusal that a view let out becomes a 4xx page."""

    def process_exception(self, request: HttpRequest,
                          exception: Exception) -> HttpResponse | None:
        if request.path.startswith("/api"):
            return None
        if isinstance(exception, ValidationError):
            status, message = 400, exception.message
        elif isinstance(exception, CloudError) and exception.status < 500:
            status, message = exception.status, exception.message
        else:
            return None
        log.warning("a page's view let a refusal out (%s %s): %s; its form should show it",
                    request.method, request.path, exception)
        return refusal_page(request, status, message)
