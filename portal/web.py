"""Small helpers shared by the HTML pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from portal.cloud.errors import CloudError, Forbidden, NotFound

T = TypeVar("T")


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


async def change_and_go(request: HttpRequest, change: Awaitable[T], *,
                        said: str | Callable[[T], str], done_url: str,
                        refused_url: str, missing: str | None = None) -> HttpResponse:
    """A form's one-button change (a delete): done, its message and
    ``done_url``; refused, the reason as an error message back on
    ``refused_url``; not allowed at all, the 403 page. With ``missing``, a
    change that finds no such object is the 404 page saying so (for a change
    that looks its object up itself)."""
    try:
        result = await change
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except CloudError as exc:
        if missing is not None and isinstance(exc, NotFound):
            raise Http404(missing) from None
        messages.error(request, exc.message)
        return HttpResponseRedirect(refused_url)
    messages.success(request, said if isinstance(said, str) else said(result))
    return HttpResponseRedirect(done_url)
