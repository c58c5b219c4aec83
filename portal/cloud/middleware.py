"""Turn an etcd outage into a clear 503 instead of a 500 and a traceback."""

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
