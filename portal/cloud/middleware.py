"""Failures no view handled, answered in the caller's language: an etcd
outage as a clear 503 (a page, or JSON under /api), and anything else under
/api as Shaken Fist's JSON error shape rather than Django's HTML page."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.deprecation import MiddlewareMixin

from cloudstate.etcd import EtcdUnavailable

log = logging.getLogger(__name__)

MESSAGE = "The cloud's state store (etcd) is not reachable right now; try again shortly."


class EtcdUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, EtcdUnavailable):
            return None
        log.warning("etcd unavailable while serving %s: %s", request.path, exception)
        if request.path.startswith("/api"):
            return JsonResponse({"error": MESSAGE, "status": 503}, status=503)
        return TemplateResponse(
            request, "errors/unavailable.html", {"message": MESSAGE}, status=503
        )


class ApiJsonErrors(MiddlewareMixin):
    """Under /api, an exception no view expected is a JSON 500 (logged with
    its traceback here); its text is not shown to the caller."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api") or isinstance(exception, EtcdUnavailable):
            return None
        log.exception("unexpected failure serving %s %s", request.method, request.path,
                      exc_info=exception)
        return JsonResponse({"error": "internal error: the portal's log says more",
                             "status": 500}, status=500)
