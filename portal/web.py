"""Small helpers shared by the HTML pages."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


async def arender(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    """render() from an async view: context processors and templates may
    touch the database, which Django only allows outside the event loop."""
    return await sync_to_async(render)(request, template, context or {}, status=status)


def safe_next(request: HttpRequest, default: str) -> str:
    """The ``next`` a form sent (the page it came from) if it is this
    portal's own, else ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default
