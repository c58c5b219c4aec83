"""Console pages: tickets for the page's consoles, the VNC pop-out window, and
the administrators' list of live sessions."""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudstate.consoles import KINDS
from cloudstate.validation import shown
from portal.accounts.access import access_for, actor_for
from portal.cloud import store
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.consoles import agent, changes, sessions, tickets
from portal.consoles.access import console_target
from portal.consoles.routing import socket_path
from portal.live.hub import hub
from portal.web import arender


def _json_error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "status": status}, status=status)


@login_required
@require_POST
async def console_ticket(request: HttpRequest, uuid: UUID, kind: str) -> JsonResponse:
    """A one-time ticket for this person to open this console, valid a minute."""
    if kind not in KINDS:
        return _json_error(404, f"there is no {shown(kind)} console")
    try:
        record, read_only = await console_target(await access_for(request), str(uuid))
    except NotFound as exc:
        return _json_error(404, exc.message)
    # A paused guest still has its console (it just says nothing until unpaused).
    if record.power_state not in ("on", "paused"):
        return _json_error(409, f"instance {record.spec.name} is not running")
    user = await request.auser()
    live = await hub()
    limit = settings.CONSOLE_SESSIONS_PER_USER
    if sessions.count_for(live.mirror, live.keys, user.pk) >= limit:
        return _json_error(429, f"you have {limit} consoles open; close one first")
    try:
        await agent.node_address(record.spec.node)
    except CloudError as exc:
        return _json_error(exc.status, exc.message)
    ticket = await tickets.issue(
        store.etcd(), store.keys(), user_id=user.pk, instance=record.uuid, kind=kind,
        node=record.spec.node, read_only=read_only,
    )
    response = JsonResponse({
        "ticket": ticket,
        "websocket": socket_path(kind, record.uuid),
        "read_only": read_only,
        "expires_in": int(tickets.MAX_TTL),
    })
    response["Cache-Control"] = "no-store"
    return response


@login_required
async def vnc_window(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """The graphical console alone, for a pop-out window."""
    try:
        record, read_only = await console_target(await access_for(request), str(uuid))
    except NotFound:
        raise Http404("No such instance") from None
    return await arender(request, "consoles/vnc_window.html",
                         {"record": record, "read_only": read_only})


async def _require_system_admin(request: HttpRequest) -> None:
    if not (await access_for(request)).is_system_admin:
        raise PermissionDenied("Only admins of the system namespace see every console.")


@login_required
async def session_list(request: HttpRequest) -> HttpResponse:
    await _require_system_admin(request)
    live = await hub()
    return await arender(request, "consoles/sessions.html", {
        "sessions": sessions.listed(live.mirror, live.keys), "tab": "consoles"})


@login_required
@require_POST
async def session_end(request: HttpRequest, session_id: str) -> HttpResponse:
    _, actor = await actor_for(request)
    try:
        ended = await changes.end(actor, session_id)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    if ended:
        messages.success(request, "The console session was ended.")
    else:
        messages.warning(request, "That console session had already ended.")
    return HttpResponseRedirect(reverse("console-sessions"))
