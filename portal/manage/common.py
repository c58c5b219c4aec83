"""What every admin page shares: who may use them, and how a service's
refusal becomes a page's answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect

from portal.accounts import namespaces as service
from portal.accounts.access import Access, access_for
from portal.accounts.actor import Actor
from portal.accounts.models import Namespace, Role
from portal.cloud.errors import CloudError

ROLE_CHOICES = [(r.value, r.label) for r in Role]


def http(exc: CloudError) -> None:
    """Not found and forbidden become the pages' 404 and 403."""
    if exc.status == 404:
        raise Http404(exc.message)
    if exc.status == 403:
        raise PermissionDenied(exc.message)


async def manager(request: HttpRequest) -> Access:
    access = await access_for(request)
    if access.administered is not None and not access.administered:
        raise PermissionDenied("Only admins of a namespace may use the admin pages.")
    return access


async def admin_of(request: HttpRequest, namespace: str) -> tuple[Access, Namespace]:
    access = await access_for(request)
    try:
        found = await service.get_namespace(access, namespace)
        access.require_admin(namespace, f"namespace {namespace}")
    except CloudError as exc:
        http(exc)
        raise
    return access, found


async def system_admin(request: HttpRequest) -> tuple[Access, Actor]:
    access = await access_for(request)
    if not access.is_system_admin:
        raise PermissionDenied("Only admins of the system namespace may manage people.")
    return access, access.actor(request)


async def act(request: HttpRequest, back: str, success: str,
              action: Callable[[], Awaitable[Any]]) -> HttpResponse:
    """Run a change; 404/403 as such, other refusals as a message."""
    try:
        await action()
    except CloudError as exc:
        http(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return HttpResponseRedirect(back)
